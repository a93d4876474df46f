"""Forward simulation of complex multi-echo GRE signals from tissue property maps.

Signal model per voxel and echo n (TE_n in seconds)::

    S_n = M0 * exp(-R2* TE_n) * exp(i * (phi0 + 2*pi * f * TE_n)) + noise

with the frequency ``f`` (Hz) = field (ppm) x gamma_bar x B0, where the field is the
dipole convolution of the susceptibility map (sources outside the brain included,
so air/bone-like regions make a background field) plus an optional extra field
(e.g. imperfect shimming), and ``phi0`` an echo-independent phase offset (coil/
receiver phase). Noise is complex Gaussian.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from qsmbids.recon.dipole import AXIAL, forward_field
from qsmbids.recon.units import hz_per_ppm


@dataclass(frozen=True)
class GreSignal:
    """A simulated multi-echo GRE acquisition.

    Attributes
    ----------
    signal
        Complex signal, complex64, shape (x, y, z, echo).
    total_field_ppm
        Field the phase encodes (dipole field of ``chi`` + extra field), ppm, (x, y, z).
    phase_offset_rad
        Echo-independent phase offset, rad, (x, y, z).
    noise_sigma
        Standard deviation of the noise in each of the real and imaginary channels.
    echo_times_s
        Echo times in seconds.
    """

    signal: np.ndarray
    total_field_ppm: np.ndarray
    phase_offset_rad: np.ndarray
    noise_sigma: float
    echo_times_s: tuple[float, ...]

    @property
    def magnitude(self) -> np.ndarray:
        """Magnitude, float32, (x, y, z, echo)."""
        return np.abs(self.signal)

    @property
    def phase(self) -> np.ndarray:
        """Wrapped phase in rad, in [-pi, pi), float32, (x, y, z, echo)."""
        return np.angle(self.signal).astype(np.float32)


def smooth_phase_offset(
    shape: Sequence[int], amplitude_rad: float = 1.5, rng: np.random.Generator | None = None
) -> np.ndarray:
    """A smooth echo-independent phase offset (low-order polynomial), rad, (x, y, z)."""
    rng = np.random.default_rng(rng)
    coords = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    offset = np.full(tuple(shape), rng.uniform(-np.pi, np.pi))
    for c in coords:
        offset += amplitude_rad * (rng.uniform(-0.5, 0.5) * c + rng.uniform(-0.3, 0.3) * c**2)
    return offset.astype(np.float32)


def simulate_multi_echo_gre(
    chi_ppm: np.ndarray,
    m0: np.ndarray,
    r2star_hz: np.ndarray,
    echo_times_s: Sequence[float],
    field_strength_t: float,
    voxel_size: Sequence[float] = (1.0, 1.0, 1.0),
    b0_direction: Sequence[float] = AXIAL,
    *,
    snr: float | None = None,
    phase_offset_rad: np.ndarray | None = None,
    extra_field_ppm: np.ndarray | None = None,
    rng: np.random.Generator | int | None = None,
    pad_fraction: float = 0.5,
) -> GreSignal:
    """Simulate complex multi-echo GRE data.

    Parameters
    ----------
    chi_ppm
        Susceptibility (ppm) of everything in the field of view, (x, y, z); air and
        bone outside the brain make the background field.
    m0
        Proton density / signal at TE = 0 (arbitrary units), (x, y, z); 0 where no signal.
    r2star_hz
        R2* in 1/s, (x, y, z).
    echo_times_s
        Echo times in seconds (any spacing).
    field_strength_t
        B0 in tesla.
    voxel_size
        mm along (x, y, z).
    b0_direction
        B0 in the voxel frame (see :func:`qsmbids.recon.dipole.b0_direction_from_affine`).
    snr
        Mean first-echo magnitude over voxels with ``m0 > 0`` divided by the noise
        standard deviation per channel; None for noise-free data.
    phase_offset_rad
        Echo-independent phase (x, y, z); None for zero.
    extra_field_ppm
        Field added to the dipole field (e.g. residual shim), ppm, (x, y, z).
    rng
        Random generator or seed for the noise.
    pad_fraction
        Zero padding for the dipole convolution.

    Returns
    -------
    GreSignal
    """
    echo_times = tuple(float(t) for t in echo_times_s)
    if not echo_times or min(echo_times) <= 0:
        raise ValueError(f"echo times must be positive seconds, got {echo_times_s}")
    rng = np.random.default_rng(rng)
    field = forward_field(np.asarray(chi_ppm, np.float32), voxel_size, b0_direction,
                          pad_fraction=pad_fraction)
    if extra_field_ppm is not None:
        field = field + extra_field_ppm.astype(np.float32)
    offset = (np.zeros(field.shape, np.float32) if phase_offset_rad is None
              else phase_offset_rad.astype(np.float32))
    freq_hz = field * np.float32(hz_per_ppm(field_strength_t))
    signal = np.empty((*field.shape, len(echo_times)), dtype=np.complex64)
    for n, te in enumerate(echo_times):
        amplitude = m0 * np.exp(-r2star_hz * te)
        signal[..., n] = amplitude * np.exp(1j * (offset + 2 * np.pi * freq_hz * te))
    sigma = 0.0
    if snr is not None:
        tissue = m0 > 0
        sigma = float(np.abs(signal[..., 0][tissue]).mean() / snr)
        noise = rng.standard_normal((*signal.shape, 2), dtype=np.float32) * sigma
        signal += noise[..., 0] + 1j * noise[..., 1]
    return GreSignal(signal, field, offset, sigma, echo_times)
