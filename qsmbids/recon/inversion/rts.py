"""Rapid two-step dipole inversion (RTS; Kames, Wiggermann and Rauscher, NeuroImage 2018).

1. The well-conditioned part of k-space is recovered by LSMR on
   ``min ||M (Phi chi - f)||^2``, stopped early (4 FFTs per iteration);
2. the ill-conditioned cone (``|D| < delta``) is filled in by minimising total variation
   while holding the well-conditioned coefficients at the step-1 values, by ADMM with a
   closed-form k-space update (2 FFTs per iteration).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse.linalg as spla

from qsmbids.recon.dipole import AXIAL
from qsmbids.recon.inversion import _tv_kernels as kern
from qsmbids.recon.inversion._common import (
    DEFAULT_PAD_FRACTION,
    Susceptibility,
    finish,
    setup,
    unit_direction,
)

#: defaults of the original paper
DEFAULT_DELTA = 0.15
DEFAULT_MU = 1e5
DEFAULT_RHO = 10.0
DEFAULT_LSMR_TOL = 1e-2
DEFAULT_LSMR_MAX_ITER = 30
DEFAULT_TOL = 1e-2
DEFAULT_MAX_ITER = 20


def rts(
    field: np.ndarray,
    mask: np.ndarray,
    voxel_size: Sequence[float] = (1.0, 1.0, 1.0),
    b0_direction: Sequence[float] = AXIAL,
    *,
    delta: float = DEFAULT_DELTA,
    mu: float = DEFAULT_MU,
    rho: float = DEFAULT_RHO,
    lsmr_tol: float = DEFAULT_LSMR_TOL,
    lsmr_max_iter: int = DEFAULT_LSMR_MAX_ITER,
    tol: float = DEFAULT_TOL,
    max_iter: int = DEFAULT_MAX_ITER,
    pad_fraction: float = DEFAULT_PAD_FRACTION,
    workers: int | None = None,
) -> Susceptibility:
    """Rapid two-step dipole inversion.

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
    delta
        ``|D|`` below which k-space counts as ill-conditioned.
    mu
        Weight of the well-conditioned data constraint in step 2.
    rho
        ADMM penalty of step 2 (speed only).
    lsmr_tol, lsmr_max_iter
        Early stopping of the LSMR step (``atol = btol = lsmr_tol``).
    tol, max_iter
        Step 2 stops when the relative update of chi falls below ``tol``, or after
        ``max_iter`` iterations.
    pad_fraction
        Zero padding of the mask's bounding box.
    workers
        Threads for ``scipy.fft`` and the numba loops.

    Returns
    -------
    Susceptibility
        ``info`` holds ``lsmr_iterations``, ``iterations`` and ``relative_update``.
    """
    if not 0 < delta < 1 / 3 or not mu > 0 or not rho > 0 or not tol > 0 or max_iter < 1:
        raise ValueError(f"need 0 < delta < 1/3, mu, rho, tol > 0, max_iter >= 1; got "
                         f"{delta}, {mu}, {rho}, {tol}, {max_iter}")
    f, inside, grid = setup(field, mask, voxel_size, pad_fraction, workers)
    # Work on a field of unit RMS in the mask: the step-2 shrinkage threshold 1/rho is in
    # the units of chi's gradient, so this makes rho's effect independent of the units
    # and strength of the field. Undone at the end.
    scale = float(np.sqrt(np.mean(f[inside].astype(np.float64) ** 2)))
    scale = scale if scale > 0 else 1.0
    f /= np.float32(scale)
    kernel = grid.dipole(b0_direction)
    size = int(np.prod(grid.shape))

    def forward(x):
        y = grid.convolve(x.reshape(grid.shape).astype(np.float32, copy=False), kernel)
        y[~inside] = 0.0
        return y.ravel()

    def adjoint(y):
        y = np.where(inside, y.reshape(grid.shape), 0.0).astype(np.float32)
        return grid.convolve(y, kernel).ravel()

    operator = spla.LinearOperator((size, size), matvec=forward, rmatvec=adjoint,
                                   dtype=np.float32)
    with kern.numba_threads(workers), np.errstate(over="ignore"):
        # (float32 operator: lsmr's condition estimate overflows harmlessly)
        step1 = spla.lsmr(operator, f.ravel(), atol=lsmr_tol, btol=lsmr_tol,
                          maxiter=lsmr_max_iter)
        chi1 = step1[0].reshape(grid.shape).astype(np.float32)
        lsmr_iterations = int(step1[2])

        well = (np.abs(kernel) >= delta).astype(np.float32)
        denominator = np.float32(mu) * well + np.float32(rho) * grid.laplacian()
        with np.errstate(divide="ignore"):
            inv_den = np.where(denominator > 0, 1.0 / denominator, 0.0).astype(np.float32)
        del denominator
        fixed = grid.rfft(chi1)
        fixed *= np.float32(mu) * well * inv_den
        del well
        inv_dx = np.asarray([1.0 / dx for dx in grid.voxel_size], np.float32)
        u = np.zeros((3, *grid.shape), np.float32)
        d = np.zeros_like(u)
        reg = np.empty(grid.shape, np.float32)
        chi_old = chi1
        update, iteration = np.inf, 0
        for iteration in range(1, max_iter + 1):
            if iteration == 1:  # d = 0: the first update keeps the step-1 coefficients
                spectrum = fixed.copy()
            else:
                spectrum = grid.rfft(kern.gradient_adjoint_scaled(d, inv_dx, rho, reg))
                spectrum *= inv_den
                spectrum += fixed
            chi = grid.irfft(spectrum)
            del spectrum
            change, norm = kern.tv_update(chi, chi_old, inv_dx, u, d, np.float32(1.0 / rho),
                                          kern.no_weight(), False, np.float32(1.0),
                                          inside.view(np.uint8), False)
            update = float(np.sqrt(change / norm)) if norm > 0 else 0.0
            chi_old = chi
            if iteration > 1 and update < tol:
                break
    chi_old *= np.float32(scale)
    return finish(chi_old, inside, grid, mask, "rts",
                  {"delta": delta, "mu": mu, "rho": rho, "lsmr_tol": lsmr_tol,
                   "lsmr_max_iter": lsmr_max_iter, "tol": tol, "max_iter": max_iter,
                   "pad_fraction": pad_fraction, "b0_direction": unit_direction(b0_direction)},
                  {"lsmr_iterations": lsmr_iterations, "iterations": iteration,
                   "relative_update": update})
