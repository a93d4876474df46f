"""Background field removal against forward-simulated ground truth.

The geometric head (tests/recon_phantoms.py) sits in air (+9.4 ppm) with a bone shell
(-2 ppm) and an air sinus against the brain: a background field about 25 times the
local field inside the brain. The local field truth is the field of the sources inside
the brain mask only.
"""

import numpy as np
import pytest
import scipy.fft
import scipy.ndimage as ndi
from recon_phantoms import make_geometric_head, split_field

from qsmbids.recon.background import (
    BACKGROUND_METHODS,
    mask_depth_mm,
    remove_background,
)
from qsmbids.recon.dipole import forward_field
from qsmbids.recon.kspace import sphere_kernel


@pytest.fixture(scope="module")
def strong_background():
    head = make_geometric_head(2.0)
    total, local = split_field(head)
    return head, total, local


def _energy_ratios(result, total, local):
    """Residual background energy over background energy inside the result's mask,
    raw and after removing the (undeterminable) mean of each."""
    valid = result.mask
    background = (total - local)[valid]
    error = (result.local_field - local)[valid]
    raw = np.sum(error**2) / np.sum(background**2)
    error -= error.mean()
    background -= background.mean()
    return raw, np.sum(error**2) / np.sum(background**2), np.sqrt(np.mean(error**2))


@pytest.mark.parametrize("method", sorted(BACKGROUND_METHODS))
def test_removes_95_percent_of_a_strong_background(strong_background, method):
    head, total, local = strong_background
    background_rms = np.sqrt(np.mean((total - local)[head.brain_mask] ** 2))
    local_rms = np.sqrt(np.mean(local[head.brain_mask] ** 2))
    assert background_rms > 10 * local_rms  # the case is what it claims to be
    result = remove_background(total, head.brain_mask, head.voxel_size, method=method,
                               workers=2)
    assert result.method == method
    assert result.mask.dtype == bool and not (result.mask & ~head.brain_mask).any()
    assert result.mask.sum() > 0.8 * head.brain_mask.sum()
    assert np.all(result.local_field[~result.mask] == 0)
    raw, demeaned, rms_error = _energy_ratios(result, total, local)
    print(f"{method}: residual background energy {raw:.4f} (demeaned {demeaned:.4f}), "
          f"local field RMS error {rms_error:.4f} ppm vs background RMS {background_rms:.3f}")
    assert raw <= 0.05 and demeaned <= 0.05


def _sphere_in_ball(voxel_size):
    """A small band-limited sphere inside a large spherical mask, plus a strong source
    outside the mask; returns total field, local field, mask."""
    shape = (80, 64, 64) if voxel_size[2] == 1.0 else (80, 64, 32)
    coords = np.indices(shape, dtype=float)
    centre = [(n - 1) / 2 for n in shape]
    mm = [(c - c0) * dx for c, c0, dx in zip(coords, centre, voxel_size, strict=True)]
    r = np.sqrt(sum(m**2 for m in mm))
    mask = r < 28
    inner = np.sqrt((mm[0] - 3) ** 2 + (mm[1] + 4) ** 2 + (mm[2] - 2) ** 2) < 5
    outer = np.sqrt((mm[0] - 34) ** 2 + mm[1] ** 2 + mm[2] ** 2) < 4
    chi_in = ndi.gaussian_filter(inner * 0.1, 0.7)
    chi_out = ndi.gaussian_filter(outer * 9.4, 0.7) * ~mask
    local = forward_field(chi_in, voxel_size, pad_fraction=1.0)
    total = local + forward_field(chi_out, voxel_size, pad_fraction=1.0)
    return total.astype(np.float32), local.astype(np.float32), mask


@pytest.mark.parametrize("voxel_size", [(1.0, 1.0, 1.0), (1.0, 1.0, 2.0)])
@pytest.mark.parametrize("method", sorted(BACKGROUND_METHODS))
def test_local_source_recovered_next_to_an_outside_source(method, voxel_size):
    """Analytic geometry, isotropic and anisotropic voxels: the outside source's field
    (11 times the local one) goes, the local sphere's field stays. Measured relative local
    field errors (1 mm / 1x1x2 mm): V-SHARP 0.04 / 0.15, RESHARP 0.24 / 0.33, PDF 0.37 /
    0.39: the field around the sphere is harmonic inside the mask, and PDF and RESHARP
    give up part of it near the mask edge."""
    total, local, mask = _sphere_in_ball(voxel_size)
    result = remove_background(total, mask, voxel_size, method=method, workers=2)
    valid = result.mask
    error = result.local_field[valid] - local[valid]
    error -= error.mean()
    background = (total - local)[valid]
    background -= background.mean()
    reference = local[valid] - local[valid].mean()
    relative = np.linalg.norm(error) / np.linalg.norm(reference)
    print(f"{method} {voxel_size}: relative local field error {relative:.3f}")
    assert np.sum(error**2) <= 0.05 * np.sum(background**2)
    assert relative < 0.5  # most of the local field survives


def test_mask_depth_matches_brute_force_sphere_containment():
    rng = np.random.default_rng(1)
    mask = ndi.binary_opening(rng.random((14, 13, 9)) < 0.8)
    voxel_size = (1.0, 0.8, 1.5)
    depth = mask_depth_mm(mask, voxel_size)
    padded = np.pad(mask, 4)
    offsets = np.indices((9, 9, 9)).reshape(3, -1).T - 4
    lengths = np.sqrt(((offsets * voxel_size) ** 2).sum(1))
    for radius in (1.0, 1.6, 2.5):
        ball = offsets[lengths <= radius]
        inside = np.ones_like(mask)
        for o in ball:
            inside &= padded[4 + o[0]:4 + o[0] + 14, 4 + o[1]:4 + o[1] + 13,
                             4 + o[2]:4 + o[2] + 9]
        np.testing.assert_array_equal(depth > radius, inside & mask)


def test_sphere_kernel_is_a_normalised_ellipsoid_of_voxels_in_mm():
    kernel = sphere_kernel((32, 32, 16), (1.0, 1.0, 2.0), 4.0)
    assert kernel[0, 0, 0] == pytest.approx(1.0, abs=1e-6)
    image = scipy.fft.irfftn(kernel, s=(32, 32, 16))
    support = image > 1e-6
    assert support[4, 0, 0] and not support[5, 0, 0]  # 4 voxels of 1 mm along x
    assert support[0, 0, 2] and not support[0, 0, 3]  # 2 voxels of 2 mm along z


def test_vsharp_output_mask_is_eroded_by_the_smallest_radius(strong_background):
    head, total, _ = strong_background
    result = remove_background(total, head.brain_mask, head.voxel_size, method="vsharp",
                               radii_mm=(10.0, 6.0, 4.0))
    expected = mask_depth_mm(head.brain_mask, head.voxel_size) > 4.0
    np.testing.assert_array_equal(result.mask, expected)
    assert result.parameters["radii_mm"] == [10.0, 6.0, 4.0]


def test_bad_inputs_are_reported_clearly():
    field = np.zeros((8, 8, 8), np.float32)
    mask = np.zeros((8, 8, 8), bool)
    with pytest.raises(ValueError, match="mask is empty"):
        remove_background(field, mask, method="pdf")
    mask[2:6, 2:6, 2:6] = True
    with pytest.raises(ValueError, match="does not match"):
        remove_background(field, mask[:-1], method="vsharp")
    with pytest.raises(ValueError, match="unknown background method"):
        remove_background(field, mask, method="sharp9")
    with pytest.raises(ValueError, match="thinner than the smallest"):
        remove_background(field, mask, method="vsharp", radii_mm=(6.0,))
    bad = field.copy()
    bad[3, 3, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        remove_background(bad, mask, method="resharp")


def test_pdf_uses_the_oblique_b0_direction():
    """B0 tilted 20 degrees: PDF's dipole basis must be built for the true direction.
    Measured: residual energy 0.0017 with the true direction, 0.0025 with B0 along z (the
    fitted outside sources partly mimic the wrong kernel, so the gap is modest here)."""
    head = make_geometric_head(2.0)
    tilted = (0.0, np.sin(np.deg2rad(20)), np.cos(np.deg2rad(20)))
    total, local = split_field(head, tilted)
    ratios = {}
    for name, direction in (("true", tilted), ("axial", (0.0, 0.0, 1.0))):
        result = remove_background(total, head.brain_mask, head.voxel_size, direction,
                                   method="pdf", workers=2)
        ratios[name] = _energy_ratios(result, total, local)[1]
    print(f"PDF residual background energy, 20 deg tilt: {ratios['true']:.4f} with the true "
          f"direction, {ratios['axial']:.4f} assuming B0 along z")
    assert ratios["true"] <= 0.05
    assert ratios["axial"] > 1.2 * ratios["true"]


@pytest.mark.parametrize("method", ["pdf", pytest.param("vsharp", marks=pytest.mark.slow)])
def test_nucleus_means_survive_background_removal_and_inversion(method):
    """Total field of the anatomical phantom (sinuses, mastoid air, skull) -> background
    removal -> default inversion -> whole-brain reference. Measured at 2 mm (2026-11):
    PDF worst 0.0054 ppm over the 12 basal-ganglia/midbrain nuclei and 0.028 ppm in the
    dentate (next to the skull base, where background removal leaves most residue);
    V-SHARP 0.017 and 0.037 ppm."""
    from recon_phantoms import nucleus_errors, realistic_head

    from qsmbids.recon.inversion import invert_dipole

    head = realistic_head(2.0)
    total = forward_field(head.chi.astype(np.float64), head.voxel_size, pad_fraction=1.0)
    total = np.where(head.brain_mask, total, 0).astype(np.float32)
    local = remove_background(total, head.brain_mask, head.voxel_size, method=method,
                              workers=2)
    chi = invert_dipole(local.local_field, local.mask, head.voxel_size, workers=2).chi
    errors = nucleus_errors(chi, head.chi, local.mask, head.labels)
    basal = max(abs(errors[k]) for k in range(1, 13))
    dentate = max(abs(errors[k]) for k in (13, 14))
    print(f"{method} + tv: worst nucleus error {basal:.4f} ppm (caudate..red nucleus), "
          f"{dentate:.4f} ppm (dentate)")
    assert basal <= (0.01 if method == "pdf" else 0.02)
    assert dentate <= 0.05
