"""Fused per-voxel loops of the TV ADMM iterations (numba, parallel over the first axis).

Each ADMM iteration would otherwise take a dozen numpy passes over the volume; these
kernels do the gradient, soft thresholding and dual updates in one pass, the gradient
adjoint in a second, and the k-space combination in a third. All arrays are float32 (or
complex64 for spectra) on the padded grid; finite differences are periodic, matching
:func:`qsmbids.recon.kspace.laplacian_kernel`.
"""

from __future__ import annotations

import contextlib

import numba
import numpy as np
from numba import njit, prange


@contextlib.contextmanager
def numba_threads(workers: int | None):
    """Run numba's parallel loops with ``workers`` threads (None: numba's default)."""
    if workers is None:
        yield
        return
    previous = numba.get_num_threads()
    numba.set_num_threads(max(1, min(int(workers), numba.config.NUMBA_NUM_THREADS)))
    try:
        yield
    finally:
        numba.set_num_threads(previous)


@njit(parallel=True, cache=True)
def tv_update(chi, chi_old, inv_dx, u, d, threshold, tw, use_tw, alpha, inside,
              free_outside):  # pragma: no cover - numba
    """Gradient of ``chi``, shrinkage and dual update of the TV splitting, in place.

    With the over-relaxed ``a = u + alpha grad(chi) + (1 - alpha) z_old``:
    ``z = shrink(a, threshold * tw)``, ``u = a - z`` and ``d = z - u`` (what the next chi
    update needs; ``z_old = d + u`` on entry). With ``free_outside`` the differences that
    do not join two voxels of ``inside`` (uint8) are not shrunk (no TV there). Returns
    ``(||chi - chi_old||^2, ||chi||^2)`` for the stopping rule: over ``inside`` with
    ``free_outside``, else over the whole grid.
    """
    nx, ny, nz = chi.shape
    change = 0.0
    norm = 0.0
    for x in prange(nx):
        xp = x + 1 if x + 1 < nx else 0
        for y in range(ny):
            yp = y + 1 if y + 1 < ny else 0
            for z in range(nz):
                zp = z + 1 if z + 1 < nz else 0
                c = chi[x, y, z]
                here = inside[x, y, z] != 0
                if here or not free_outside:
                    delta = c - chi_old[x, y, z]
                    change += delta * delta
                    norm += c * c
                g0 = (chi[xp, y, z] - c) * inv_dx[0]
                g1 = (chi[x, yp, z] - c) * inv_dx[1]
                g2 = (chi[x, y, zp] - c) * inv_dx[2]
                for i in range(3):
                    g = g0 if i == 0 else (g1 if i == 1 else g2)
                    t = threshold * tw[i, x, y, z] if use_tw else threshold
                    if free_outside:
                        if not here:
                            t = 0.0
                        elif i == 0 and inside[xp, y, z] == 0:
                            t = 0.0
                        elif i == 1 and inside[x, yp, z] == 0:
                            t = 0.0
                        elif i == 2 and inside[x, y, zp] == 0:
                            t = 0.0
                    previous = u[i, x, y, z]
                    z_old = d[i, x, y, z] + previous
                    a = previous + alpha * g + (1.0 - alpha) * z_old
                    shrunk = a - min(max(a, -t), t)
                    dual = a - shrunk
                    u[i, x, y, z] = dual
                    d[i, x, y, z] = shrunk - dual
    return change, norm


@njit(parallel=True, cache=True)
def data_update(model, v, e, w2f, inv_w, mu, alpha):  # pragma: no cover - numba
    """Data splitting ``y = Phi chi`` with over-relaxation ``m = alpha model + (1 - alpha)
    y_old``: y = (W^2 f + mu (m + v)) / (W^2 + mu), v += m - y; writes ``e = mu (y - v)``
    (the next chi update's data input; ``y_old = e / mu + v`` on entry) in place."""
    nx, ny, nz = model.shape
    for x in prange(nx):
        for y in range(ny):
            for z in range(nz):
                y_old = e[x, y, z] / mu + v[x, y, z]
                vv = v[x, y, z] + alpha * model[x, y, z] + (1.0 - alpha) * y_old
                yy = (w2f[x, y, z] + mu * vv) * inv_w[x, y, z]
                vv -= yy
                v[x, y, z] = vv
                e[x, y, z] = mu * (yy - vv)


@njit(parallel=True, cache=True)
def gradient_adjoint_scaled(d, inv_dx, scale, out):  # pragma: no cover - numba
    """``out = scale * grad^T d`` for the periodic forward differences."""
    nx, ny, nz = out.shape
    for x in prange(nx):
        xm = x - 1 if x > 0 else nx - 1
        for y in range(ny):
            ym = y - 1 if y > 0 else ny - 1
            for z in range(nz):
                zm = z - 1 if z > 0 else nz - 1
                acc = (d[0, xm, y, z] - d[0, x, y, z]) * inv_dx[0]
                acc += (d[1, x, ym, z] - d[1, x, y, z]) * inv_dx[1]
                acc += (d[2, x, y, zm] - d[2, x, y, z]) * inv_dx[2]
                out[x, y, z] = scale * acc
    return out


@njit(parallel=True, cache=True)
def combine_spectra(reg, data, kernel, inv_den):  # pragma: no cover - numba
    """chi_hat = (reg + D data) / den into ``reg``; D chi_hat into ``data`` (in place)."""
    nx, ny, nz = reg.shape
    for x in prange(nx):
        for y in range(ny):
            for z in range(nz):
                k = kernel[x, y, z]
                c = (reg[x, y, z] + k * data[x, y, z]) * inv_den[x, y, z]
                reg[x, y, z] = c
                data[x, y, z] = k * c


def no_weight() -> np.ndarray:
    """Placeholder for ``tw`` when the TV is not weighted."""
    return np.ones((3, 1, 1, 1), np.float32)
