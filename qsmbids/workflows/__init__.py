"""Workflow factories (``init_*_wf``) assembling the interfaces into nipype workflows."""
