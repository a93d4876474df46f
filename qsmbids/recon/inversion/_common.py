"""Result type and grid set-up shared by the dipole inversion methods."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from qsmbids.recon.kspace import FFTGrid, check_inputs

#: default zero padding of the mask's bounding box (fraction of its size per axis)
DEFAULT_PAD_FRACTION = 0.25


@dataclass(frozen=True)
class Susceptibility:
    """A susceptibility map from a dipole inversion.

    Attributes
    ----------
    chi
        Susceptibility in ppm, float32, (x, y, z); 0 outside ``mask``. Its mean is
        arbitrary (the dipole kernel is 0 at k = 0): reference it with
        :func:`qsmbids.recon.referencing.reference_susceptibility`.
    mask
        bool, (x, y, z): where ``chi`` is defined.
    method
        Name as registered in :data:`qsmbids.recon.inversion.INVERSION_METHODS`.
    parameters
        Parameters used (JSON-serialisable), for provenance sidecars.
    info
        Diagnostics (iterations, last relative update, ...), JSON-serialisable.
    """

    chi: np.ndarray
    mask: np.ndarray
    method: str
    parameters: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)


def setup(
    field: np.ndarray,
    mask: np.ndarray,
    voxel_size: Sequence[float],
    pad_fraction: float,
    workers: int | None,
) -> tuple[np.ndarray, np.ndarray, FFTGrid]:
    """Validate inputs; return the float32 masked field and the bool mask on a padded grid."""
    field, mask, voxel_size = check_inputs(field, mask, voxel_size)
    grid = FFTGrid.around(mask, voxel_size, pad_fraction=pad_fraction, min_pad=4,
                          workers=workers)
    return grid.pad(field), grid.pad(mask, bool), grid


def unit_direction(b0_direction: Sequence[float]) -> list[float]:
    """B0 direction normalised, as a plain list (for parameter records)."""
    b = np.asarray(b0_direction, float)
    return [float(v) for v in b / np.linalg.norm(b)]


def finish(chi: np.ndarray, inside: np.ndarray, grid: FFTGrid, mask: np.ndarray, method: str,
           parameters: dict, info: dict | None = None) -> Susceptibility:
    """Mask a grid result, map it back to the full FOV and wrap it up."""
    chi = np.where(inside, chi, 0.0).astype(np.float32)
    return Susceptibility(grid.unpad(chi), np.asarray(mask, bool).copy(), method, parameters,
                          info or {})
