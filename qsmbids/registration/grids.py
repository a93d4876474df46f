"""Working grids of a registration: the bounding box of a mask, a crop to it with a
margin, and isotropic resampling (anti-aliased when coarsening). ANTs images; mm."""

from __future__ import annotations

import ants
import numpy as np

from qsmbids.recon.masking import grown_bounding_box


def matching_sigma_mm(target_fwhm_mm, current_fwhm_mm) -> np.ndarray:
    """Gaussian sigma (mm, per axis) that blurs an image of resolution ``current_fwhm_mm``
    (FWHM, mm; scalar or per axis) to ``target_fwhm_mm`` (zero where it is already as
    coarse). Resolutions add in quadrature; a voxel counts as a FWHM of its width."""
    target = np.asarray(target_fwhm_mm, float)
    current = np.asarray(current_fwhm_mm, float)
    return np.sqrt(np.maximum(target**2 - current**2, 0.0)) / 2.3548


def to_working_grid(image: ants.ANTsImage, voxel_mm: float, *, label: bool = False
                    ) -> ants.ANTsImage:
    """Resample to an isotropic ``voxel_mm`` grid; anti-aliased (Gaussian) when coarsening."""
    spacing = np.asarray(image.spacing, float)
    if np.allclose(spacing, voxel_mm, rtol=0.01):
        return image
    if not label:
        sigma = matching_sigma_mm(voxel_mm, spacing)
        if np.any(sigma > 0):
            image = ants.smooth_image(image, tuple(sigma.tolist()),
                                      sigma_in_physical_coordinates=True)
    return ants.resample_image(image, (voxel_mm,) * 3, use_voxels=False,
                               interp_type=1 if label else 0)


def bounding_box(mask: np.ndarray) -> tuple[slice, ...] | None:
    """Slices of the smallest box holding every true voxel of ``mask`` (None if empty)."""
    return grown_bounding_box(mask, 0)


def crop_to_mask(image: ants.ANTsImage, mask: ants.ANTsImage, margin_mm: float
                  ) -> tuple[ants.ANTsImage, ants.ANTsImage]:
    """Crop ``image`` and ``mask`` to the mask's bounding box plus ``margin_mm``."""
    pad = np.ceil(margin_mm / np.asarray(mask.spacing)).astype(int)
    box = grown_bounding_box(mask.numpy() > 0, pad)
    if box is None:
        raise ValueError("the registration target mask is empty")
    # crop_indices' upper index is exclusive (measured): stop + pad, at most the shape
    lo, hi = [int(b.start) for b in box], [int(b.stop) for b in box]
    return ants.crop_indices(image, lo, hi), ants.crop_indices(mask, lo, hi)
