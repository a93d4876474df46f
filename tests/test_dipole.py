"""Dipole kernel and forward model against analytic solutions."""

import numpy as np
import pytest
import scipy.ndimage as ndi

from qsmbids.recon.dipole import (
    b0_direction_from_affine,
    dipole_kernel,
    forward_field,
    voxel_sizes_from_affine,
)
from qsmbids.recon.units import hz_per_ppm, ppm_to_rad, rad_to_ppm


def _rotation_x(deg):
    t = np.deg2rad(deg)
    return np.array([[1, 0, 0], [0, np.cos(t), -np.sin(t)], [0, np.sin(t), np.cos(t)]])


def test_b0_direction_axial_is_third_axis():
    affine = np.diag([0.9, 0.9, 2.0, 1.0])
    np.testing.assert_allclose(b0_direction_from_affine(affine), [0, 0, 1])
    np.testing.assert_allclose(voxel_sizes_from_affine(affine), [0.9, 0.9, 2.0])


def test_b0_direction_oblique_slices():
    affine = np.eye(4)
    affine[:3, :3] = _rotation_x(20) @ np.diag([1.0, 1.0, 2.0])
    b = b0_direction_from_affine(affine)
    np.testing.assert_allclose(np.linalg.norm(b), 1)
    np.testing.assert_allclose(b, [0, np.sin(np.deg2rad(20)), np.cos(np.deg2rad(20))], atol=1e-12)


def test_kernel_properties():
    kernel = dipole_kernel((16, 12, 10), (1.0, 1.0, 2.0))
    assert kernel[0, 0, 0] == 0
    assert kernel.max() <= 1 / 3 + 1e-6 and kernel.min() >= -2 / 3 - 1e-6
    half = dipole_kernel((16, 12, 10), (1.0, 1.0, 2.0), real=True)
    np.testing.assert_allclose(half, kernel[:, :, :6])


def _sphere_case(b0_direction):
    n, radius, chi_in = 96, 7.0, 0.1
    grid = np.indices((n, n, n), dtype=float) - n / 2
    r = np.sqrt((grid**2).sum(0))
    # A band-limited sphere (as MRI sees it): a binary one has content up to Nyquist,
    # where the k-space kernel of a tilted B0 is discontinuous across the grid's
    # periodic boundary and rings along the diagonals (about 3% of the peak here).
    chi = ndi.gaussian_filter((r <= radius) * chi_in, 0.7)
    field = forward_field(chi, (1, 1, 1), b0_direction, pad_fraction=1.0)
    a = (3 * chi.sum() / chi_in / (4 * np.pi)) ** (1 / 3)  # radius of the same moment
    b = np.asarray(b0_direction) / np.linalg.norm(b0_direction)
    with np.errstate(divide="ignore", invalid="ignore"):
        cos = np.tensordot(b, grid, axes=1) / r
        outside = chi_in / 3 * (a / r) ** 3 * (3 * cos**2 - 1)
    peak = 2 * chi_in / 3
    return field, r, a, outside, peak


@pytest.mark.parametrize(
    "b0_direction", [(0, 0, 1), (0, np.sin(0.35), np.cos(0.35)), (0.5, 0.5, 0.7071)]
)
def test_sphere_matches_analytic_dipole_within_2_percent(b0_direction):
    field, r, a, analytic, peak = _sphere_case(b0_direction)
    far = (r >= 1.6 * a) & (r <= 30)
    inside = r <= 0.6 * a
    # outside: the dipole pattern; inside: no shift (Lorentz-corrected uniform sphere)
    assert np.max(np.abs(field[far] - analytic[far])) <= 0.02 * peak
    assert np.max(np.abs(field[inside])) <= 0.02 * peak


def test_units_round_trip():
    assert hz_per_ppm(3.0) == pytest.approx(127.73, abs=0.01)
    phase = ppm_to_rad(np.array([0.05]), 0.02, 3.0)
    assert phase[0] == pytest.approx(2 * np.pi * 127.7324 * 0.05 * 0.02, rel=1e-4)
    np.testing.assert_allclose(rad_to_ppm(phase, 0.02, 3.0), [0.05])
    with pytest.raises(ValueError, match="field strength"):
        hz_per_ppm(0)
