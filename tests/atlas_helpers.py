"""Test helpers for atlas and registration tests: real-atlas lookup, synthetic warps, Dice."""

from __future__ import annotations

import os
from pathlib import Path

from qsmbids.validation.warps import dice, oblique_deformed_copy, region_dice

REPO = Path(__file__).resolve().parents[1]


def shared_atlases() -> Path | None:
    """The reference atlas folder (``$QSMBIDS_SHARED_ATLASES`` or ``../shared/atlases``)."""
    path = Path(os.environ.get("QSMBIDS_SHARED_ATLASES", REPO.parent / "shared" / "atlases"))
    return path if (path / "tpl-MNI152NLin2009cAsym_desc-brain_T1w.nii.gz").is_file() else None


__all__ = ["dice", "oblique_deformed_copy", "region_dice", "shared_atlases"]
