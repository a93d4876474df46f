"""Workflow factories (``init_*_wf``) assembling the interfaces into nipype workflows."""

import os

# nipype must not phone home (etelemetry) on import: runs are offline and unattended
os.environ.setdefault("NO_ET", "1")
