"""Phase scaling: every stored convention gives the same radians, without dots."""

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
    assert "within [-pi, pi]" in result.rule


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
