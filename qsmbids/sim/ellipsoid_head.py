"""A small geometric head phantom for fast tests of the field-estimation steps.

An ellipsoidal brain with a few susceptibility blobs, inside a dark skull shell and
a bright scalp, an air cavity beneath the brain, and a smooth background field
(imperfect shim / sources outside the field of view) strong enough to wrap the
phase many times. Edges are slightly smoothed (band-limited). For a realistic
anatomical phantom see :mod:`qsmbids.sim.phantom`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.ndimage as ndi


@dataclass(frozen=True)
class EllipsoidHead:
    """Maps of the small test phantom, all (x, y, z).

    Attributes
    ----------
    chi
        Susceptibility in ppm (air cavity included), float32.
    m0
        Signal at TE = 0 (a.u.), float32; 0 in air, low in the skull.
    r2star
        R2* in 1/s, float32.
    brain_mask
        bool, the true brain.
    background_field_ppm
        Smooth field from sources outside the FOV (pass as ``extra_field_ppm``), float32.
    voxel_size
        mm.
    """

    chi: np.ndarray
    m0: np.ndarray
    r2star: np.ndarray
    brain_mask: np.ndarray
    background_field_ppm: np.ndarray
    voxel_size: tuple[float, float, float]


def _normalised_radius(coords, centre, semi_axes):
    return np.sqrt(sum(((c - c0) / a) ** 2 for c, c0, a in zip(coords, centre, semi_axes,
                                                               strict=True)))


def ellipsoid_head(
    shape: Sequence[int] = (64, 72, 56),
    voxel_size: Sequence[float] = (2.0, 2.0, 2.0),
    *,
    background_ppm: float = 5.0,
    smooth_voxels: float = 0.6,
    seed: int = 0,
) -> EllipsoidHead:
    """Build the phantom.

    Parameters
    ----------
    shape
        Grid size in voxels (x, y, z).
    voxel_size
        mm.
    background_ppm
        Peak-to-peak amplitude (ppm) of the smooth background field over the brain.
    smooth_voxels
        Gaussian sigma (voxels) applied to the maps' edges.
    seed
        Random generator seed for blob positions/values.
    """
    rng = np.random.default_rng(seed)
    shape = tuple(int(n) for n in shape)
    coords = np.meshgrid(*[np.linspace(-1.0, 1.0, n) for n in shape], indexing="ij")
    head_r = _normalised_radius(coords, (0.0, 0.0, 0.0), (0.85, 0.88, 0.85))
    brain = head_r < 0.76
    dura = (head_r >= 0.76) & (head_r < 0.80)
    skull = (head_r >= 0.80) & (head_r < 0.90)
    scalp = (head_r >= 0.90) & (head_r < 1.0)
    cavity = _normalised_radius(coords, (0.0, 0.62, -0.55), (0.09, 0.07, 0.07)) < 1.0

    chi = np.zeros(shape, np.float32)
    m0 = np.zeros(shape, np.float32)
    r2 = np.zeros(shape, np.float32)
    m0[brain], r2[brain], chi[brain] = 1.0, 22.0, -0.02
    m0[dura], r2[dura], chi[dura] = 0.05, 40.0, 0.0
    m0[skull], r2[skull], chi[skull] = 0.05, 200.0, -0.5
    m0[scalp], r2[scalp] = 0.8, 30.0
    for _ in range(6):
        centre = rng.uniform(-0.35, 0.35, 3)
        blob = _normalised_radius(coords, centre, rng.uniform(0.06, 0.12, 3)) < 1.0
        chi[blob] = rng.uniform(0.05, 0.25)
        r2[blob] = rng.uniform(30.0, 60.0)
    m0[cavity], r2[cavity], chi[cavity] = 0.0, 0.0, 9.2
    if smooth_voxels > 0:
        chi = ndi.gaussian_filter(chi, smooth_voxels)
        m0 = ndi.gaussian_filter(m0, smooth_voxels)
        r2 = ndi.gaussian_filter(r2, smooth_voxels)
    x, y, z = coords
    background = x + 0.9 * y + 0.8 * z + 0.3 * (x**2 - y**2) + 0.2 * x * z
    inside = background[brain]
    background *= background_ppm / float(inside.max() - inside.min())
    return EllipsoidHead(chi.astype(np.float32), m0.astype(np.float32), r2.astype(np.float32),
                         brain, background.astype(np.float32),
                         tuple(float(v) for v in voxel_size))
