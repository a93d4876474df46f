"""LBV: Laplacian boundary value background removal (Zhou et al., NMR Biomed 2014,
doi:10.1002/nbm.3064).

The background field is harmonic inside the brain, so it is the solution of Laplace's
equation that equals the total field on the mask boundary; equivalently the local field
``l`` solves ``lap(l) = lap(f)`` inside with ``l = 0`` on the boundary (the local field
is taken as 0 at the brain surface). Solved with the 7-point Laplacian (mm^-2) by
conjugate gradients on the interior voxels; the local field is valid on the mask minus
its one-voxel boundary layer.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.ndimage as ndi
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from qsmbids.recon.background._result import LocalField
from qsmbids.recon.kspace import check_inputs

#: default relative residual at which CG stops
DEFAULT_TOL = 1e-4
#: default iteration cap
DEFAULT_MAX_ITER = 2000


def _interior_laplacian(interior: np.ndarray, voxel_size: Sequence[float]) -> sp.csr_matrix:
    """-lap on the interior voxels, Dirichlet 0 elsewhere (symmetric positive definite)."""
    index = -np.ones(interior.shape, np.int64)
    count = int(interior.sum())
    index[interior] = np.arange(count)
    coords = np.nonzero(interior)
    rows, cols, values = [np.arange(count)], [np.arange(count)], []
    diagonal = np.zeros(count)
    for axis, dx in enumerate(voxel_size):
        weight = 1.0 / dx**2
        diagonal += 2 * weight
        for step in (1, -1):
            neighbour = list(coords)
            neighbour[axis] = np.clip(coords[axis] + step, 0, interior.shape[axis] - 1)
            j = index[tuple(neighbour)]
            keep = (j >= 0) & (j != np.arange(count))
            rows.append(np.flatnonzero(keep))
            cols.append(j[keep])
            values.append(np.full(int(keep.sum()), -weight))
    values.insert(0, diagonal)
    return sp.csr_matrix((np.concatenate(values), (np.concatenate(rows), np.concatenate(cols))),
                         shape=(count, count))


def lbv(
    field: np.ndarray,
    mask: np.ndarray,
    voxel_size: Sequence[float] = (1.0, 1.0, 1.0),
    *,
    tol: float = DEFAULT_TOL,
    max_iter: int = DEFAULT_MAX_ITER,
    workers: int | None = None,
) -> LocalField:
    """Remove the background field by solving Laplace's equation with the boundary values.

    Parameters
    ----------
    field
        Total field in ppm, (x, y, z).
    mask
        Brain mask, (x, y, z).
    voxel_size
        mm along (x, y, z).
    tol, max_iter
        CG stops at relative residual ``tol`` or after ``max_iter`` iterations.
    workers
        Unused (sparse solve); accepted for a uniform call signature.

    Returns
    -------
    LocalField
        Local field (ppm) on the mask without its one-voxel boundary.
    """
    del workers
    field, mask, voxel_size = check_inputs(field, mask, voxel_size)
    if not 0 < tol < 1 or max_iter < 1:
        raise ValueError(f"need 0 < tol < 1 and max_iter >= 1, got {tol}, {max_iter}")
    interior = ndi.binary_erosion(mask, border_value=0)
    if not interior.any():
        raise ValueError("mask has no interior voxel: nothing left for LBV")
    operator = _interior_laplacian(interior, voxel_size)
    f = field.astype(np.float64)
    minus_lap = np.zeros_like(f)
    for axis, dx in enumerate(voxel_size):
        minus_lap += (2 * f - np.roll(f, 1, axis) - np.roll(f, -1, axis)) / dx**2
    iterations = [0]

    def count(_):
        iterations[0] += 1

    solution, _ = spla.cg(operator, minus_lap[interior], rtol=tol, atol=0.0,
                          maxiter=max_iter, callback=count)
    local = np.zeros(mask.shape, np.float32)
    local[interior] = solution
    return LocalField(local, interior, "lbv", {"tol": tol, "max_iter": max_iter},
                      {"iterations": iterations[0], "eroded_mm": float(max(voxel_size))})
