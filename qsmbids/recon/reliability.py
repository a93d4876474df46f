"""Trimming of mask voxels whose field is too noisy to be fitted as data.

At the edge of a magnitude-based mask sit voxels with little signal (skull, air
boundaries, vessels leaving the brain) whose phase is close to noise. Background
removal and dipole inversion that treat them as good data spread their error over the
brain: on qsm-forward heads, a mask holding about 1,300 such voxels (0.6 %) raised the
NRMSE of PDF + TV from 64 % (true mask) to 219 %. The standard error of the fitted
field (:attr:`qsmbids.recon.echo_fit.FieldMap.field_std_hz`, from the noise level and
the magnitudes) flags them.
"""

from __future__ import annotations

import numpy as np

from qsmbids.recon.masking import _largest_component, fill_holes

#: default largest field standard error kept, relative to its median over the mask
DEFAULT_MAX_NOISE_RATIO = 3.0


def trim_unreliable(mask: np.ndarray, field_std: np.ndarray,
                    max_ratio: float = DEFAULT_MAX_NOISE_RATIO) -> tuple[np.ndarray, int]:
    """Remove mask voxels whose field standard error exceeds ``max_ratio`` x its median.

    Only the connected part holding most voxels is kept, and enclosed holes are filled
    again, so noisy voxels deep inside (veins, iron-rich nuclei at 7 T with their short
    T2*) stay in: only what is connected to the outside can be trimmed.

    Parameters
    ----------
    mask
        bool, (x, y, z).
    field_std
        Standard error of the field (any unit, e.g. Hz), (x, y, z).
    max_ratio
        Largest standard error kept, relative to the median over ``mask``; ``inf``
        keeps every voxel.

    Returns
    -------
    trimmed, removed
        The trimmed mask (bool, (x, y, z)) and the number of voxels removed.
    """
    mask = np.asarray(mask, bool)
    field_std = np.asarray(field_std, np.float32)
    if field_std.shape != mask.shape:
        raise ValueError(f"field_std shape {field_std.shape} != mask shape {mask.shape}")
    if not max_ratio > 1:
        raise ValueError(f"max_ratio must be > 1, got {max_ratio}")
    if not mask.any() or not np.isfinite(max_ratio):
        return mask.copy(), 0
    limit = float(np.median(field_std[mask])) * max_ratio
    kept = fill_holes(_largest_component(mask & (field_std <= limit))) & mask
    return kept, int(mask.sum() - kept.sum())
