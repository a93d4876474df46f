"""Thin nipype interfaces around :mod:`qsmbids.recon` and registration (files in, files out)."""
