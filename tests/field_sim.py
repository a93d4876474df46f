"""Cached simulations of the small ellipsoid head for the field-estimation tests."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from qsmbids.recon.units import hz_per_ppm
from qsmbids.sim.ellipsoid_head import EllipsoidHead, ellipsoid_head
from qsmbids.sim.signal import GreSignal, simulate_multi_echo_gre, smooth_phase_offset

FIELD_STRENGTH_T = 3.0
EQUAL_TES = (0.004, 0.008, 0.012, 0.016, 0.020)
UNEQUAL_TES = (0.005, 0.009, 0.016, 0.024)  # TE1 != dTE, unequal spacing


@lru_cache(maxsize=1)
def head() -> EllipsoidHead:
    return ellipsoid_head()


@lru_cache(maxsize=16)
def simulate(echo_times: tuple[float, ...], snr: float | None, offset: bool,
             seed: int = 0) -> GreSignal:
    phantom = head()
    return simulate_multi_echo_gre(
        phantom.chi, phantom.m0, phantom.r2star, echo_times, FIELD_STRENGTH_T,
        phantom.voxel_size, snr=snr, rng=seed,
        extra_field_ppm=phantom.background_field_ppm,
        phase_offset_rad=smooth_phase_offset(phantom.chi.shape, rng=seed + 1) if offset
        else None)


def field_hz(sim: GreSignal) -> np.ndarray:
    """True field in Hz, (x, y, z)."""
    return sim.total_field_ppm * np.float32(hz_per_ppm(FIELD_STRENGTH_T))


def true_phase(sim: GreSignal, echo: int) -> np.ndarray:
    """Noise-free unwrapped phase (offset included) of one echo, rad."""
    return sim.phase_offset_rad + 2 * np.pi * field_hz(sim) * sim.echo_times_s[echo]


def exact_fraction(unwrapped: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> float:
    """Fraction of mask voxels whose 2*pi*k offset to the truth equals the most common one."""
    turns = np.round((unwrapped - truth)[mask] / (2 * np.pi)).astype(np.int64)
    return float(np.bincount(turns - turns.min()).max() / turns.size)


def wraps_across(sim: GreSignal, mask: np.ndarray, echo: int) -> float:
    """Number of 2*pi cycles spanned by the true phase over the mask at one echo."""
    phase = true_phase(sim, echo)[mask]
    return float((phase.max() - phase.min()) / (2 * np.pi))
