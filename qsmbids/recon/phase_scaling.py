"""Conversion of stored phase images (any vendor convention) to radians in [-pi, pi).

The conversion is always an exact linear map followed by wrapping, so it never adds
noise; a wrong period (the usual cause of "dot" artefacts) is avoided by using the
number of quantisation levels for integer-valued data. The rule that was applied is
returned as a human-readable string for the output sidecar.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

_TWO_PI = 2.0 * np.pi
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


@numba.vectorize(["float32(float32)", "float64(float64)"], cache=True)
def _wrap(x):  # pragma: no cover - compiled
    return x - _TWO_PI * np.floor((x + np.pi) / _TWO_PI)


def wrap_to_pi(values: np.ndarray) -> np.ndarray:
    """Wrap angles (rad) into [-pi, pi): ``x - 2*pi*floor((x + pi) / (2*pi))``.

    One compiled pass; float32 input stays float32, anything else becomes float64.
    """
    values = np.asarray(values)
    if values.dtype not in (np.float32, np.float64):
        values = values.astype(np.float64)
    return _wrap(values)


def _is_integer_valued(values: np.ndarray) -> bool:
    if np.issubdtype(values.dtype, np.integer):
        return True
    return bool(np.all(np.mod(values, 1) == 0))


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
    if not np.issubdtype(values.dtype, np.integer):
        values = values.astype(np.float64 if values.dtype == np.float64 else np.float32,
                               copy=False)
        finite = np.isfinite(values)
        if not finite.any():
            raise ValueError("phase image has no finite value")
        if not finite.all():
            values = np.where(finite, values, 0).astype(values.dtype)
    lo, hi = float(values.min()), float(values.max())
    siemens_range = lo >= -SIEMENS_LEVELS and hi <= SIEMENS_LEVELS - 1
    if units is not None and units.strip().lower() in ("rad", "radian", "radians"):
        radians, rule = values, "sidecar Units=rad: values taken as radians, wrapped"
    elif siemens_range and lo < 0 and hi - lo > SIEMENS_LEVELS and _is_integer_valued(values):
        radians = values.astype(np.float32) * np.float32(np.pi / SIEMENS_LEVELS)
        rule = "siemens-signed integer -4096..4095: rad = value * pi / 4096"
    elif siemens_range and lo >= 0 and hi - lo > SIEMENS_LEVELS // 2 \
            and _is_integer_valued(values):
        radians = (values.astype(np.float32) * np.float32(2 * np.pi / SIEMENS_LEVELS)
                   - np.float32(np.pi))
        rule = "siemens-raw integer 0..4095: rad = value * pi / 2048 - pi"
    elif lo >= -np.pi - _RAD_TOLERANCE and hi <= np.pi + _RAD_TOLERANCE:
        radians, rule = values, "values within [-pi, pi]: taken as radians, wrapped"
    else:
        if hi <= lo:
            raise ValueError(f"phase image is constant ({lo}); cannot infer its scaling")
        integer = _is_integer_valued(values)
        period = hi - lo + (1.0 if integer else 0.0)
        radians = (values - values.dtype.type(lo)).astype(np.float32) * np.float32(
            2 * np.pi / period) - np.float32(np.pi)
        rule = (f"rescaled range {lo:g}..{hi:g} "
                f"({'integer, period = max-min+1' if integer else 'float, period = max-min'})"
                " to [-pi, pi)")
    return ScaledPhase(wrap_to_pi(np.asarray(radians, dtype=np.float32)), rule)


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
    phase = wrap_to_pi(np.arctan2(imaginary, real))
    return MagnitudePhase(magnitude, phase, "real/imaginary: phase = atan2(imag, real)")
