"""The unit dipole kernel, the B0 direction in voxel coordinates, and the forward field model.

Conventions used throughout :mod:`qsmbids.recon`:

* arrays are indexed (i, j, k) along the NIfTI voxel axes; ``voxel_size`` is in mm
  along those axes;
* susceptibility and field perturbations are both in ppm, with the field given
  relative to B0 (``field = D * chi`` in k-space, Lorentz-sphere corrected);
* ``b0_direction`` is the unit vector of the main field in the orthonormal frame of
  the voxel axes, (0, 0, 1) for slices perpendicular to B0.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.fft

from qsmbids.recon.padding import crop, padded_shape, zero_pad

#: B0 along the third voxel axis (axial slices, no obliquity)
AXIAL = (0.0, 0.0, 1.0)


def b0_direction_from_affine(affine: np.ndarray) -> np.ndarray:
    """Unit B0 direction in voxel coordinates from a NIfTI affine.

    B0 is the scanner's z-axis, which is the z-axis of the NIfTI world (scanner
    RAS+) frame. Its components along the (normalised) voxel axes are returned, so
    oblique slices give a tilted direction.

    Parameters
    ----------
    affine
        4x4 voxel-to-world affine (mm).

    Returns
    -------
    numpy.ndarray
        Shape (3,), unit norm, ordered as the voxel axes (i, j, k).
    """
    affine = np.asarray(affine, dtype=float)
    axes = affine[:3, :3] / np.linalg.norm(affine[:3, :3], axis=0)
    direction = axes.T @ np.array([0.0, 0.0, 1.0])
    return direction / np.linalg.norm(direction)


def voxel_sizes_from_affine(affine: np.ndarray) -> np.ndarray:
    """Voxel edge lengths in mm along (i, j, k) from a 4x4 affine."""
    return np.linalg.norm(np.asarray(affine, dtype=float)[:3, :3], axis=0)


def _frequency_axes(
    shape: Sequence[int], voxel_size: Sequence[float], real: bool
) -> list[np.ndarray]:
    """Spatial frequencies (cycles/mm) per axis, shaped for broadcasting."""
    axes = []
    for axis, (n, dx) in enumerate(zip(shape, voxel_size, strict=True)):
        last = axis == len(shape) - 1
        freq = scipy.fft.rfftfreq(n, d=dx) if (real and last) else scipy.fft.fftfreq(n, d=dx)
        view = [1] * len(shape)
        view[axis] = freq.size
        axes.append(freq.reshape(view).astype(np.float64))
    return axes


def dipole_kernel(
    shape: Sequence[int],
    voxel_size: Sequence[float] = (1.0, 1.0, 1.0),
    b0_direction: Sequence[float] = AXIAL,
    *,
    real: bool = False,
    dtype: np.dtype | type = np.float32,
) -> np.ndarray:
    """Unit dipole response in k-space, D(k) = 1/3 - (k . b)^2 / |k|^2.

    Parameters
    ----------
    shape
        Grid shape (x, y, z) in voxels (usually the padded grid).
    voxel_size
        Voxel edge lengths in mm, so anisotropic voxels are handled.
    b0_direction
        B0 direction in the voxel frame (normalised here).
    real
        If True, return the half spectrum matching ``scipy.fft.rfftn``.
    dtype
        Output float type.

    Returns
    -------
    numpy.ndarray
        Kernel of shape ``shape`` (or the rfft half shape); D(0) = 0, so the field
        has zero mean over the grid.
    """
    b = np.asarray(b0_direction, dtype=np.float64)
    norm = np.linalg.norm(b)
    if b.shape != (3,) or norm == 0:
        raise ValueError(f"b0_direction must be a non-zero 3-vector, got {b0_direction}")
    b = b / norm
    kx, ky, kz = _frequency_axes(shape, voxel_size, real)
    k2 = kx**2 + ky**2 + kz**2
    kb = kx * b[0] + ky * b[1] + kz * b[2]
    with np.errstate(divide="ignore", invalid="ignore"):
        kernel = 1.0 / 3.0 - kb**2 / k2
    kernel[0, 0, 0] = 0.0
    return kernel.astype(dtype, copy=False)


def forward_field(
    chi: np.ndarray,
    voxel_size: Sequence[float] = (1.0, 1.0, 1.0),
    b0_direction: Sequence[float] = AXIAL,
    *,
    pad_fraction: float = 0.5,
    workers: int | None = None,
) -> np.ndarray:
    """Field perturbation (ppm, relative to B0) produced by a susceptibility map (ppm).

    The convolution with the dipole kernel is done on a zero-padded grid so that
    sources do not wrap around the field of view.

    For a B0 direction that is tilted from all voxel axes, the k-space kernel is
    discontinuous across the edge of the sampled spectrum; susceptibility maps with
    energy up to the Nyquist frequency (binary edges) then ring along the grid
    diagonals by a few percent. Band-limited maps, as MRI measures them, do not.

    Parameters
    ----------
    chi
        Susceptibility in ppm, shape (x, y, z).
    voxel_size
        mm along (x, y, z).
    b0_direction
        B0 direction in the voxel frame.
    pad_fraction
        Zero padding relative to each axis (see :func:`padded_shape`).
    workers
        Threads for ``scipy.fft`` (None: scipy's default).

    Returns
    -------
    numpy.ndarray
        Field in ppm, same shape as ``chi``, float32 (float64 if ``chi`` is float64).
    """
    chi = np.asarray(chi)
    dtype = np.float64 if chi.dtype == np.float64 else np.float32
    grid = padded_shape(chi.shape, pad_fraction)
    kernel = dipole_kernel(grid, voxel_size, b0_direction, real=True, dtype=dtype)
    spectrum = scipy.fft.rfftn(zero_pad(chi.astype(dtype, copy=False), grid), workers=workers)
    spectrum *= kernel
    field = scipy.fft.irfftn(spectrum, s=grid, workers=workers)
    return np.ascontiguousarray(crop(field, chi.shape)).astype(dtype, copy=False)
