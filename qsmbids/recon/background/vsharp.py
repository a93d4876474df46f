"""V-SHARP: background removal with spherical mean value filters of several radii.

Background fields are harmonic inside the brain, so a spherical mean value (SMV) filter
``delta - S_r`` removes them wherever the sphere of radius ``r`` lies inside the mask.
Each voxel uses the largest radius that fits (large spheres keep more of the local
field, small ones reach the edge); the combined high-passed field is deconvolved with
the largest kernel, truncating its small k-space values (TSVD), and is valid on the mask
eroded by the smallest radius (Li et al., NeuroImage 2011; Wu et al., MRM 2012).

Cost: 1 FFT + 2 FFTs per radius (kernel and filtered field) + 2 FFTs for the
deconvolution; mask erosions for all radii come from one Euclidean distance transform.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.ndimage as ndi

from qsmbids.recon.background._result import LocalField
from qsmbids.recon.kspace import FFTGrid, check_inputs, sphere_kernel

#: default largest SMV radius in mm
DEFAULT_MAX_RADIUS_MM = 12.0
#: default TSVD threshold of the deconvolution
DEFAULT_THRESHOLD = 0.05


def default_radii(voxel_size: Sequence[float], max_radius_mm: float = DEFAULT_MAX_RADIUS_MM
                  ) -> tuple[float, ...]:
    """Radii (mm) from ``max_radius_mm`` down to the largest voxel edge, in steps of it."""
    step = float(max(voxel_size))
    if max_radius_mm < step:
        raise ValueError(f"max radius {max_radius_mm} mm is below the voxel size {step} mm")
    count = int(np.floor(max_radius_mm / step + 1e-6))
    return tuple(float(max_radius_mm - i * step) for i in range(count))


def mask_depth_mm(mask: np.ndarray, voxel_size: Sequence[float]) -> np.ndarray:
    """Distance (mm) from each mask voxel to the nearest voxel outside the mask.

    Voxels beyond the array edge count as outside. A sphere of radius ``r`` centred at
    a voxel lies entirely inside the mask exactly where this depth exceeds ``r``.
    """
    padded = np.pad(np.asarray(mask, bool), 1)
    depth = ndi.distance_transform_edt(padded, sampling=tuple(voxel_size))
    return depth[1:-1, 1:-1, 1:-1].astype(np.float32)


def vsharp(
    field: np.ndarray,
    mask: np.ndarray,
    voxel_size: Sequence[float] = (1.0, 1.0, 1.0),
    *,
    radii_mm: Sequence[float] | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    workers: int | None = None,
) -> LocalField:
    """Remove the background field with V-SHARP.

    Parameters
    ----------
    field
        Total (unwrapped, echo-combined) field in ppm, (x, y, z).
    mask
        Brain mask, (x, y, z); the field outside it is ignored.
    voxel_size
        mm along (x, y, z); anisotropic voxels give ellipsoids of voxels for each sphere.
    radii_mm
        SMV radii in mm (any order); default :func:`default_radii` (12 mm down to one
        voxel edge). The output mask is the input mask eroded by the smallest radius.
    threshold
        Truncation of the deconvolution: k-space values of ``1 - S_rmax`` below it are
        zeroed.
    workers
        Threads for ``scipy.fft``.

    Returns
    -------
    LocalField
        Local field (ppm) on the eroded mask.
    """
    field, mask, voxel_size = check_inputs(field, mask, voxel_size)
    radii = sorted((float(r) for r in (radii_mm or default_radii(voxel_size))), reverse=True)
    if radii[-1] <= 0:
        raise ValueError(f"V-SHARP radii must be positive mm, got {radii_mm}")
    if not 0 < threshold < 1:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    reach = [int(np.ceil(radii[0] / dx)) for dx in voxel_size]
    grid = FFTGrid.around(mask, voxel_size, pad_fraction=0.25, min_pad=[2 * r for r in reach],
                          workers=workers)
    spectrum = grid.rfft(grid.pad(field))
    depth = grid.pad(mask_depth_mm(mask, voxel_size))

    combined = np.zeros(grid.shape, np.float32)
    assigned = np.zeros(grid.shape, bool)
    largest = None
    for radius in radii:
        valid = (depth > radius) & ~assigned
        smv = sphere_kernel(grid.shape, voxel_size, radius, workers)
        smv = np.subtract(1.0, smv, out=smv)  # delta - S_r
        if largest is None:
            largest = smv
        if valid.any():
            filtered = grid.irfft(spectrum * smv)
            combined[valid] = filtered[valid]
            assigned |= valid
    if not assigned.any():
        raise ValueError(
            f"mask is thinner than the smallest V-SHARP radius ({radii[-1]} mm): nothing left")
    del spectrum
    inverse = np.zeros_like(largest)
    keep = np.abs(largest) > threshold
    inverse[keep] = 1.0 / largest[keep]
    local = grid.convolve(combined, inverse)
    local[~assigned] = 0.0
    out_mask = grid.unpad(assigned)
    return LocalField(
        grid.unpad(local.astype(np.float32, copy=False)),
        out_mask,
        "vsharp",
        {"radii_mm": radii, "threshold": threshold},
        {"eroded_mm": radii[-1]},
    )
