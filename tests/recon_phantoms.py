"""Small geometric head phantoms for the background-removal and inversion tests.

Ellipsoids with smooth (band-limited) edges: a head of soft tissue in air, a bone
shell, an air sinus, a brain with grey/white matter, ventricles, the deep grey nuclei
(contract label numbers), a vein and a calcification. Susceptibility in ppm relative to
water/soft tissue, so air is +9.4 ppm and bone -2 ppm: strong sources outside the brain.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import scipy.ndimage as ndi

from qsmbids.recon.dipole import AXIAL, forward_field

FOV_MM = (192.0, 224.0, 176.0)

# (label, centre mm from the FOV centre (x: left-right, y: posterior-anterior, z: up),
#  semi-axes mm, chi ppm); later entries overwrite earlier ones
_NUCLEI = [
    (1, (-13, 14, 12), (5, 11, 7), 0.060),   # Caudate_L
    (2, (13, 14, 12), (5, 11, 7), 0.060),
    (3, (-26, 4, 2), (6, 14, 10), 0.045),    # Putamen_L
    (4, (26, 4, 2), (6, 14, 10), 0.045),
    (5, (-19, 0, -1), (4, 9, 6), 0.160),     # GlobusPallidus_L
    (6, (19, 0, -1), (4, 9, 6), 0.160),
    (7, (-10, -14, 6), (8, 14, 9), 0.015),   # Thalamus_L
    (8, (10, -14, 6), (8, 14, 9), 0.015),
    (9, (-10, -14, -18), (4, 8, 3), 0.130),  # SubstantiaNigra_L
    (10, (10, -14, -18), (4, 8, 3), 0.130),
    (11, (-5, -18, -12), (3.5, 3.5, 3.5), 0.110),  # RedNucleus_L
    (12, (5, -18, -12), (3.5, 3.5, 3.5), 0.110),
    (13, (-15, -55, -35), (6, 7, 5), 0.130),  # Dentate_L
    (14, (15, -55, -35), (6, 7, 5), 0.130),
]


@dataclass(frozen=True)
class GeometricHead:
    """chi (ppm, whole FOV), labels (contract numbers), brain mask, voxel size (mm)."""

    chi: np.ndarray
    labels: np.ndarray
    brain_mask: np.ndarray
    voxel_size: tuple[float, float, float]


def _ellipsoid(coords, centre, axes):
    return sum(((c - c0) / a) ** 2 for c, c0, a in zip(coords, centre, axes, strict=True)) <= 1


def make_geometric_head(voxel_size_mm: float = 2.0) -> GeometricHead:
    """Build the phantom on a ``FOV_MM`` grid at isotropic ``voxel_size_mm``."""
    shape = tuple(round(f / voxel_size_mm) for f in FOV_MM)
    coords = np.ogrid[tuple(slice(0, n) for n in shape)]
    coords = [(c - (n - 1) / 2) * voxel_size_mm for c, n in zip(coords, shape, strict=True)]
    x, y, z = coords
    labels = np.zeros(shape, np.int16)
    chi = np.full(shape, 9.4, np.float32)  # air
    layers = [
        (31, (0, 0, 0), (82, 102, 84), 0.0),     # soft tissue
        (30, (0, 0, 4), (76, 96, 78), -2.0),     # bone
        (31, (0, 0, 4), (71, 91, 73), 0.0),      # meninges/soft tissue
        (32, (0, 62, -48), (20, 14, 14), 9.4),   # sinus (air)
        (21, (0, 0, 4), (66, 86, 68), 0.020),    # grey matter
        (20, (0, 0, 4), (58, 78, 60), -0.030),   # white matter
        (22, (-9, 5, 14), (5, 22, 9), 0.0),      # ventricles (CSF)
        (22, (9, 5, 14), (5, 22, 9), 0.0),
    ]
    for label, centre, axes, value in layers:
        inside = _ellipsoid(coords, centre, axes)
        labels[inside], chi[inside] = label, value
    for label, centre, axes, value in _NUCLEI:
        inside = _ellipsoid(coords, centre, axes)
        labels[inside], chi[inside] = label, value
    vein = ((x - 0) ** 2 + (z - 40) ** 2 <= 2.5**2) & (np.abs(y + 20) <= 50)
    vein = vein & np.isin(labels, [20, 21])
    labels[vein], chi[vein] = 23, 0.35
    calc = _ellipsoid(coords, (30, 30, 25), (2.5, 2.5, 2.5))
    labels[calc], chi[calc] = 24, -0.25
    brain = np.isin(labels, [*range(1, 15), 20, 21, 22, 23, 24])
    chi = ndi.gaussian_filter(chi, 0.6).astype(np.float32)  # band-limited edges
    return GeometricHead(chi, labels, brain, (voxel_size_mm,) * 3)


def split_field(head: GeometricHead, b0_direction=AXIAL):
    """Total field and the local field (sources inside the brain mask only), ppm."""
    total = forward_field(head.chi, head.voxel_size, b0_direction, pad_fraction=0.5)
    local = forward_field(np.where(head.brain_mask, head.chi, 0), head.voxel_size,
                          b0_direction, pad_fraction=0.5)
    return total, local


@functools.lru_cache(maxsize=2)
def realistic_head(voxel_size_mm: float):
    """The issue-5 anatomical head phantom (cached: building it takes seconds)."""
    from qsmbids.sim.phantom import make_head_phantom

    return make_head_phantom(voxel_size_mm)


def true_local_field(chi, brain_mask, voxel_size, b0_direction=AXIAL, noise_ppm=0.0, seed=0):
    """Field (ppm) of the sources inside the brain mask, on the mask, plus Gaussian noise.

    Computed in float64 with a larger zero padding (pad_fraction 1) than the inversions
    use (0.25 around the mask's box), so the forward and inverse grids differ.
    """
    inside = np.where(brain_mask, chi, 0.0).astype(np.float64)
    local = forward_field(inside, voxel_size, b0_direction, pad_fraction=1.0)
    if noise_ppm:
        local = local + np.random.default_rng(seed).normal(0.0, noise_ppm, local.shape)
    return np.where(brain_mask, local, 0.0).astype(np.float32)


def nucleus_errors(chi, truth, mask, labels):
    """Per-label (1..14) mean of whole-brain-referenced ``chi`` minus that of ``truth``, ppm."""
    rec = chi - chi[mask].mean()
    ref = truth - truth[mask].mean()
    return {label: float(rec[labels == label].mean() - ref[labels == label].mean())
            for label in range(1, 15)}
