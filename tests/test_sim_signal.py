"""Multi-echo GRE forward simulation: phase = field * 2*pi*TE, decay, noise level."""

import numpy as np

from qsmbids.recon.dipole import forward_field
from qsmbids.recon.units import hz_per_ppm
from qsmbids.sim.signal import simulate_multi_echo_gre, smooth_phase_offset


def _ball(n=32):
    grid = np.indices((n, n, n)) - n / 2
    return np.sqrt((grid**2).sum(0)) < n / 3


def test_noise_free_phase_is_field_times_2pi_te():
    ball = _ball()
    chi = np.where(ball, 0.0, 0.0).astype(np.float32)
    chi[14:18, 14:18, 14:18] = 0.2
    tes = (0.004, 0.009, 0.016)
    offset = smooth_phase_offset(chi.shape, rng=1)
    sim = simulate_multi_echo_gre(chi, ball * 1.0, ball * 20.0, tes, 3.0,
                                  phase_offset_rad=offset)
    expected_field = forward_field(chi)
    np.testing.assert_allclose(sim.total_field_ppm, expected_field, atol=1e-6)
    for n, te in enumerate(tes):
        expected = offset + 2 * np.pi * hz_per_ppm(3.0) * expected_field * te
        diff = np.angle(np.exp(1j * (sim.phase[..., n] - expected)))
        assert np.abs(diff[ball]).max() < 1e-4
        np.testing.assert_allclose(sim.magnitude[..., n][ball], np.exp(-20.0 * te), rtol=1e-5)


def test_noise_level_matches_snr():
    ball = _ball()
    sim = simulate_multi_echo_gre(np.zeros(ball.shape), ball * 100.0, ball * 0.0, (0.005,), 3.0,
                                  snr=20, rng=0)
    outside = ~_ball(32) & (np.indices(ball.shape)[0] < 4)
    measured = sim.signal[..., 0][outside]
    assert abs(measured.real.std() - 100 / 20) / (100 / 20) < 0.05
    assert abs(sim.noise_sigma - 5.0) < 1e-6
