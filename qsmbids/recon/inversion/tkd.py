"""Truncated k-space division (TKD; Shmueli et al., MRM 2009).

``chi = F^-1 [ F(f) / D ]`` with ``1/D`` replaced by ``sign(D)/t`` where ``|D| < t``.
Two FFTs. Streaks and underestimation grow with ``t``; used as a fast baseline.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from qsmbids.recon.dipole import AXIAL
from qsmbids.recon.inversion._common import (
    DEFAULT_PAD_FRACTION,
    Susceptibility,
    finish,
    setup,
    unit_direction,
)

#: default truncation threshold
DEFAULT_THRESHOLD = 0.19


def tkd(
    field: np.ndarray,
    mask: np.ndarray,
    voxel_size: Sequence[float] = (1.0, 1.0, 1.0),
    b0_direction: Sequence[float] = AXIAL,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    pad_fraction: float = DEFAULT_PAD_FRACTION,
    workers: int | None = None,
) -> Susceptibility:
    """Dipole inversion by truncated k-space division.

    Parameters
    ----------
    field
        Local field in ppm, (x, y, z).
    mask
        Mask the local field is valid on, (x, y, z).
    voxel_size
        mm along (x, y, z).
    b0_direction
        B0 direction in the voxel frame.
    threshold
        Truncation level ``t`` in (0, 1/3].
    pad_fraction
        Zero padding of the mask's bounding box.
    workers
        Threads for ``scipy.fft``.

    Returns
    -------
    Susceptibility
    """
    if not 0 < threshold <= 1 / 3:
        raise ValueError(f"TKD threshold must be in (0, 1/3], got {threshold}")
    f, inside, grid = setup(field, mask, voxel_size, pad_fraction, workers)
    kernel = grid.dipole(b0_direction)
    small = np.abs(kernel) < threshold
    inverse = np.empty_like(kernel)
    inverse[small] = np.sign(kernel[small]) / threshold
    inverse[~small] = 1.0 / kernel[~small]
    chi = grid.convolve(f, inverse)
    return finish(chi, inside, grid, mask, "tkd",
                  {"threshold": threshold, "pad_fraction": pad_fraction,
                   "b0_direction": unit_direction(b0_direction)})
