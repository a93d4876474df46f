"""Phase unwrapping against the simulated (noise-free) true phase."""

import numpy as np
import pytest
import scipy.ndimage as ndi
from field_sim import (
    EQUAL_TES,
    UNEQUAL_TES,
    exact_fraction,
    head,
    simulate,
    true_phase,
    wraps_across,
)

from qsmbids.recon.echo_fit import remove_phase_offset
from qsmbids.recon.unwrap import UnwrapSettings, residual_wraps, unwrap_echoes
from qsmbids.recon.unwrap_laplacian import discrete_laplacian, unwrap_laplacian
from qsmbids.recon.unwrap_region_growing import (
    QualityInputs,
    unwrap_region_growing,
    voxel_quality,
)


def _congruent(unwrapped, wrapped, mask):
    turns = (unwrapped - wrapped)[mask] / (2 * np.pi)
    return np.abs(turns - np.round(turns)).max() < 1e-4


@pytest.mark.parametrize("use_second_echo", [False, True])
def test_region_growing_exact_at_snr20_with_many_wraps(use_second_echo):
    phantom = head()
    sim = simulate(EQUAL_TES, 20.0, True)
    mask, last = phantom.brain_mask, len(EQUAL_TES) - 1
    wraps = wraps_across(sim, mask, last)
    assert wraps >= 10
    quality = QualityInputs(
        magnitude=sim.magnitude[..., last],
        second_phase=sim.phase[..., last - 1] if use_second_echo else None,
        te_ratio=EQUAL_TES[last - 1] / EQUAL_TES[last])
    unwrapped = unwrap_region_growing(sim.phase[..., last], mask, quality)
    assert _congruent(unwrapped, sim.phase[..., last], mask)
    assert np.all(unwrapped[~mask] == 0)
    fraction = exact_fraction(unwrapped, true_phase(sim, last), mask)
    print(f"region growing, {wraps:.1f} wraps, SNR 20: exact in {100 * fraction:.3f}% of mask")
    assert fraction >= 0.995


def test_region_growing_phase_only_and_separate_components():
    # two disconnected balls, each with its own ramp: each is unwrapped exactly
    grid = np.indices((40, 30, 20), dtype=float)
    ball_a = ((grid - np.array([10, 15, 10])[:, None, None, None]) ** 2).sum(0) < 64
    ball_b = ((grid - np.array([30, 15, 10])[:, None, None, None]) ** 2).sum(0) < 64
    truth = 1.3 * grid[0] + 0.9 * grid[1] - 0.7 * grid[2]
    wrapped = np.angle(np.exp(1j * truth)).astype(np.float32)
    unwrapped = unwrap_region_growing(wrapped, ball_a | ball_b)
    for ball in (ball_a, ball_b):
        assert exact_fraction(unwrapped, truth, ball) == 1.0


def test_voxel_quality_is_low_where_noise_is():
    phantom = head()
    sim = simulate(EQUAL_TES, 20.0, True)
    quality = voxel_quality(sim.phase[..., 0], None, QualityInputs(sim.magnitude[..., 0]))
    air = phantom.m0 == 0
    assert quality.min() >= 0 and quality.max() <= 1
    assert np.median(quality[phantom.brain_mask]) > 0.5 > 5 * np.median(quality[air])


def test_laplacian_reproduces_the_true_laplacian():
    phantom = head()
    sim = simulate(EQUAL_TES, None, True)
    last = len(EQUAL_TES) - 1
    truth = true_phase(sim, last)
    assert wraps_across(sim, phantom.brain_mask, last) >= 10
    unwrapped = unwrap_laplacian(sim.phase[..., last], phantom.voxel_size)
    expected = discrete_laplacian(truth, phantom.voxel_size)
    got = discrete_laplacian(unwrapped, phantom.voxel_size)
    # wherever the 7-point stencil sees signal (air has no phase: angle(0) = 0)
    inner = ndi.binary_erosion(phantom.brain_mask, iterations=1)
    scale = np.abs(expected[inner]).max()
    assert np.abs(got - expected)[inner].max() <= 1e-4 * scale


def test_laplacian_with_noise_and_mask_matches_wrapped_laplacian():
    phantom = head()
    sim = simulate(EQUAL_TES, 20.0, True)
    mask = phantom.brain_mask
    unwrapped = unwrap_laplacian(sim.phase[..., 0], phantom.voxel_size, mask)
    inner = ndi.binary_erosion(mask, iterations=1)
    wrapped_laplacian = discrete_laplacian(sim.phase[..., 0], phantom.voxel_size, wrapped=True)
    got = discrete_laplacian(unwrapped, phantom.voxel_size)
    assert np.abs(got - wrapped_laplacian)[inner].max() < 1e-4
    assert np.all(unwrapped[~mask] == 0)


@pytest.mark.parametrize("echo_mode", ["temporal", "spatial"])
@pytest.mark.parametrize("echo_times", [EQUAL_TES, UNEQUAL_TES])
def test_multi_echo_driver_is_exact_and_consistent_across_echoes(echo_mode, echo_times):
    phantom = head()
    sim = simulate(echo_times, 20.0, True)
    mask = phantom.brain_mask
    phase = remove_phase_offset(sim.phase, sim.phase_offset_rad)
    unwrapped = unwrap_echoes(phase, sim.magnitude, echo_times, mask, phantom.voxel_size,
                              UnwrapSettings(echo_mode=echo_mode))
    turns = []
    for n in range(len(echo_times)):
        truth = true_phase(sim, n) - sim.phase_offset_rad
        assert exact_fraction(unwrapped[..., n], truth, mask) >= 0.995
        turns.append(np.median(np.round((unwrapped[..., n] - truth)[mask] / (2 * np.pi))))
    # one global integer ambiguity of the field, not one per echo
    assert np.allclose(np.array(turns) / np.array(echo_times), turns[0] / echo_times[0])


def test_settings_are_validated():
    assert UnwrapSettings().echo_mode == "temporal"
    assert UnwrapSettings(method="laplacian").echo_mode == "spatial"
    with pytest.raises(ValueError, match="not congruent"):
        UnwrapSettings(method="laplacian", echo_mode="temporal")
    with pytest.raises(ValueError, match="unknown unwrapping method"):
        UnwrapSettings(method="best-path")
    with pytest.raises(ValueError, match="echo times"):
        unwrap_echoes(np.zeros((4, 4, 4, 2)), None, (0.01,), np.ones((4, 4, 4), bool),
                      (1, 1, 1))


def test_residual_wraps_count_the_2pi_steps_left_in_the_mask():
    x = np.indices((20, 16, 12))[0].astype(np.float32)
    smooth = 0.3 * x  # 0.3 rad per voxel: no wrap
    mask = np.ones(smooth.shape, bool)
    assert residual_wraps(smooth, mask) == 0
    stepped = smooth + np.where(x >= 10, 2 * np.pi, 0.0)  # a plane of 16 x 12 pairs
    assert residual_wraps(stepped, mask) == 16 * 12
    mask[10:] = False  # pairs with a voxel outside the mask do not count
    assert residual_wraps(stepped, mask) == 0


def test_a_phase_singularity_leaves_a_wrap_the_unwrapping_cannot_remove():
    """A field that winds once around a line (as a failed coil combination leaves
    it) has no unwrapped form: ROMEO's region growing leaves a 2 pi step on a half plane
    from the line, which residual_wraps counts; a smooth field leaves none."""
    shape = (24, 24, 8)
    x, y = np.meshgrid(np.arange(24) - 11.5, np.arange(24) - 11.5, indexing="ij")
    winding = np.repeat(np.arctan2(y, x)[..., None], shape[2], axis=2)
    mask = np.ones(shape, bool)
    magnitude = np.ones((*shape, 1), np.float32)
    smooth = (0.2 * x[..., None] * np.ones(shape)).astype(np.float32)
    for phase, expected_min in ((smooth, None), (winding + smooth, 11 * shape[2])):
        wrapped = np.angle(np.exp(1j * phase))[..., None].astype(np.float32)
        unwrapped = unwrap_echoes(wrapped, magnitude, [0.005], mask, (1.0,) * 3,
                                  UnwrapSettings(method="region-growing"))
        wraps = residual_wraps(unwrapped[..., 0], mask)
        if expected_min is None:
            assert wraps == 0
        else:  # at least a half plane from the axis to the edge, every slice
            assert wraps >= expected_min
