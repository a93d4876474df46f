"""Conversion of stored phase images (any vendor convention) to radians in [-pi, pi).

The conversion is always an exact linear map followed by wrapping, so it never adds
noise; a wrong period (the usual cause of "dot" artefacts) is avoided by using the
number of quantisation levels for integer-valued data. The rule that was applied is
returned as a human-readable string for the output sidecar.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Siemens (dcm2niix) phase: 12-bit, 4096 levels spanning one period
SIEMENS_LEVELS = 4096
#: tolerance for recognising data that is already in radians
_RAD_TOLERANCE = 1e-3


@dataclass(frozen=True)
class ScaledPhase:
    """Phase in radians and the rule used to obtain it.

    Attributes
    ----------
    phase
        Wrapped phase in rad, float32, in [-pi, pi), same shape as the input.
    rule
        Description of the conversion, e.g. ``"siemens-signed: rad = value * pi / 4096"``.
    """

    phase: np.ndarray
    rule: str


@dataclass(frozen=True)
class MagnitudePhase:
    """Magnitude and phase converted from a real/imaginary pair.

    Attributes
    ----------
    magnitude
        ``sqrt(real^2 + imag^2)``, float32, input shape.
    phase
        ``atan2(imag, real)`` in rad, float32, in [-pi, pi).
    rule
        Description of the conversion.
    """

    magnitude: np.ndarray
    phase: np.ndarray
    rule: str


def wrap_to_pi(values: np.ndarray) -> np.ndarray:
    """Wrap angles (rad) into [-pi, pi) exactly: ``x - 2*pi*floor((x + pi) / (2*pi))``."""
    two_pi = 2 * np.pi
    return values - two_pi * np.floor((values + np.pi) / two_pi)


def _is_integer_valued(values: np.ndarray) -> bool:
    if np.issubdtype(values.dtype, np.integer):
        return True
    return bool(np.all(values == np.round(values)))


def scale_phase_to_radians(phase: np.ndarray, units: str | None = None) -> ScaledPhase:
    """Convert a stored phase image to radians in [-pi, pi).

    Rules, in order:

    1. ``units == "rad"`` (BIDS sidecar ``Units``): trusted, only wrapped.
    2. Integer-valued data within -4096..4095 and spanning more than half of it:
       Siemens 12-bit phase, ``value * pi / 4096``; integer data within 0..4095
       spanning more than half of it: Siemens raw, ``value * pi / 2048 - pi``.
    3. Data already within [-pi, pi] (to 1e-3): radians, only wrapped.
    4. Otherwise the range is rescaled: ``(value - min) * 2*pi / period - pi`` with
       ``period = max - min`` for float data and ``max - min + 1`` (the number of
       quantisation levels) for integer-valued data.

    Parameters
    ----------
    phase
        Stored phase, any real dtype, any shape (e.g. (x, y, z) or (x, y, z, echo));
        all echoes must share one convention, so pass them together. Non-finite
        values are set to 0 rad.
    units
        The sidecar ``Units`` value if any (``"rad"``, ``"arbitrary"`` or None).

    Returns
    -------
    ScaledPhase

    Raises
    ------
    ValueError
        If the phase is empty, complex, constant, or has no finite value.
    """
    values = np.asarray(phase)
    if values.size == 0:
        raise ValueError("phase image is empty")
    if np.iscomplexobj(values):
        raise ValueError("phase image is complex; use magnitude_phase_from_complex")
    values = values.astype(np.float64, copy=False)
    finite = np.isfinite(values)
    if not finite.any():
        raise ValueError("phase image has no finite value")
    if not finite.all():
        values = np.where(finite, values, 0.0)
    lo, hi = float(values.min()), float(values.max())
    if units is not None and units.strip().lower() in ("rad", "radian", "radians"):
        radians, rule = values, "sidecar Units=rad: values taken as radians, wrapped"
    elif _is_integer_valued(values) and lo >= -SIEMENS_LEVELS and hi <= SIEMENS_LEVELS - 1 \
            and lo < 0 and hi - lo > SIEMENS_LEVELS:
        radians = values * (np.pi / SIEMENS_LEVELS)
        rule = "siemens-signed integer -4096..4095: rad = value * pi / 4096"
    elif _is_integer_valued(values) and lo >= 0 and hi <= SIEMENS_LEVELS - 1 \
            and hi - lo > SIEMENS_LEVELS // 2:
        radians = values * (2 * np.pi / SIEMENS_LEVELS) - np.pi
        rule = "siemens-raw integer 0..4095: rad = value * pi / 2048 - pi"
    elif lo >= -np.pi - _RAD_TOLERANCE and hi <= np.pi + _RAD_TOLERANCE:
        radians, rule = values, "values within [-pi, pi]: taken as radians, wrapped"
    else:
        if hi <= lo:
            raise ValueError(f"phase image is constant ({lo}); cannot infer its scaling")
        integer = _is_integer_valued(values)
        period = hi - lo + (1.0 if integer else 0.0)
        radians = (values - lo) * (2 * np.pi / period) - np.pi
        rule = (f"rescaled range {lo:g}..{hi:g} "
                f"({'integer, period = max-min+1' if integer else 'float, period = max-min'})"
                " to [-pi, pi)")
    return ScaledPhase(wrap_to_pi(radians).astype(np.float32), rule)


def magnitude_phase_from_complex(real: np.ndarray, imaginary: np.ndarray) -> MagnitudePhase:
    """Magnitude and phase (rad) from real and imaginary images.

    Parameters
    ----------
    real, imaginary
        Same shape, any real dtype (scaling must be common to both, as exported).

    Returns
    -------
    MagnitudePhase
    """
    real = np.asarray(real, dtype=np.float32)
    imaginary = np.asarray(imaginary, dtype=np.float32)
    if real.shape != imaginary.shape:
        raise ValueError(f"real {real.shape} and imaginary {imaginary.shape} shapes differ")
    magnitude = np.hypot(real, imaginary)
    phase = wrap_to_pi(np.arctan2(imaginary, real)).astype(np.float32)
    return MagnitudePhase(magnitude, phase, "real/imaginary: phase = atan2(imag, real)")
