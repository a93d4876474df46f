"""Phase scaling: every stored convention gives the same radians, without dots."""

from pathlib import Path

import numpy as np
import pytest

from qsmbids.recon.phase_scaling import (
    magnitude_phase_from_complex,
    scale_phase_to_radians,
    wrap_to_pi,
)


@pytest.fixture(scope="module")
def truth():
    rng = np.random.default_rng(3)
    coords = np.meshgrid(*[np.linspace(-1, 1, n) for n in (24, 20, 12)], indexing="ij")
    smooth = 14 * coords[0] + 9 * coords[1] ** 2 - 6 * coords[2]
    phase = smooth[..., None] * np.array([1.0, 2.0]) + rng.normal(0, 0.3, (24, 20, 12, 2))
    return wrap_to_pi(phase)


def _max_angle_error(radians, truth):
    """Largest angular distance; a 'dot' (a wrong period) shows up as ~pi here."""
    return float(np.abs(wrap_to_pi(radians.astype(np.float64) - truth)).max())


def _check(result, truth, tolerance):
    assert result.phase.dtype == np.float32
    assert result.phase.shape == truth.shape
    assert result.phase.min() >= -np.pi - 1e-6 and result.phase.max() <= np.pi + 1e-6
    assert _max_angle_error(result.phase, truth) <= tolerance


def test_radians_from_sidecar_units_are_kept(truth):
    result = scale_phase_to_radians(truth, units="rad")
    _check(result, truth, 1e-6)
    assert "Units=rad" in result.rule
    # an offset of whole turns is wrapped away exactly
    _check(scale_phase_to_radians(truth + 4 * np.pi, units="rad"), truth, 1e-5)


def test_radians_recognised_without_units(truth):
    result = scale_phase_to_radians(truth)
    _check(result, truth, 1e-6)
    assert "fill [-pi, pi)" in result.rule
    assert not result.guessed and result.warning is None


def test_siemens_signed_integers(truth):
    stored = np.clip(np.round(truth * 4096 / np.pi), -4096, 4095).astype(np.int16)
    result = scale_phase_to_radians(stored, units="arbitrary")
    _check(result, truth, np.pi / 4096 + 1e-6)
    assert result.rule.startswith("siemens-signed")
    # dcm2niix: raw 0..4095 with slope 2, intercept -4096 -> even values -4096..4094
    raw = np.round((truth + np.pi) * 4096 / (2 * np.pi)).astype(np.int64) % 4096
    scaled = (2.0 * raw - 4096).astype(np.float32)
    result = scale_phase_to_radians(scaled)
    _check(result, truth, 2 * np.pi / 4096)
    assert result.rule.startswith("siemens-signed")


def test_siemens_raw_unsigned_integers(truth):
    raw = (np.round((truth + np.pi) * 4096 / (2 * np.pi)).astype(np.int64) % 4096).astype(
        np.uint16)
    result = scale_phase_to_radians(raw)
    _check(result, truth, np.pi / 4096 + 1e-6)
    assert result.rule.startswith("siemens-raw")


def test_arbitrary_float_range_is_rescaled(truth):
    stored = truth * (1000 / np.pi) + 3000.0  # a vendor's float scaling, range 2000..4000
    result = scale_phase_to_radians(stored)
    # min..max misses the empty margins at the ends of the range (about range / N for N
    # samples: 11520 here, millions in a real image), so the period is that much short
    observed = (stored.max() - stored.min()) / 2000
    _check(result, truth, 2 * np.pi * (1 - observed) + 1e-6)
    assert "rescaled" in result.rule and "float" in result.rule


def test_arbitrary_integer_range_uses_number_of_levels(truth):
    # 12-bit signed but not Siemens' range: period = max - min + 1 levels
    stored = (np.round((truth + np.pi) * 4096 / (2 * np.pi)).astype(np.int64) % 4096) - 2048
    result = scale_phase_to_radians(stored.astype(np.int32))
    _check(result, truth, np.pi / 4096 + 1e-6)
    assert "integer" in result.rule


def test_real_imaginary_gives_magnitude_and_phase(truth):
    magnitude = np.random.default_rng(1).uniform(10, 100, truth.shape)
    signal = magnitude * np.exp(1j * truth)
    result = magnitude_phase_from_complex(signal.real, signal.imag)
    _check(result, truth, 1e-5)
    np.testing.assert_allclose(result.magnitude, magnitude, rtol=1e-5)
    assert "real/imaginary" in result.rule


def test_all_conventions_agree(truth):
    stored = {
        "rad": scale_phase_to_radians(truth, "rad").phase,
        "siemens": scale_phase_to_radians(np.round(truth * 4096 / np.pi).clip(-4096, 4095)).phase,
        "float": scale_phase_to_radians(truth * 7.5 - 2.0).phase,
        "complex": magnitude_phase_from_complex(np.cos(truth), np.sin(truth)).phase,
    }
    for name, phase in stored.items():
        assert _max_angle_error(phase, stored["rad"]) < 2e-3, name


def test_non_finite_values_become_zero(truth):
    stored = truth.copy()
    stored[0, 0, 0, 0] = np.nan
    result = scale_phase_to_radians(stored)
    assert result.phase[0, 0, 0, 0] == 0 and np.isfinite(result.phase).all()


@pytest.mark.parametrize(
    ("values", "message"),
    [(np.full((3, 3, 3), 7.0), "constant"), (np.full((2, 2, 2), np.nan), "no finite"),
     (np.zeros((0,)), "empty"), (np.ones((2, 2, 2), complex), "complex")])
def test_bad_input_is_rejected_clearly(values, message):
    with pytest.raises(ValueError, match=message):
        scale_phase_to_radians(values)


# ------------------------------------------------------------------ units that were guessed

#: the 7 T crop's convention: float, about -0.0037..+0.0037 for one period
_ARBITRARY_HALF_RANGE = 0.0036743774


def test_small_arbitrary_float_range_is_rescaled_not_taken_as_radians(truth):
    # inside [-pi, pi] but filling a tiny part of it: before, this was "radians" and the
    # susceptibility map came out 0.000 ppm everywhere
    stored = truth * (_ARBITRARY_HALF_RANGE / np.pi)
    result = scale_phase_to_radians(stored)
    observed = (stored.max() - stored.min()) / (2 * _ARBITRARY_HALF_RANGE)
    _check(result, truth, 2 * np.pi * (1 - observed) + 1e-5)
    assert result.phase.std() > 1.0  # a full period, not ~0.002 rad
    assert result.guessed and "rescaled" in result.rule
    # continuous float values whose span is not 2*pi: a doubtful guess, said so
    assert result.warning is not None and "--phase-units" in result.warning


def test_levelled_float_phase_uses_the_number_of_levels(truth):
    # a converter that kept the 12-bit levels but wrote float arbitrary units
    levels = np.round((truth + np.pi) * 4096 / (2 * np.pi)).astype(np.int64) % 4096
    stored = (levels - 2048) * (2 * _ARBITRARY_HALF_RANGE / 4095)
    result = scale_phase_to_radians(stored)
    _check(result, truth, np.pi / 4096 + 1e-5)
    assert result.guessed and "4096 levels" in result.rule
    assert result.warning is None  # levelled: clearly one period of arbitrary units
    declared = scale_phase_to_radians(stored, units="arbitrary")
    assert not declared.guessed and declared.rule.startswith("sidecar Units=arbitrary")
    np.testing.assert_array_equal(declared.phase, result.phase)


def test_small_range_radians_with_sidecar_units_are_trusted(truth):
    small = truth * 0.01  # e.g. a phantom with little field variation
    result = scale_phase_to_radians(small, units="rad")
    _check(result, small, 1e-6)
    assert not result.guessed and result.warning is None


def test_partly_filled_pi_range_gets_a_warning(truth):
    half = truth * 0.5  # within [-pi, pi] but filling half of it
    result = scale_phase_to_radians(half)
    assert result.guessed and result.warning is not None
    assert "fill only" in result.warning and "--phase-units rad" in result.warning


def test_true_wrapped_radians_are_not_guessed(truth):
    # a noisy background (uniform phase) plus a head: fills [-pi, pi)
    noisy = np.concatenate([truth, np.random.default_rng(0).uniform(
        -np.pi, np.pi, truth.shape)], axis=0)
    result = scale_phase_to_radians(noisy)
    assert not result.guessed and result.warning is None
    _check(result, noisy, 1e-6)


def test_override_forces_the_convention(truth):
    small = truth * 0.01
    forced = scale_phase_to_radians(small, override="rad")
    _check(forced, small, 1e-6)
    assert "--phase-units rad" in forced.rule and not forced.guessed
    assert forced.warning is None
    # arbitrary: the range rescaling even when the sidecar claims radians
    stored = truth * (_ARBITRARY_HALF_RANGE / np.pi)
    arbitrary = scale_phase_to_radians(stored, units="rad", override="arbitrary")
    assert arbitrary.phase.std() > 1.0 and "--phase-units arbitrary" in arbitrary.rule
    assert not arbitrary.guessed and arbitrary.warning is None
    # siemens on integers that would otherwise fall to the generic integer rule
    stored = (np.round(truth * 1000 / np.pi)).astype(np.int16)  # -1000..1000, not Siemens
    siemens = scale_phase_to_radians(stored, override="siemens")
    assert siemens.rule.startswith("--phase-units siemens: siemens-signed")
    np.testing.assert_allclose(siemens.phase, wrap_to_pi(stored * np.pi / 4096), atol=1e-6)
    with pytest.raises(ValueError, match="12-bit"):
        scale_phase_to_radians(stored.astype(np.float32) * 10, override="siemens")
    with pytest.raises(ValueError, match="one of rad, siemens, arbitrary"):
        scale_phase_to_radians(stored, override="degrees")


# ------------------------------------------------------------------ real 7 T data

_REALDATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "realdata"
_CROP = _REALDATA / "mriresearchtools-7t-crop"


@pytest.mark.skipif(not (_CROP / "Phase.nii.gz").is_file(),
                    reason=f"real 7 T crop not found at {_CROP} (the shared realdata folder "
                           "is not part of the repository)")
def test_real_7t_arbitrary_phase_spans_one_period_and_echo_difference_is_smooth():
    import nibabel as nib

    stored = np.asarray(nib.load(_CROP / "Phase.nii.gz").dataobj, dtype=np.float32)
    magnitude = np.asarray(nib.load(_CROP / "Mag.nii.gz").dataobj, dtype=np.float32)
    result = scale_phase_to_radians(stored)
    assert result.guessed and "4096 levels" in result.rule
    span = float(result.phase.max() - result.phase.min())
    assert span == pytest.approx(2 * np.pi, rel=0.01)
    # echo 2 - echo 1 is the field over 4 ms: varies (not ~0 as when read as radians) ...
    signal = magnitude[..., 0] > np.percentile(magnitude[..., 0], 30)
    difference = np.exp(1j * (result.phase[..., 1] - result.phase[..., 0]))
    assert np.angle(difference[signal]).std() > 0.3
    # ... and smoothly: neighbours differ by ~0.05 rad, random phase by ~pi/2
    step = np.abs(np.angle(difference[1:] * np.conj(difference[:-1])))
    assert np.median(step[signal[1:]]) < 0.2
