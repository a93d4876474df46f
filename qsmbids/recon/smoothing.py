"""Masked Gaussian smoothing that stays unbiased up to the mask edge.

A plain (or mask-normalised) Gaussian average at a voxel near the mask edge sees only
the inner side of its window; where the smoothed quantity has a gradient, the
one-sided average is biased by about ``gradient * (offset of the window's centre of
mass)``, which for a 4 mm kernel reaches several mm. :func:`local_linear_smooth` fits
``a + b . (x - x0)`` by Gaussian-weighted least squares in each window instead
(first-order normalised convolution; Knutsson and Westin, CVPR 1993): the fitted value
``a`` is exact for any linear trend, however one-sided the window, and equals the
normalised average where the window is symmetric and the data are locally constant.

Cost: 10 separable Gaussian filters of the cropped volume for the weight moments, 4
per fitted quantity, and a 4x4 inverse per voxel, on blocks of voxels where the kernel
is wide (see :class:`LocalLinearFit`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.ndimage as ndi

from qsmbids.recon.masking import grown_bounding_box

#: ridge added to the second-moment matrix, relative to sigma^2 times the weight sum,
#: so that a window holding a plane or a line of voxels falls back towards the average
_RIDGE = 1e-6


def _box(mask: np.ndarray, margin: Sequence[int]) -> tuple[slice, ...]:
    box = grown_bounding_box(mask, margin)
    if box is None:
        raise ValueError("mask is empty: nothing to smooth")
    return box


class LocalLinearFit:
    """Gaussian-weighted local linear fits sharing one weight map and mask.

    The weight moments and the per-voxel 4x4 systems are set up once; each call of
    :meth:`fit` then costs the smoothing of the data and their first moments (4
    Gaussian filters). Where the kernel spans many voxels the fit runs on blocks of
    ``factor`` voxels per axis (``factor = sigma / (2 voxel)``, rounded down): each
    block's data are pooled, weighted, at the block's weighted centroid, and each fine
    voxel takes its block's fitted line evaluated at its own position, so a linear
    trend stays exact while the cost drops by ``factor**3``.

    Parameters
    ----------
    weight
        Non-negative confidence of each voxel, (x, y, z) (e.g. the magnitude); voxels
        outside ``mask`` get weight 0.
    mask
        bool, (x, y, z): where data are used and where results are returned.
    voxel_size
        mm along (x, y, z).
    sigma_mm
        Gaussian standard deviation, mm.
    truncate
        Kernel half-width in sigmas.
    """

    def __init__(self, weight: np.ndarray, mask: np.ndarray, voxel_size: Sequence[float],
                 sigma_mm: float, *, truncate: float = 3.0) -> None:
        if not sigma_mm > 0:
            raise ValueError(f"sigma_mm must be positive, got {sigma_mm}")
        self.mask = np.asarray(mask, bool)
        self.factor = tuple(max(1, int(sigma_mm / (2 * v))) for v in voxel_size)
        coarse_voxel = [v * f for v, f in zip(voxel_size, self.factor, strict=True)]
        self.sigma = [sigma_mm / v for v in coarse_voxel]
        self.truncate = truncate
        margin = [(int(np.ceil(truncate * s)) + 1) * f
                  for s, f in zip(self.sigma, self.factor, strict=True)]
        box = _box(self.mask, margin)
        # grow the box to whole blocks (inside the volume where possible)
        self.box = tuple(slice(b.start, b.start + -(-(b.stop - b.start) // f) * f)
                         for b, f in zip(box, self.factor, strict=True))
        inside = self._crop(self.mask, False)
        self.inside = inside
        w = np.where(inside, self._crop(np.asarray(weight, np.float64), 0.0), 0.0)
        self.w = w
        # fine coordinates (mm, centred in the box: keeps the moments well conditioned)
        self.fine = [((np.arange(n) - (n - 1) / 2) * dx).reshape(
            [-1 if a == i else 1 for a in range(3)])
            for i, (n, dx) in enumerate(zip(inside.shape, voxel_size, strict=True))]
        total = self._pool(w)
        safe = np.where(total > 0, total, 1.0)
        # block centroids (weighted); empty blocks get their geometric centre
        self.centre = [np.where(total > 0, self._pool(w * c) / safe,
                                self._pool(np.broadcast_to(c, w.shape)) / np.prod(self.factor))
                       for c in self.fine]
        self.total = total
        m0 = self._smooth(total)
        m1 = [self._smooth(total * c) for c in self.centre]
        self.sel = (self._pool(inside.astype(np.float64)) > 0) & (m0 > 0)
        x0 = [c[self.sel] for c in self.centre]
        s0 = m0[self.sel]
        system = np.empty((s0.size, 4, 4))
        system[:, 0, 0] = s0
        for i in range(3):
            system[:, 0, i + 1] = system[:, i + 1, 0] = m1[i][self.sel] - x0[i] * s0
            for j in range(i, 3):
                moment = self._smooth(total * self.centre[i] * self.centre[j])[self.sel]
                system[:, i + 1, j + 1] = system[:, j + 1, i + 1] = (
                    moment - x0[i] * m1[j][self.sel] - x0[j] * m1[i][self.sel]
                    + x0[i] * x0[j] * s0)
            system[:, i + 1, i + 1] += _RIDGE * sigma_mm**2 * s0
        del m0, m1
        self.inverse = np.linalg.inv(system)
        self.x0 = x0

    def _crop(self, array: np.ndarray, fill) -> np.ndarray:
        """``array`` on the block-aligned box (padded with ``fill`` past the volume)."""
        part = array[self.box]
        shape = [b.stop - b.start for b in self.box]
        if list(part.shape) == shape:
            return part
        out = np.full(shape, fill, dtype=part.dtype)
        out[tuple(slice(0, n) for n in part.shape)] = part
        return out

    def _pool(self, x: np.ndarray) -> np.ndarray:
        """Sum over blocks of ``factor`` voxels."""
        x = np.broadcast_to(x, self.inside.shape)
        if self.factor == (1, 1, 1):
            return np.array(x, np.float64)
        (fx, fy, fz), (nx, ny, nz) = self.factor, x.shape
        return x.reshape(nx // fx, fx, ny // fy, fy, nz // fz, fz).sum(axis=(1, 3, 5))

    def _expand(self, x: np.ndarray) -> np.ndarray:
        for axis, f in enumerate(self.factor):
            if f > 1:
                x = np.repeat(x, f, axis=axis)
        return x

    def _smooth(self, x: np.ndarray) -> np.ndarray:
        return ndi.gaussian_filter(x, self.sigma, truncate=self.truncate, mode="constant")

    def fit(self, values: np.ndarray) -> np.ndarray:
        """The local linear fit of real ``values`` (x, y, z) at each mask voxel.

        Returns float32 (x, y, z), 0 outside the mask.
        """
        if np.iscomplexobj(values):
            raise TypeError("fit() takes real values; use fit_complex()")
        pooled = self._pool(self.w * self._crop(np.asarray(values, np.float64), 0.0))
        z0 = self._smooth(pooled)
        rhs = np.empty((self.inverse.shape[0], 4))
        rhs[:, 0] = z0[self.sel]
        for i, c in enumerate(self.centre):
            rhs[:, i + 1] = self._smooth(pooled * c)[self.sel] - self.x0[i] * rhs[:, 0]
        coef = np.einsum("vij,vj->vi", self.inverse, rhs)
        fields = []
        for k in range(4):
            block = np.zeros(self.sel.shape)
            block[self.sel] = coef[:, k]
            fields.append(block)
        value = self._expand(fields[0])
        for i in range(3):
            value += self._expand(fields[i + 1]) * (self.fine[i] - self._expand(self.centre[i]))
        out = np.zeros(self.mask.shape, np.float32)
        n = [min(b.stop, s) - b.start for b, s in zip(self.box, self.mask.shape, strict=True)]
        region = tuple(slice(b.start, b.start + k) for b, k in zip(self.box, n, strict=True))
        out[region] = np.where(self.inside, value, 0.0)[tuple(slice(0, k) for k in n)]
        return out

    def fit_complex(self, values: np.ndarray) -> np.ndarray:
        """:meth:`fit` of the real and imaginary parts of ``values`` (complex64 out)."""
        values = np.asarray(values)
        return (self.fit(values.real) + 1j * self.fit(values.imag)).astype(np.complex64)


def local_linear_smooth(
    values: np.ndarray,
    weight: np.ndarray,
    mask: np.ndarray,
    voxel_size: Sequence[float],
    sigma_mm: float,
    *,
    truncate: float = 3.0,
) -> np.ndarray:
    """Gaussian-weighted local linear fit of ``values`` at every voxel of ``mask``.

    Parameters
    ----------
    values
        Real or complex data, (x, y, z).
    weight, mask, voxel_size, sigma_mm, truncate
        See :class:`LocalLinearFit`.

    Returns
    -------
    numpy.ndarray
        The fitted value at each voxel (float32, or complex64 for complex data), 0
        outside ``mask``.
    """
    fitter = LocalLinearFit(weight, mask, voxel_size, sigma_mm, truncate=truncate)
    return fitter.fit_complex(values) if np.iscomplexobj(values) else fitter.fit(values)
