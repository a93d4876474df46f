"""A run's regional-statistics table from its map, labels and atlas folder (the node of
:class:`qsmbids.interfaces.registration.RegionalStats` calls it)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def regional_table(chi: np.ndarray, labels: np.ndarray, mask: np.ndarray, atlas_dir: str,
                   voxel_size: Sequence[float], out_path: str) -> str:
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
        TSV to write (its JSON sidecar, with ``Measure`` and column units, goes beside it).
    """
    from qsmbids.atlas.model import load_atlas
    from qsmbids.stats.regional import regional_statistics
    from qsmbids.stats.tables import write_run_table

    atlas = load_atlas(atlas_dir, check_images=False)
    rows = regional_statistics(chi, labels, atlas.all_regions(), voxel_size=voxel_size,
                               mask=mask)
    write_run_table(rows, out_path, measure="Chimap", atlas=atlas.name)
    return (f"regional statistics over atlas '{atlas.name}' regions inside the reconstruction "
            "mask (zeros kept)")
