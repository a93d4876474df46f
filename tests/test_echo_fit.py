"""Echo combination: phase offset (MCPC-3D-S) and weighted fit against the true field."""

import numpy as np
import pytest
import scipy.ndimage as ndi
from field_sim import EQUAL_TES, FIELD_STRENGTH_T, UNEQUAL_TES, field_hz, head, simulate

from qsmbids.recon.echo_fit import estimate_phase_offset, fit_field
from qsmbids.recon.field_estimation import FieldEstimationSettings, estimate_field
from qsmbids.recon.phase_scaling import wrap_to_pi
from qsmbids.recon.units import hz_per_ppm
from qsmbids.recon.unwrap import UnwrapSettings
from qsmbids.recon.unwrap_laplacian import discrete_laplacian


def _field_errors(estimate, sim, mask):
    """(constant offset, RMSE after it, 99th percentile) of the field error in Hz."""
    error = (estimate.field.field_hz - field_hz(sim))[mask]
    constant = float(np.median(error))
    centred = error - constant
    return constant, float(np.sqrt(np.mean(centred**2))), float(np.percentile(np.abs(centred), 99))


@pytest.mark.parametrize("echo_mode", ["temporal", "spatial"])
@pytest.mark.parametrize("echo_times", [EQUAL_TES, UNEQUAL_TES], ids=["equal", "unequal"])
def test_field_from_wrapped_phase_with_offset(echo_times, echo_mode):
    phantom = head()
    sim = simulate(echo_times, 20.0, True)
    mask = phantom.brain_mask
    estimate = estimate_field(sim.magnitude, sim.phase, echo_times, FIELD_STRENGTH_T, mask,
                              phantom.voxel_size,
                              FieldEstimationSettings(UnwrapSettings(echo_mode=echo_mode)))
    constant, rmse, p99 = _field_errors(estimate, sim, mask)
    span = np.ptp(field_hz(sim)[mask])
    print(f"TE {echo_times} {echo_mode}: field error vs truth over {span:.0f} Hz: "
          f"constant {constant:.3f} Hz, RMSE {rmse:.3f} Hz, p99 {p99:.3f} Hz, "
          f"predicted std {np.mean(estimate.field.field_std_hz[mask]):.3f} Hz")
    # the global 2*pi*k of the field is resolved (median field closest to 0 Hz)
    assert abs(constant) < 0.05
    # noise-limited: about the propagated noise (0.18 Hz) plus offset-smoothing error
    assert rmse < 0.35 and p99 < 1.0
    np.testing.assert_allclose(estimate.field.field_ppm * hz_per_ppm(FIELD_STRENGTH_T),
                               estimate.field.field_hz, rtol=1e-5, atol=1e-5)
    assert np.all(estimate.field.field_hz[~mask] == 0)
    assert "MCPC-3D-S" in estimate.description


@pytest.mark.parametrize("echo_times", [EQUAL_TES, UNEQUAL_TES], ids=["equal", "unequal"])
def test_mcpc3ds_recovers_the_phase_offset(echo_times):
    phantom = head()
    sim = simulate(echo_times, 20.0, True)
    mask = phantom.brain_mask
    offset = estimate_phase_offset(sim.phase, sim.magnitude, echo_times, mask,
                                   phantom.voxel_size)
    error = wrap_to_pi(offset - sim.phase_offset_rad)[mask]
    print(f"TE {echo_times}: offset error median {np.median(error):.4f}, "
          f"std {np.std(error):.4f} rad")
    assert abs(np.median(error)) < 0.01 and np.std(error) < 0.03


def test_noise_free_fit_is_exact_and_reliability_matches_noise():
    phantom = head()
    mask = phantom.brain_mask
    clean = simulate(UNEQUAL_TES, None, False)
    settings = FieldEstimationSettings(offset_correction=False)
    exact = estimate_field(clean.magnitude, clean.phase, UNEQUAL_TES, FIELD_STRENGTH_T, mask,
                           phantom.voxel_size, settings)
    assert np.abs(exact.field.field_hz - field_hz(clean))[mask].max() < 1e-3
    assert exact.field.residual_rad[mask].max() < 1e-4
    noisy = simulate(UNEQUAL_TES, 20.0, False, seed=5)
    estimate = estimate_field(noisy.magnitude, noisy.phase, UNEQUAL_TES, FIELD_STRENGTH_T,
                              mask, phantom.voxel_size, settings)
    _, rmse, _ = _field_errors(estimate, noisy, mask)
    predicted = float(np.sqrt(np.mean(estimate.field.field_std_hz[mask] ** 2)))
    assert estimate.field.noise_sigma == pytest.approx(noisy.noise_sigma, rel=0.05)
    assert rmse == pytest.approx(predicted, rel=0.1)


def test_single_echo_field_is_phase_over_te():
    phantom = head()
    mask = phantom.brain_mask
    sim = simulate((0.006,), 40.0, False)
    estimate = estimate_field(sim.magnitude[..., 0], sim.phase[..., 0], (0.006,),
                              FIELD_STRENGTH_T, mask, phantom.voxel_size)
    constant, rmse, _ = _field_errors(estimate, sim, mask)
    assert abs(constant) < 0.5 and rmse < 1.0
    assert np.all(estimate.field.residual_rad == 0)
    # noise sigma from the Rayleigh background on the FOV faces
    assert estimate.field.noise_sigma == pytest.approx(sim.noise_sigma, rel=0.1)
    assert "single echo" in estimate.description


@pytest.mark.parametrize(("sigma_mm", "bound"), [(0.0, 1e-3), (4.0, 0.05)])
def test_laplacian_pipeline_differs_from_truth_by_a_harmonic_field(sigma_mm, bound):
    # Laplacian unwrapping is exact up to a harmonic function per echo; the fit keeps
    # it harmonic (spatially uniform weights). Smoothing the MCPC-3D-S offset of a
    # curved offset adds a small non-harmonic error.
    phantom = head()
    mask = phantom.brain_mask
    sim = simulate(EQUAL_TES, None, True)
    settings = FieldEstimationSettings(UnwrapSettings("laplacian", "spatial"),
                                       offset_sigma_mm=sigma_mm)
    estimate = estimate_field(sim.magnitude, sim.phase, EQUAL_TES, FIELD_STRENGTH_T, mask,
                              phantom.voxel_size, settings)
    truth = field_hz(sim)
    inner = ndi.binary_erosion(mask, iterations=4)  # the Laplacian sees the mask edge
    error_laplacian = discrete_laplacian(estimate.field.field_hz - truth, phantom.voxel_size)
    truth_laplacian = discrete_laplacian(truth, phantom.voxel_size)
    ratio = np.abs(error_laplacian[inner]).mean() / np.abs(truth_laplacian[inner]).mean()
    assert ratio < bound
    assert "uniform" in estimate.description


def test_fit_rejects_inconsistent_echo_times():
    with pytest.raises(ValueError, match="one echo time per echo"):
        fit_field(np.zeros((3, 3, 3, 2)), np.ones((3, 3, 3, 2)), (0.01,), 3.0,
                  np.ones((3, 3, 3), bool))
    with pytest.raises(ValueError, match="distinct"):
        fit_field(np.zeros((3, 3, 3, 2)), np.ones((3, 3, 3, 2)), (0.01, 0.01), 3.0,
                  np.ones((3, 3, 3), bool))


@pytest.mark.slow
def test_anatomical_head_phantom_end_to_end():
    """Field and R2* on the anatomical phantom of qsmbids.sim.phantom (1.5 mm)."""
    from qsmbids.recon.relaxometry import estimate_r2star
    from qsmbids.sim.phantom import make_head_phantom
    from qsmbids.sim.signal import simulate_multi_echo_gre, smooth_phase_offset

    phantom = make_head_phantom(1.5)
    mask, tes = phantom.brain_mask, (0.004, 0.010, 0.016, 0.022)
    sim = simulate_multi_echo_gre(phantom.chi, phantom.m0, phantom.r2star, tes,
                                  FIELD_STRENGTH_T, phantom.voxel_size, snr=20, rng=0,
                                  phase_offset_rad=smooth_phase_offset(mask.shape, rng=1))
    estimate = estimate_field(sim.magnitude, sim.phase, tes, FIELD_STRENGTH_T, mask,
                              phantom.voxel_size)
    constant, rmse, p99 = _field_errors(estimate, sim, mask)
    print(f"anatomical phantom SNR 20: field constant {constant:.3f} Hz, RMSE {rmse:.3f} Hz, "
          f"p99 {p99:.3f} Hz")
    assert abs(constant) < 0.05 and rmse < 0.35 and p99 < 1.0
    sim50 = simulate_multi_echo_gre(phantom.chi, phantom.m0, phantom.r2star, tes,
                                    FIELD_STRENGTH_T, phantom.voxel_size, snr=50, rng=2)
    maps = estimate_r2star(sim50.magnitude, tes, mask)
    relative = (maps.r2star - phantom.r2star)[mask] / phantom.r2star[mask]
    print(f"anatomical phantom SNR 50: R2* mean |rel error| {100 * np.abs(relative).mean():.2f}%")
    assert np.abs(relative).mean() <= 0.05
    for label in (5, 7, 20, 21):  # pallidum, thalamus, white and grey matter: regional means
        region = phantom.labels[mask] == label
        assert abs(maps.r2star[mask][region].mean() / phantom.r2star[mask][region].mean()
                   - 1) < 0.01


def test_local_linear_smoothing_is_unbiased_up_to_the_mask_edge():
    """A linear trend is recovered at the edge of an ellipsoid where a normalised
    Gaussian average is biased by the one-sided window (analytic truth)."""
    import scipy.ndimage as ndi

    from qsmbids.recon.smoothing import local_linear_smooth

    n = 40
    x, y, z = np.meshgrid(*[np.arange(n, dtype=float) - n / 2] * 3, indexing="ij")
    mask = x**2 + y**2 + (1.3 * z) ** 2 < 17**2
    trend = 0.08 * x - 0.05 * z  # rad per voxel
    weight = 1 + 0.3 * np.cos(x / 3)
    fitted = local_linear_smooth(trend, weight, mask, (1.5, 1.5, 1.5), 4.0)
    assert np.abs(fitted - trend)[mask].max() < 1e-4
    # at 1 mm the fit runs on 2x2x2 blocks: still exact for the trend
    blocks = local_linear_smooth(trend, weight, mask, (1.0, 1.0, 1.0), 4.0)
    assert np.abs(blocks - trend)[mask].max() < 1e-4
    sigma = [4.0 / 1.5] * 3
    average = (ndi.gaussian_filter(np.where(mask, weight * trend, 0), sigma)[mask]
               / ndi.gaussian_filter(np.where(mask, weight, 0.0), sigma)[mask])
    assert np.abs(average - trend[mask]).max() > 0.1  # what the old smoothing did


def test_phase_offset_has_no_edge_bias():
    """MCPC-3D-S with a quadratic offset (qsm-forward's shape: -pi * r^2 / range) spanning
    pi over the mask: next to the mask edge the offset stays within 0.03 rad."""
    from qsmbids.recon.echo_fit import estimate_phase_offset

    rng = np.random.default_rng(5)
    shape, voxel = (44, 48, 40), (2.0, 2.0, 2.0)
    grid = np.meshgrid(*[np.arange(s) - s / 2 for s in shape], indexing="ij")
    radius2 = (grid[0] / 18) ** 2 + (grid[1] / 20) ** 2 + (grid[2] / 16) ** 2
    mask = radius2 < 1
    offset = -np.pi * radius2 / radius2[mask].max()
    field_hz = 12 * np.sin(grid[0] / 7) + 5 * grid[2] / 16
    tes = np.array([0.004, 0.010, 0.016])
    magnitude = np.repeat(np.where(mask, 1.0, 0.02)[..., None], 3, -1)
    noise = rng.normal(0, 0.02, (*shape, 3))
    phase = np.angle(np.exp(1j * (offset[..., None] + 2 * np.pi * field_hz[..., None] * tes
                                  + noise)))
    edge = mask & ~ndi_erode(mask, 2)
    # measured: local-linear 0.016 rad at the edge (0.004 deep), Gaussian 0.31 (0.11 deep)
    for smoothing, bound in (("local-linear", 0.03), ("gaussian", None)):
        estimate = estimate_phase_offset(phase, magnitude, tes, mask, voxel,
                                         smoothing=smoothing)
        error = np.angle(np.exp(1j * (estimate - offset)))
        bias = float(np.abs(error[edge]).mean())
        if bound is not None:
            assert bias < bound, smoothing
        else:
            assert bias > 0.2  # the one-sided Gaussian window at the edge


def ndi_erode(mask, voxels):
    import scipy.ndimage as ndi

    return ndi.binary_erosion(mask, iterations=voxels)
