"""The subject image a template is registered to: echoes combined (root sum of squares),
masked, and corrected for the receive bias (ANTs N4 fitted on a ~5 mm grid)."""

from __future__ import annotations

import ants
import nibabel as nib
import numpy as np

from qsmbids.registration.antsio import itk_threads, load_nifti
from qsmbids.registration.grids import bounding_box


def combine_echoes(magnitude) -> nib.Nifti1Image:
    """Root-sum-of-squares over echoes of a 4D (x, y, z, echo) magnitude; 3D passes through."""
    image = load_nifti(magnitude)
    if len(image.shape) == 3:
        return image
    if len(image.shape) != 4:
        raise ValueError(f"magnitude must be 3D or 4D (x, y, z, echo), got {image.shape}")
    data = np.asarray(image.dataobj, dtype=np.float32)
    rss = np.sqrt(np.sum(data * data, axis=3))
    return nib.Nifti1Image(rss, image.affine)


def prepare_target(image, mask=None, *, n4: bool = True, n_threads: int | None = None
                   ) -> nib.Nifti1Image:
    """Registration target from a subject image: echo-combined, N4-corrected, masked.

    Parameters
    ----------
    image
        GRE magnitude (3D or 4D with echoes last) or T1w, nibabel image or path.
    mask
        Brain mask on the same grid (the reconstruction mask); voxels outside are
        set to 0 so that the skull-stripped template meets a skull-stripped target.
    n4
        Correct the receive-coil bias field with ANTs N4 (inside the mask, on the
        mask's bounding box, fitted on a ~5 mm grid: :func:`n4_shrink_factor`).
    n_threads
        ITK threads.

    Returns
    -------
    nibabel.Nifti1Image
        float32, same grid as ``image``.
    """
    img = combine_echoes(image)
    data = np.asarray(img.dataobj, dtype=np.float32)
    inside = data > 0  # N4 works on log intensities: fit only where the signal is positive
    if mask is not None:
        mask_img = load_nifti(mask)
        if mask_img.shape[:3] != img.shape[:3]:
            raise ValueError(
                f"mask shape {mask_img.shape} does not match image shape {img.shape}"
            )
        brain = np.asarray(mask_img.dataobj) > 0
        data = np.where(brain, data, np.float32(0))
        inside &= brain
    box = bounding_box(inside) if n4 else None
    if box is not None:
        # fit on the bounding box of the fit mask only (the rest is zero or unused)
        spacing = np.asarray(img.header.get_zooms()[:3], float)
        with itk_threads(n_threads):
            crop = ants.from_numpy(np.ascontiguousarray(data[box]), spacing=tuple(spacing))
            fit = crop.new_image_like(inside[box].astype(np.float32))
            corrected = ants.n4_bias_field_correction(crop, mask=fit,
                                                      shrink_factor=n4_shrink_factor(spacing),
                                                      convergence=N4_CONVERGENCE)
        data[box] = np.where(inside[box], corrected.numpy(), data[box])
    out = nib.Nifti1Image(data, img.affine)
    out.header.set_xyzt_units("mm")
    return out


#: voxel size of the grid N4 fits its bias field on, mm (the field is smooth)
N4_FIT_VOXEL_MM = 5.0
#: N4's iterations per fitting level and the convergence threshold that ends a level
#: early. antspyx's default threshold, 1e-7, runs every iteration; 1e-4 gave the same
#: corrected image (correlation 1.00000 inside the mask) on a qsm-forward 1 mm head in
#: 4.7 instead of 6.6 s on 2 threads, but on qsmbids' 1 mm phantom no level stopped
#: early (9.1 s on the one thread the registration has beside the reconstruction).
#: 5e-4: 2.2 s there, correlation 0.9959 with 1e-4's corrected image (0.9835 without
#: N4). The refined registration's errors stay within their run-to-run spread
#: (bench_nuclei_registration, 2026-12-07: the 70-year-old phantom's pallidum, the
#: nucleus nearest the 0.005 ppm target, 0.0040-0.0058 ppm in four runs with 5e-4,
#: 0.0040-0.0065 in eight with 1e-4; the qsm-forward subjects <= 0.0034 with both)
N4_CONVERGENCE = {"iters": [50, 50, 50, 50], "tol": 5e-4}


def n4_shrink_factor(voxel_size_mm) -> int:
    """N4 shrink factor that fits the bias field on a grid of about 5 mm (at least 2).

    Measured on the 1 mm phantom (139x172x151 brain box, 2 threads), correlation of the
    corrected image with shrink 2's (104 s) inside the mask: shrink 4 r = 0.99856
    (13.9 s), 5 r = 0.99834 (7.6 s), 6 r = 0.9934 (4.9 s), 8 r = 0.973 (2.6 s).
    The fit time is set by the fit grid, not the image: N4 on a 2 mm copy at shrink 2
    takes as long as the 1 mm image at shrink 4.
    """
    return max(2, round(N4_FIT_VOXEL_MM / float(np.min(voxel_size_mm))))
