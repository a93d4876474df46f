"""Combination of uncombined receive-coil channels of multi-echo GRE (MCPC-3D-S).

Each channel ``c`` sees the tissue signal times its own complex sensitivity, whose phase
``theta_c(x)`` does not depend on the echo time. Summing channels without removing
``theta_c`` lets them cancel (open-ended fringes, "phase singularities"). MCPC-3D-S
(Eckstein et al., MRM 2018, doi:10.1002/mrm.26963) estimates ``theta_c`` from two echoes:

1. ``H = sum_c m_c1 m_c2 exp(i (phi_c2 - phi_c1))``: the channel-independent phase
   accrued between the two echoes, unwrapped in space;
2. ``theta_c = phi_c1 - unwrapped(angle H) * TE1 / (TE2 - TE1)`` per channel, smoothed
   as a magnitude-weighted complex Gaussian (the sensitivities are smooth);
3. each echo's combined signal ``sum_c m_c exp(i (phi_c - theta_c))`` (magnitude-weighted
   phase), with the root-sum-of-squares magnitude.

The channels are read one at a time through a callback (channel, echo) -> (magnitude,
phase), so memory holds the accumulators (one complex volume per echo, the Hermitian
product and the magnitudes) and one channel's volumes, whatever the channel count.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from qsmbids.recon.echo_fit import smooth_phase_gaussian, unwrap_echo_difference
from qsmbids.recon.masking import tissue_level
from qsmbids.recon.phase_scaling import wrap_to_pi

#: reads channel ``c`` (0-based) at echo ``e`` (0-based): magnitude, phase in rad, (x, y, z)
ChannelReader = Callable[[int, int], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class CombinedChannels:
    """Result of :func:`combine_channels`.

    Attributes
    ----------
    magnitude
        Root sum of squares over channels, float32, (x, y, z, echo).
    phase
        Combined phase in rad, float32, (x, y, z, echo), wrapped; the channels' offsets
        removed, so it keeps only the field's phase (and what the offsets' smoothing
        misses).
    description
        What was done, for the sidecar.
    """

    magnitude: np.ndarray
    phase: np.ndarray
    description: str


def combine_channels(
    read: ChannelReader,
    n_channels: int,
    echo_times_s: Sequence[float],
    voxel_size: Sequence[float],
    *,
    mask: np.ndarray | None = None,
    echoes: tuple[int, int] = (0, 1),
    sigma_mm: float = 4.0,
) -> CombinedChannels:
    """Combine ``n_channels`` coil channels of a multi-echo GRE by MCPC-3D-S.

    Parameters
    ----------
    read
        ``read(channel, echo) -> (magnitude, phase)``, each (x, y, z), phase in rad.
    n_channels
        Number of channels.
    echo_times_s
        Echo times in s (at least two).
    voxel_size
        mm along (x, y, z).
    mask
        Where the echo-difference phase is unwrapped (bool, (x, y, z)); default: the
        root-sum-of-squares magnitude of the first echo above 0.3 of its tissue level.
    echoes
        0-based pair of echoes for the offsets.
    sigma_mm
        Gaussian smoothing of each channel's offset, mm.

    Returns
    -------
    CombinedChannels
    """
    tes = [float(t) for t in echo_times_s]
    i, j = echoes
    if len(tes) < 2 or i == j or not (0 <= i < len(tes) and 0 <= j < len(tes)):
        raise ValueError(f"MCPC-3D-S coil combination needs two distinct echoes; got "
                         f"{echoes} of {len(tes)} echo(es)")
    if n_channels < 1:
        raise ValueError(f"need at least one channel, got {n_channels}")
    hermitian = None
    rss_first = None
    for channel in range(n_channels):
        m1, p1 = (np.asarray(a, np.float32) for a in read(channel, i))
        m2, p2 = (np.asarray(a, np.float32) for a in read(channel, j))
        term = (m1 * m2) * np.exp(1j * (p2 - p1)).astype(np.complex64)
        hermitian = term if hermitian is None else hermitian + term
        rss_first = m1 * m1 if rss_first is None else rss_first + m1 * m1
    assert hermitian is not None and rss_first is not None
    rss_first = np.sqrt(rss_first)
    if mask is None:
        mask = rss_first > 0.3 * tissue_level(rss_first)
    mask = np.asarray(mask, bool)
    unwrapped = unwrap_echo_difference(np.angle(hermitian).astype(np.float32),
                                       np.sqrt(np.abs(hermitian)), mask, voxel_size)
    del hermitian
    to_first = np.float32(tes[i] / (tes[j] - tes[i]))
    combined = [None] * len(tes)
    squares = [None] * len(tes)
    for channel in range(n_channels):
        m1, p1 = (np.asarray(a, np.float32) for a in read(channel, i))
        raw = p1 - unwrapped * to_first
        offset = smooth_phase_gaussian(raw, m1, sigma_mm, voxel_size) if sigma_mm > 0 else raw
        for echo in range(len(tes)):
            m, p = (m1, p1) if echo == i else (np.asarray(a, np.float32)
                                                for a in read(channel, echo))
            term = m * np.exp(1j * (p - offset)).astype(np.complex64)
            combined[echo] = term if combined[echo] is None else combined[echo] + term
            squares[echo] = m * m if squares[echo] is None else squares[echo] + m * m
    magnitude = np.stack([np.sqrt(s) for s in squares], axis=-1).astype(np.float32)
    phase = np.stack([wrap_to_pi(np.angle(c).astype(np.float32)) for c in combined], axis=-1)
    description = (f"{n_channels} coil channels combined by MCPC-3D-S (Eckstein et al., MRM "
                   f"2018): offsets from echoes {i + 1},{j + 1}, {sigma_mm:g} mm Gaussian "
                   "smoothing, magnitude-weighted sum; root-sum-of-squares magnitude")
    return CombinedChannels(magnitude, phase.astype(np.float32), description)
