"""Thin nipype interfaces around :mod:`qsmbids.recon` and registration (files in, files out)."""

import os

# nipype must not phone home (etelemetry) on import: runs are offline and unattended
os.environ.setdefault("NO_ET", "1")
