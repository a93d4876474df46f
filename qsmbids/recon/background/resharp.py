"""RESHARP: regularisation-enabled SHARP (Sun and Wilman, MRM 2014).

SHARP's deconvolution is replaced by a Tikhonov-regularised least-squares fit::

    min_x || M_r C (x - f) ||^2 + lam ||x||^2,   C = delta - S_r,  x = 0 outside the mask

where ``M_r`` is the mask eroded by the sphere radius. Background fields are harmonic,
so ``C`` removes them on ``M_r``; the penalty picks the smallest local field consistent
with the high-passed data. Conjugate gradients on the normal equations, 4 FFTs per
iteration. Valid on the eroded mask ``M_r``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from qsmbids.recon.background._result import LocalField
from qsmbids.recon.background.vsharp import mask_depth_mm
from qsmbids.recon.kspace import FFTGrid, check_inputs, conjugate_gradient, sphere_kernel

#: defaults (tuned on the head phantoms)
DEFAULT_RADIUS_MM = 4.0
DEFAULT_LAMBDA = 1e-3
DEFAULT_TOL = 1e-2
DEFAULT_MAX_ITER = 100


def resharp(
    field: np.ndarray,
    mask: np.ndarray,
    voxel_size: Sequence[float] = (1.0, 1.0, 1.0),
    *,
    radius_mm: float = DEFAULT_RADIUS_MM,
    lam: float = DEFAULT_LAMBDA,
    tol: float = DEFAULT_TOL,
    max_iter: int = DEFAULT_MAX_ITER,
    workers: int | None = None,
) -> LocalField:
    """Remove the background field with RESHARP.

    Parameters
    ----------
    field
        Total field in ppm, (x, y, z).
    mask
        Brain mask, (x, y, z).
    voxel_size
        mm along (x, y, z).
    radius_mm
        SMV sphere radius in mm; the output mask is the input eroded by it.
    lam
        Tikhonov weight (dimensionless).
    tol, max_iter
        CG stops at relative residual ``tol`` or after ``max_iter`` iterations.
    workers
        Threads for ``scipy.fft``.

    Returns
    -------
    LocalField
    """
    field, mask, voxel_size = check_inputs(field, mask, voxel_size)
    if not radius_mm > 0 or not lam > 0 or not 0 < tol < 1 or max_iter < 1:
        raise ValueError(f"need radius_mm > 0, lam > 0, 0 < tol < 1, max_iter >= 1; got "
                         f"{radius_mm}, {lam}, {tol}, {max_iter}")
    reach = [int(np.ceil(radius_mm / dx)) for dx in voxel_size]
    grid = FFTGrid.around(mask, voxel_size, pad_fraction=0.1, min_pad=[2 * r for r in reach],
                          workers=workers)
    inside = grid.pad(mask, bool)
    eroded = grid.pad(mask_depth_mm(mask, voxel_size)) > radius_mm
    if not eroded.any():
        raise ValueError(f"mask is thinner than the RESHARP radius ({radius_mm} mm)")
    smv = sphere_kernel(grid.shape, voxel_size, radius_mm, workers)
    highpass = np.subtract(1.0, smv, out=smv)

    def c_mr_c(x):
        y = grid.convolve(x, highpass)
        y[~eroded] = 0.0
        return grid.convolve(y, highpass)

    def normal(x):
        x = np.where(inside, x, 0.0).astype(np.float32)
        y = c_mr_c(x)
        y += np.float32(lam) * x
        y[~inside] = 0.0
        return y

    rhs = c_mr_c(grid.pad(field))
    rhs[~inside] = 0.0
    solution, iterations = conjugate_gradient(normal, rhs, tol, max_iter)
    local = np.where(eroded, solution, 0.0).astype(np.float32)
    return LocalField(grid.unpad(local), grid.unpad(eroded), "resharp",
                      {"radius_mm": radius_mm, "lam": lam, "tol": tol, "max_iter": max_iter},
                      {"iterations": iterations, "eroded_mm": radius_mm})
