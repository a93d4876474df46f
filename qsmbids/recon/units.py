"""Physical constants and unit conversions between phase, frequency and field."""

from __future__ import annotations

import numpy as np

#: names of the stored-phase conventions a user can force (``--phase-units``): ``rad``
#: trusted, ``siemens`` the 12-bit integer conventions, ``arbitrary`` the pooled
#: min..max rescaled to one period (see :mod:`qsmbids.recon.phase_scaling`)
PHASE_UNITS: tuple[str, ...] = ("rad", "siemens", "arbitrary")

#: proton gyromagnetic ratio over 2*pi, in MHz/T (CODATA 2018)
GAMMA_BAR_MHZ_PER_T = 42.577478518


def hz_per_ppm(field_strength_t: float) -> float:
    """Frequency shift in Hz caused by a 1 ppm field perturbation at ``field_strength_t`` tesla.

    127.7 Hz/ppm at 3 T.
    """
    if not field_strength_t > 0:
        raise ValueError(f"field strength must be positive (tesla), got {field_strength_t}")
    return GAMMA_BAR_MHZ_PER_T * field_strength_t  # MHz/T * T * 1e-6 * 1e6 Hz


def ppm_to_rad(field_ppm: np.ndarray, echo_time_s: float, field_strength_t: float) -> np.ndarray:
    """Phase in rad accrued at ``echo_time_s`` by a field in ppm (phase = 2*pi*f*TE)."""
    return field_ppm * (2 * np.pi * hz_per_ppm(field_strength_t) * echo_time_s)


def rad_to_ppm(phase_rad: np.ndarray, echo_time_s: float, field_strength_t: float) -> np.ndarray:
    """Field in ppm from an unwrapped phase in rad at ``echo_time_s`` (inverse of ppm_to_rad)."""
    return phase_rad / (2 * np.pi * hz_per_ppm(field_strength_t) * echo_time_s)
