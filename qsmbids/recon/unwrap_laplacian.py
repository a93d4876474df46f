"""Laplacian (least-squares, FFT/DCT-based) phase unwrapping.

The discrete Laplacian of the true phase is computed from wrapped neighbour
differences, ``sum_axes (wrap(phi[i+1]-phi[i]) - wrap(phi[i]-phi[i-1])) / dx^2``,
which equals the Laplacian of the true phase wherever the true phase changes by
less than pi between neighbours. The Poisson equation is then solved with
reflecting (Neumann) boundaries by a type-II DCT, where the 7-point Laplacian is
diagonal (Ghiglia & Romero, JOSA A 1994). Guarantee: the discrete Laplacian of the
output equals that wrapped-difference Laplacian; the output is NOT congruent to the
input modulo 2*pi (it is smooth where wraps are dense or noisy).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.fft

from qsmbids.recon.phase_scaling import wrap_to_pi


def _neumann_gradient(values: np.ndarray, axis: int, wrap: bool) -> np.ndarray:
    """Forward differences along ``axis`` with a zero difference at the last index."""
    diff = np.diff(values, axis=axis, append=np.take(values, [-1], axis=axis))
    return wrap_to_pi(diff) if wrap else diff


def _divergence(gradients: Sequence[np.ndarray], voxel_size: Sequence[float]) -> np.ndarray:
    out = np.zeros_like(gradients[0])
    for axis, (g, dx) in enumerate(zip(gradients, voxel_size, strict=True)):
        backward = np.diff(g, axis=axis, prepend=0.0 * np.take(g, [0], axis=axis))
        out += backward / dx**2
    return out


def discrete_laplacian(
    phase: np.ndarray, voxel_size: Sequence[float] = (1.0, 1.0, 1.0), *, wrapped: bool = False
) -> np.ndarray:
    """7-point Laplacian (rad/mm^2) with reflecting boundaries, (x, y, z).

    With ``wrapped=True`` the neighbour differences are wrapped into [-pi, pi) first,
    giving the Laplacian of the underlying unwrapped phase.
    """
    phase = np.asarray(phase)
    grads = [_neumann_gradient(phase, axis, wrapped) for axis in range(3)]
    return _divergence(grads, voxel_size)


def _inverse_laplacian_dct(rhs: np.ndarray, voxel_size: Sequence[float],
                           workers: int | None) -> np.ndarray:
    spectrum = scipy.fft.dctn(rhs, type=2, workers=workers)
    eig = np.zeros(rhs.shape, dtype=rhs.dtype)
    for axis, (n, dx) in enumerate(zip(rhs.shape, voxel_size, strict=True)):
        view = [1] * 3
        view[axis] = n
        eig = eig + ((2 * np.cos(np.pi * np.arange(n) / n) - 2) / dx**2).astype(
            rhs.dtype).reshape(view)
    eig.flat[0] = 1.0
    spectrum /= eig
    spectrum.flat[0] = 0.0
    return scipy.fft.idctn(spectrum, type=2, workers=workers)


def unwrap_laplacian(
    phase: np.ndarray,
    voxel_size: Sequence[float] = (1.0, 1.0, 1.0),
    mask: np.ndarray | None = None,
    *,
    workers: int | None = None,
) -> np.ndarray:
    """Unwrap a 3D phase by solving the Poisson equation of its wrapped Laplacian.

    Parameters
    ----------
    phase
        Wrapped phase in rad, (x, y, z).
    voxel_size
        mm along (x, y, z).
    mask
        Optional bool (x, y, z): differences touching a voxel outside are set to 0,
        so noise outside the brain does not leak in; the output is 0 outside.
    workers
        Threads for ``scipy.fft``.

    Returns
    -------
    numpy.ndarray
        float32 (x, y, z), shifted by a constant so that it agrees on average with
        the wrapped input (modulo 2*pi) inside the mask.
    """
    phase = np.asarray(phase, dtype=np.float32)
    if phase.ndim != 3:
        raise ValueError(f"phase must be (x, y, z), got shape {phase.shape}")
    grads = [_neumann_gradient(phase, axis, wrap=True) for axis in range(3)]
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != phase.shape:
            raise ValueError(f"mask shape {mask.shape} != phase shape {phase.shape}")
        for axis, g in enumerate(grads):
            both = mask & np.roll(mask, -1, axis=axis)
            g *= both
    rhs = _divergence(grads, voxel_size).astype(np.float32)
    out = _inverse_laplacian_dct(rhs, voxel_size, workers).astype(np.float32)
    inside = np.ones(phase.shape, bool) if mask is None else mask
    offset = np.angle(np.mean(np.exp(1j * (phase[inside] - out[inside]))))
    out += np.float32(offset)
    if mask is not None:
        out *= mask
    return out
