"""Shared FFT machinery for background removal and dipole inversion.

A :class:`FFTGrid` crops a volume to the bounding box of its mask, zero-pads the box to
an FFT-friendly size (so circular convolution does not wrap sources around into the
region of interest) and maps results back to the full field of view. All transforms are
real-to-complex (``scipy.fft.rfftn``) on that grid, and every kernel here is returned on
the matching half spectrum.

Finite differences are periodic forward differences on the padded grid; their k-space
counterpart ``|E|^2`` (:func:`laplacian_kernel`) is exact for them, so image-space
gradients and k-space solves are consistent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.fft
import scipy.sparse.linalg as spla

from qsmbids.recon.dipole import _frequency_axes, dipole_kernel
from qsmbids.recon.padding import padded_shape


def check_inputs(
    field: np.ndarray, mask: np.ndarray, voxel_size: Sequence[float]
) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
    """Validate a 3D field/mask pair and voxel size; return float32 field, bool mask, sizes.

    Raises
    ------
    ValueError
        With a message naming what is wrong (shape, dimensionality, empty mask, voxel size,
        non-finite values inside the mask).
    """
    field = np.asarray(field)
    mask = np.asarray(mask)
    if field.ndim != 3:
        raise ValueError(f"field must be a 3D (x, y, z) array, got shape {field.shape}")
    if mask.shape != field.shape:
        raise ValueError(f"mask shape {mask.shape} does not match field shape {field.shape}")
    sizes = tuple(float(v) for v in voxel_size)
    if len(sizes) != 3 or min(sizes) <= 0:
        raise ValueError(f"voxel_size must be three positive lengths in mm, got {voxel_size}")
    mask = mask.astype(bool)
    if not mask.any():
        raise ValueError("mask is empty: nothing to reconstruct")
    out = field.astype(np.float32)
    if not np.isfinite(out[mask]).all():
        raise ValueError("field has NaN/inf values inside the mask")
    out[~mask] = 0.0
    return out, mask, sizes  # type: ignore[return-value]


@dataclass(frozen=True)
class FFTGrid:
    """Bounding box of a mask, padded to an FFT-friendly grid.

    Attributes
    ----------
    full_shape
        Shape of the original volume (x, y, z).
    box
        Slices of the original volume holding the mask (plus ``margin`` voxels).
    shape
        Padded grid shape; the box sits at its origin corner.
    voxel_size
        mm along (x, y, z).
    workers
        Threads for ``scipy.fft`` (None: scipy's default).
    """

    full_shape: tuple[int, int, int]
    box: tuple[slice, slice, slice]
    shape: tuple[int, int, int]
    voxel_size: tuple[float, float, float]
    workers: int | None = None

    @classmethod
    def around(
        cls,
        mask: np.ndarray,
        voxel_size: Sequence[float],
        *,
        margin: int | Sequence[int] = 0,
        pad_fraction: float = 0.5,
        min_pad: int | Sequence[int] = 0,
        workers: int | None = None,
    ) -> FFTGrid:
        """Grid around ``mask``'s bounding box grown by ``margin`` voxels (clipped to the FOV).

        The box is then zero-padded by at least ``pad_fraction`` of its size and at least
        ``min_pad`` voxels per axis, rounded up to a fast FFT length.
        """
        mask = np.asarray(mask, bool)
        margins = np.broadcast_to(np.asarray(margin, int), (3,))
        pads = np.broadcast_to(np.asarray(min_pad, int), (3,))
        box = []
        for axis in range(3):
            other = tuple(a for a in range(3) if a != axis)
            idx = np.flatnonzero(mask.any(axis=other))
            lo = max(int(idx[0]) - int(margins[axis]), 0)
            hi = min(int(idx[-1]) + 1 + int(margins[axis]), mask.shape[axis])
            box.append(slice(lo, hi))
        size = [s.stop - s.start for s in box]
        grid = padded_shape(size, pad_fraction)
        grid = tuple(
            max(g, scipy.fft.next_fast_len(n + int(p), real=True))
            for g, n, p in zip(grid, size, pads, strict=True)
        )
        return cls(tuple(mask.shape), tuple(box), grid,
                   tuple(float(v) for v in voxel_size), workers)  # type: ignore[arg-type]

    @property
    def box_shape(self) -> tuple[int, int, int]:
        """Shape of the cropped box."""
        return tuple(s.stop - s.start for s in self.box)  # type: ignore[return-value]

    @property
    def inner(self) -> tuple[slice, slice, slice]:
        """Slices of the padded grid that hold the box."""
        return tuple(slice(0, n) for n in self.box_shape)  # type: ignore[return-value]

    def pad(self, array: np.ndarray, dtype: np.dtype | type = np.float32, fill: float = 0.0
            ) -> np.ndarray:
        """Crop ``array`` (full FOV) to the box and pad it onto the grid with ``fill``."""
        out = np.full(self.shape, fill, dtype=dtype)
        out[self.inner] = array[self.box]
        return out

    def unpad(self, array: np.ndarray) -> np.ndarray:
        """Place the box part of a grid array back into a zero full-FOV array."""
        out = np.zeros(self.full_shape, dtype=array.dtype)
        out[self.box] = array[self.inner]
        return out

    def rfft(self, array: np.ndarray) -> np.ndarray:
        """Forward real FFT on the grid."""
        return scipy.fft.rfftn(array, workers=self.workers)

    def irfft(self, spectrum: np.ndarray) -> np.ndarray:
        """Inverse real FFT back to the grid, same float precision as the spectrum."""
        return scipy.fft.irfftn(spectrum, s=self.shape, workers=self.workers)

    def dipole(self, b0_direction: Sequence[float]) -> np.ndarray:
        """Dipole kernel on the half spectrum of this grid (float32)."""
        return dipole_kernel(self.shape, self.voxel_size, b0_direction, real=True)

    def laplacian(self) -> np.ndarray:
        """``sum_j |E_j|^2`` of the periodic forward differences (1/mm^2), half spectrum."""
        return laplacian_kernel(self.shape, self.voxel_size)

    def convolve(self, array: np.ndarray, kernel: np.ndarray) -> np.ndarray:
        """Circular convolution on the grid with a real half-spectrum ``kernel``."""
        spectrum = self.rfft(array)
        spectrum *= kernel
        return self.irfft(spectrum)


def laplacian_kernel(shape: Sequence[int], voxel_size: Sequence[float]) -> np.ndarray:
    """k-space eigenvalues of ``-div(grad)`` for periodic forward differences.

    ``sum_j (2 - 2 cos(2 pi k_j dx_j)) / dx_j^2`` on the rfftn half spectrum, float32,
    in 1/mm^2.
    """
    axes = _frequency_axes(shape, voxel_size, real=True)
    total = np.zeros([a.size for a in axes], dtype=np.float64)
    for freq, dx in zip(axes, voxel_size, strict=True):
        total = total + (2.0 - 2.0 * np.cos(2 * np.pi * freq * dx)) / dx**2
    return total.astype(np.float32)


def sphere_kernel(shape: Sequence[int], voxel_size: Sequence[float], radius_mm: float,
                  workers: int | None = None) -> np.ndarray:
    """Half spectrum of the normalised discrete sphere of ``radius_mm`` (spherical mean value).

    The sphere is the set of voxel offsets whose physical length is <= ``radius_mm``
    (anisotropic voxels give an ellipsoid of voxels), centred at the grid origin
    (wrapping), normalised to unit sum. Its spectrum is real (the set is symmetric).
    """
    reach = [int(np.floor(radius_mm / dx)) for dx in voxel_size]
    if any(2 * r + 1 > n for r, n in zip(reach, shape, strict=True)):
        raise ValueError(f"sphere of radius {radius_mm} mm does not fit in grid {tuple(shape)}")
    offsets = np.ogrid[tuple(slice(-r, r + 1) for r in reach)]
    dist2 = sum((o * dx) ** 2 for o, dx in zip(offsets, voxel_size, strict=True))
    ball = (dist2 <= radius_mm**2 + 1e-9).astype(np.float32)
    ball /= ball.sum()
    grid = np.zeros(tuple(shape), np.float32)
    idx = [np.arange(-r, r + 1) % n for r, n in zip(reach, shape, strict=True)]
    grid[np.ix_(*idx)] = ball
    return scipy.fft.rfftn(grid, workers=workers).real.astype(np.float32)


def gradient(x: np.ndarray, voxel_size: Sequence[float]) -> np.ndarray:
    """Periodic forward differences ``(x[n+1] - x[n]) / dx``, stacked as (3, x, y, z)."""
    return np.stack([(np.roll(x, -1, axis=axis) - x) / x.dtype.type(dx)
                     for axis, dx in enumerate(voxel_size)])


def gradient_adjoint(g: np.ndarray, voxel_size: Sequence[float]) -> np.ndarray:
    """Adjoint of :func:`gradient` (minus the periodic backward divergence), (x, y, z)."""
    out = np.zeros(g.shape[1:], dtype=g.dtype)
    for axis, dx in enumerate(voxel_size):
        scale = g.dtype.type(1.0 / dx)
        # adjoint of (x[n+1] - x[n]) / dx is (g[n-1] - g[n]) / dx
        out += (np.roll(g[axis], 1, axis=axis) - g[axis]) * scale
    return out


def conjugate_gradient(matvec, rhs: np.ndarray, tol: float, max_iter: int
                       ) -> tuple[np.ndarray, int]:
    """Solve ``A x = rhs`` (``A`` symmetric positive semi-definite, given by ``matvec``
    on arrays shaped like ``rhs``) with ``scipy.sparse.linalg.cg`` from x = 0.

    Returns the solution (shaped like ``rhs``, float32) and the iterations taken.
    """
    shape = rhs.shape
    size = int(rhs.size)
    operator = spla.LinearOperator(
        (size, size), dtype=np.float32,
        matvec=lambda x: matvec(x.reshape(shape).astype(np.float32, copy=False)).ravel())
    iterations = [0]

    def count(_):
        iterations[0] += 1

    solution, _ = spla.cg(operator, rhs.ravel(), rtol=tol, atol=0.0, maxiter=max_iter,
                          callback=count)
    return solution.reshape(shape).astype(np.float32, copy=False), iterations[0]
