"""Adapter from the regional-statistics node to :mod:`qsmbids.stats.regional` (issue 6)."""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from qsmbids.workflows.methods import MethodUnavailable


def regional_table(chi: np.ndarray, labels: np.ndarray, mask: np.ndarray, atlas_dir: str,
                   voxel_size: Sequence[float], out_path: str,
                   r2star: np.ndarray | None = None) -> str:
    """Write the per-region statistics TSV of a run; return a description of the method.

    Parameters
    ----------
    chi
        QSM in ppm, (x, y, z).
    labels
        Atlas labels on the same grid.
    mask
        Reconstruction mask (voxels outside are excluded, zeros inside are kept).
    atlas_dir
        Atlas folder (regions and references from its ``atlas.json``).
    voxel_size
        mm.
    out_path
        TSV to write.
    r2star
        Optional R2* map (1/s) summarised too.
    """
    try:
        regional = importlib.import_module("qsmbids.stats.regional")
    except ImportError:
        raise MethodUnavailable("regional statistics are not available in this version "
                                "(qsmbids.stats.regional is missing)") from None
    from qsmbids.atlas.model import load_atlas

    atlas = load_atlas(atlas_dir, check_images=False)
    return regional.write_run_table(chi, labels, mask, atlas, voxel_size, Path(out_path),
                                    r2star=r2star)
