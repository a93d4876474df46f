"""Masked Gaussian smoothing that stays unbiased up to the mask edge.

A plain (or mask-normalised) Gaussian average at a voxel near the mask edge sees only
the inner side of its window; where the smoothed quantity has a gradient, the
one-sided average is biased by about ``gradient * (offset of the window's centre of
mass)``, which for a 4 mm kernel reaches several mm. :func:`local_linear_smooth` fits
``a + b . (x - x0)`` by Gaussian-weighted least squares in each window instead
(first-order normalised convolution; Knutsson and Westin, CVPR 1993): the fitted value
``a`` is exact for any linear trend, however one-sided the window, and equals the
normalised average where the window is symmetric and the data are locally constant.

Cost: 18 separable Gaussian filters of the cropped volume (weights, their first and
second coordinate moments, and the data with its first moments), and a 3x3 solve per
voxel of the mask.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.ndimage as ndi

#: ridge added to the second-moment matrix, relative to sigma^2 times the weight sum,
#: so that a window holding a plane or a line of voxels falls back towards the average
_RIDGE = 1e-6


def _box(mask: np.ndarray, margin: Sequence[int]) -> tuple[slice, ...]:
    found = ndi.find_objects(mask.astype(np.uint8))
    if not found or found[0] is None:
        raise ValueError("mask is empty: nothing to smooth")
    return tuple(slice(max(s.start - m, 0), min(s.stop + m, n))
                 for s, m, n in zip(found[0], margin, mask.shape, strict=True))


class LocalLinearFit:
    """Gaussian-weighted local linear fits sharing one weight map and mask.

    The weight moments (and the per-voxel 3x3 solves) are computed once; each call of
    :meth:`fit` then costs only the smoothing of the data and their first moments
    (4 Gaussian filters for real data, 8 for complex).

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
        self.sigma = [sigma_mm / v for v in voxel_size]
        self.truncate = truncate
        margin = [int(np.ceil(truncate * s)) + 1 for s in self.sigma]
        self.box = _box(self.mask, margin)
        inside = self.mask[self.box]
        self.w = np.where(inside, np.asarray(weight, np.float64)[self.box], 0.0)
        # coordinates in mm, centred in the box (keeps the moment arithmetic conditioned)
        self.coords = [((np.arange(n) - (n - 1) / 2) * dx).reshape(
            [-1 if a == i else 1 for a in range(3)])
            for i, (n, dx) in enumerate(zip(inside.shape, voxel_size, strict=True))]
        m0 = self._smooth(self.w)
        m1 = [self._smooth(self.w * c) for c in self.coords]
        self.sel = inside & (m0 > 0)
        x0 = [np.broadcast_to(c, inside.shape)[self.sel] for c in self.coords]
        s0 = m0[self.sel]
        s1 = np.stack([m1[i][self.sel] - x0[i] * s0 for i in range(3)], axis=-1)
        s2 = np.empty((*s0.shape, 3, 3))
        for i in range(3):
            for j in range(i, 3):
                moment = self._smooth(self.w * self.coords[i] * self.coords[j])[self.sel]
                s2[:, i, j] = s2[:, j, i] = (moment - x0[i] * m1[j][self.sel]
                                             - x0[j] * m1[i][self.sel] + x0[i] * x0[j] * s0)
        del m0, m1
        s2 += (_RIDGE * sigma_mm**2 * s0)[:, None, None] * np.eye(3)
        # a = (z0 - g' t1) / (s0 - g' s1) with g = S2^-1 s1 (Schur complement of 4x4)
        self.g = np.linalg.solve(s2, s1[..., None])[..., 0]
        denominator = s0 - np.einsum("vi,vi->v", self.g, s1)
        degenerate = denominator <= 1e-12 * s0
        self.inv_den = np.where(degenerate, 0.0, 1.0 / np.where(degenerate, 1.0, denominator))
        self.inv_s0 = np.where(degenerate, 1.0 / s0, 0.0)
        self.x0 = x0

    def _smooth(self, x: np.ndarray) -> np.ndarray:
        return ndi.gaussian_filter(x, self.sigma, truncate=self.truncate, mode="constant")

    def fit(self, values: np.ndarray) -> np.ndarray:
        """The local linear fit of real ``values`` (x, y, z) at each mask voxel.

        Returns float32 (x, y, z), 0 outside the mask; where a window is degenerate,
        the weighted average.
        """
        data = np.asarray(values, np.float64)[self.box]
        if np.iscomplexobj(values):
            raise TypeError("fit() takes real values; use fit_complex()")
        wz = self.w * data
        z0 = self._smooth(wz)[self.sel]
        t1 = np.stack([self._smooth(wz * c)[self.sel] - x * z0
                       for c, x in zip(self.coords, self.x0, strict=True)], axis=-1)
        fitted = (z0 - np.einsum("vi,vi->v", self.g, t1)) * self.inv_den + z0 * self.inv_s0
        block = np.zeros(self.w.shape, np.float32)
        block[self.sel] = fitted
        out = np.zeros(self.mask.shape, np.float32)
        out[self.box] = block
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
