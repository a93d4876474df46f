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


#: ``Units`` of a field-map input (BIDS ``fieldmap``) and what each needs
FIELD_MAP_UNITS: tuple[str, ...] = ("Hz", "rad/s", "ppm", "rad")


def field_map_to_ppm(values: np.ndarray, units: str, field_strength_t: float,
                     echo_time_s: float | None = None) -> np.ndarray:
    """A field map in ``units`` (one of :data:`FIELD_MAP_UNITS`) as ppm of B0.

    ``Hz`` and ``rad/s`` are frequency offsets (a B0 map); ``rad`` is an unwrapped phase
    accrued at ``echo_time_s`` (required then); ``ppm`` passes through. float32.
    """
    values = np.asarray(values, np.float32)
    if units == "Hz":
        return values / np.float32(hz_per_ppm(field_strength_t))
    if units == "rad/s":
        return values / np.float32(2 * np.pi * hz_per_ppm(field_strength_t))
    if units == "ppm":
        return values.copy()
    if units == "rad":
        if not echo_time_s or echo_time_s <= 0:
            raise ValueError("an unwrapped phase (Units rad) needs its EchoTime (s)")
        return rad_to_ppm(values, echo_time_s, field_strength_t).astype(np.float32)
    raise ValueError(f"field-map Units {units!r} not understood; use one of "
                     f"{', '.join(FIELD_MAP_UNITS)}")
