"""Brain mask from multi-echo GRE magnitude (and optionally a phase-quality map).

No external tool: threshold of the smoothed root-sum-of-squares magnitude, then a
morphological opening in millimetres that cuts the brain from the scalp along the
dark skull, the largest connected component, hole filling and an optional erosion.
All distances are Euclidean in mm (anisotropic voxels are handled through
``scipy.ndimage.distance_transform_edt`` with ``sampling=voxel_size``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.ndimage as ndi
from skimage.filters import threshold_otsu


@dataclass(frozen=True)
class BrainMaskSettings:
    """Parameters of :func:`brain_mask` (lengths in mm).

    Attributes
    ----------
    smoothing_mm
        Gaussian sigma applied to the magnitude before thresholding.
    threshold_factor
        Multiplies the Otsu threshold of the smoothed magnitude (< 1 keeps darker tissue).
    opening_mm
        Radius of the erosion/dilation that separates brain from scalp; 0 disables it.
    erosion_mm
        Extra erosion of the final mask (e.g. to drop unreliable edge voxels).
    fill_holes
        Fill enclosed holes (ventricles with low signal, veins, calcifications).
    quality_threshold
        Voxels whose phase quality (0..1) is below this are removed before the
        connected-component step, when a quality map is given.
    """

    smoothing_mm: float = 1.0
    threshold_factor: float = 0.7
    opening_mm: float = 4.0
    erosion_mm: float = 0.0
    fill_holes: bool = True
    quality_threshold: float = 0.3


@dataclass(frozen=True)
class BrainMask:
    """A brain mask and how it was made.

    Attributes
    ----------
    mask
        bool, (x, y, z).
    threshold
        Magnitude threshold applied (units of the input magnitude); NaN for a user mask.
    method
        Description for the sidecar.
    """

    mask: np.ndarray
    threshold: float
    method: str


def _erode_mm(mask: np.ndarray, radius_mm: float, voxel_size: Sequence[float]) -> np.ndarray:
    if radius_mm <= 0:
        return mask
    padded = np.pad(mask, 1)  # the FOV edge counts as outside
    inner = ndi.distance_transform_edt(padded, sampling=voxel_size) > radius_mm
    return inner[1:-1, 1:-1, 1:-1]


def _dilate_mm(mask: np.ndarray, radius_mm: float, voxel_size: Sequence[float]) -> np.ndarray:
    if radius_mm <= 0:
        return mask
    return ndi.distance_transform_edt(~mask, sampling=voxel_size) <= radius_mm


def _largest_component(mask: np.ndarray) -> np.ndarray:
    labels, count = ndi.label(mask)
    if count <= 1:
        return mask
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == int(np.argmax(sizes))


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """Fill every background region that does not touch the FOV border (one labelling)."""
    labels, count = ndi.label(~mask)
    faces = np.concatenate([labels[[0, -1]].ravel(), labels[:, [0, -1]].ravel(),
                            labels[:, :, [0, -1]].ravel()])
    outside = np.zeros(count + 1, bool)
    outside[faces] = True
    outside[0] = False
    return ~outside[labels]


def _brain_core(mask: np.ndarray, radius_mm: float, voxel_size: Sequence[float]) -> np.ndarray:
    """Opening by ``radius_mm`` keeping the largest component, on a grid of about
    radius/2 mm voxels (distance transforms cost ~1 s per 8 M voxels), upsampled."""
    factors = [max(1, int(radius_mm / (2 * v))) for v in voxel_size]
    shape = mask.shape
    padded = np.pad(mask, [(0, (-n) % f) for n, f in zip(shape, factors, strict=True)])
    blocks = padded.reshape(padded.shape[0] // factors[0], factors[0],
                            padded.shape[1] // factors[1], factors[1],
                            padded.shape[2] // factors[2], factors[2])
    coarse = blocks.mean(axis=(1, 3, 5), dtype=np.float32) >= 0.5
    coarse_voxel = [v * f for v, f in zip(voxel_size, factors, strict=True)]
    core = _largest_component(_erode_mm(coarse, radius_mm, coarse_voxel))
    if not core.any():
        raise ValueError(f"nothing left after a {radius_mm} mm erosion; lower opening_mm")
    core = _dilate_mm(core, radius_mm, coarse_voxel)
    for axis, f in enumerate(factors):
        core = np.repeat(core, f, axis=axis)
    return core[: shape[0], : shape[1], : shape[2]]


def combine_magnitude(magnitude: np.ndarray) -> np.ndarray:
    """Root-sum-of-squares over echoes of a (x, y, z[, echo]) magnitude, float32."""
    magnitude = np.asarray(magnitude, dtype=np.float32)
    if magnitude.ndim == 3:
        return magnitude
    if magnitude.ndim != 4:
        raise ValueError(f"magnitude must be (x, y, z[, echo]), got shape {magnitude.shape}")
    return np.sqrt(np.einsum("xyze,xyze->xyz", magnitude, magnitude))


def brain_mask(
    magnitude: np.ndarray,
    voxel_size: Sequence[float],
    settings: BrainMaskSettings = BrainMaskSettings(),
    *,
    quality: np.ndarray | None = None,
) -> BrainMask:
    """Brain mask from GRE magnitude.

    Parameters
    ----------
    magnitude
        Magnitude, (x, y, z) or (x, y, z, echo); echoes are combined by root-sum-of-squares.
    voxel_size
        mm along (x, y, z).
    settings
        See :class:`BrainMaskSettings`.
    quality
        Optional phase-quality map in [0, 1], (x, y, z) (e.g. from
        :func:`qsmbids.recon.unwrap_region_growing.voxel_quality`).

    Returns
    -------
    BrainMask
    """
    combined = combine_magnitude(magnitude)
    voxel_size = tuple(float(v) for v in voxel_size)
    if len(voxel_size) != 3 or min(voxel_size) <= 0:
        raise ValueError(f"voxel_size must be three positive mm values, got {voxel_size}")
    if settings.smoothing_mm > 0:
        sigma = [settings.smoothing_mm / v for v in voxel_size]
        combined = ndi.gaussian_filter(combined, sigma)
    if not np.any(combined > 0):
        raise ValueError("magnitude is zero everywhere; cannot make a brain mask")
    threshold = float(threshold_otsu(combined)) * settings.threshold_factor
    mask = combined > threshold
    if quality is not None:
        if quality.shape != mask.shape:
            raise ValueError(f"quality shape {quality.shape} != magnitude shape {mask.shape}")
        mask &= quality >= settings.quality_threshold
    if settings.opening_mm > 0:
        mask &= _brain_core(mask, settings.opening_mm, voxel_size)
    mask = _largest_component(mask)
    if settings.fill_holes:
        mask = fill_holes(mask)
    mask = _erode_mm(mask, settings.erosion_mm, voxel_size)
    method = (f"threshold {settings.threshold_factor:g} x Otsu of the RSS magnitude "
              f"(Gaussian {settings.smoothing_mm:g} mm), opening {settings.opening_mm:g} mm, "
              f"largest component, fill holes={settings.fill_holes}, "
              f"erosion {settings.erosion_mm:g} mm"
              + (f", phase quality >= {settings.quality_threshold:g}" if quality is not None
                 else ""))
    return BrainMask(mask, threshold, method)


def user_mask(
    mask: np.ndarray,
    shape: Sequence[int],
    voxel_size: Sequence[float] = (1.0, 1.0, 1.0),
    *,
    erosion_mm: float = 0.0,
    source: str = "user mask",
) -> BrainMask:
    """Validate a user-supplied mask (non-zero = brain) and optionally erode it.

    Parameters
    ----------
    mask
        Any numeric or bool array of shape ``shape``.
    shape
        Expected (x, y, z) shape of the data it will be applied to.
    voxel_size
        mm along (x, y, z), for the erosion.
    erosion_mm
        Erosion radius in mm (0: none).
    source
        Name of the mask (e.g. its file name), used in error messages and ``method``.
    """
    mask = np.asarray(mask)
    if mask.ndim == 4 and mask.shape[3] == 1:
        mask = mask[..., 0]
    if tuple(mask.shape) != tuple(shape)[:3]:
        raise ValueError(f"{source}: shape {mask.shape} does not match the data {tuple(shape)}")
    binary = np.nan_to_num(mask.astype(np.float64)) != 0
    if not binary.any():
        raise ValueError(f"{source}: the mask is empty")
    binary = _erode_mm(binary, erosion_mm, voxel_size)
    if not binary.any():
        raise ValueError(f"{source}: nothing left after a {erosion_mm} mm erosion")
    return BrainMask(binary, float("nan"), f"{source}, erosion {erosion_mm:g} mm")
