"""Adapter from the regional-statistics node to :mod:`qsmbids.stats.regional` (issue 6)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np


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
    from qsmbids.atlas.model import load_atlas
    from qsmbids.stats.regional import STAT_COLUMNS, regional_statistics

    atlas = load_atlas(atlas_dir, check_images=False)
    regions = atlas.all_regions()
    rows = regional_statistics(chi, labels, regions, voxel_size=voxel_size, mask=mask)
    if r2star is not None:
        r2_rows = regional_statistics(r2star, labels, regions, voxel_size=voxel_size,
                                      mask=mask)
        for row, r2 in zip(rows, r2_rows, strict=True):
            row["r2star_mean"] = r2["mean"]
            row["r2star_median"] = r2["median"]
    columns = ["region", "hemisphere", *STAT_COLUMNS]
    columns += [c for c in rows[0] if c not in columns] if rows else []
    lines = ["\t".join(columns)]
    for row in rows:
        lines.append("\t".join(_cell(row.get(c)) for c in columns))
    Path(out_path).write_text("\n".join(lines) + "\n")
    return (f"regional statistics over atlas '{atlas.name}' regions inside the reconstruction "
            "mask (zeros kept)")


def _cell(value) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return "n/a" if np.isnan(value) else f"{value:.6g}"
    return str(value)
