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

from qsmbids.recon.units import PHASE_UNITS

_TWO_PI = 2.0 * np.pi
#: Siemens (dcm2niix) phase: 12-bit, 4096 levels spanning one period
SIEMENS_LEVELS = 4096
#: tolerance for recognising data that is already in radians
_RAD_TOLERANCE = 1e-3
#: fraction of 64 bins of [-pi, pi) that phase without sidecar Units must fill to be
#: taken as radians (see :func:`scale_phase_to_radians`, rule 3)
RAD_MIN_COVERAGE = 0.9
_COVERAGE_BINS = 64
#: values inspected for coverage and quantisation levels
_SAMPLE_SIZE = 1 << 20
#: most distinct values float phase may take to count as levelled (16 bit)
_MAX_LEVELS = 1 << 16


@dataclass(frozen=True)
class ScaledPhase:
    """Phase in radians and the rule used to obtain it.

    Attributes
    ----------
    phase
        Wrapped phase in rad, float32, in [-pi, pi), same shape as the input.
    rule
        Description of the conversion, e.g. ``"siemens-signed: rad = value * pi / 4096"``.
    guessed
        True when the units were inferred from the range alone (no sidecar ``Units``,
        no Siemens integers, no full-span radians, no override): a QC flag.
    warning
        Why the guess is doubtful and what to try, or None.
    """

    phase: np.ndarray
    rule: str
    guessed: bool = False
    warning: str | None = None


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


def _sample(values: np.ndarray, size: int = _SAMPLE_SIZE) -> np.ndarray:
    """A fixed, evenly strided subsample of the flattened values (cheap on large images)."""
    flat = values.reshape(-1)
    return flat if flat.size <= size else flat[:: flat.size // size][:size]


def _coverage(values: np.ndarray, lo: float, hi: float) -> float:
    """Fraction of :data:`_COVERAGE_BINS` equal bins of ``lo..hi`` holding a value."""
    if hi <= lo:
        return 0.0
    counts, _ = np.histogram(_sample(values), bins=_COVERAGE_BINS, range=(lo, hi))
    return float((counts > 0).mean())


def _quantisation_levels(values: np.ndarray) -> int | None:
    """Number of levels of one period when the float values sit on a regular grid.

    Research converters that write float phase often keep the scanner's 12-bit
    levels (the 7 T crop in ``shared/realdata``: 4096 distinct values, steps equal to
    3e-4). The data count as levelled when a subsample of up to
    :data:`_SAMPLE_SIZE` values holds at most :data:`_MAX_LEVELS` distinct values and
    at most half as many as values (continuous float data are nearly all distinct).

    Returns
    -------
    int or None
        ``round(span / median step) + 1``, or None when the values are not levelled.
    """
    sample = _sample(values)
    levels = np.unique(sample)
    if levels.size < 3 or levels.size > _MAX_LEVELS or levels.size > sample.size // 2:
        return None
    step = float(np.median(np.diff(levels)))
    return round((float(levels[-1]) - float(levels[0])) / step) + 1


def _rescale(values: np.ndarray, lo: float, hi: float) -> tuple[np.ndarray, str, bool]:
    """Map the pooled range to one period; return (radians, rule, levelled)."""
    if hi <= lo:
        raise ValueError(f"phase image is constant ({lo}); cannot infer its scaling")
    if _is_integer_valued(values):
        period, how, levelled = hi - lo + 1.0, "integer, period = max-min+1", True
    else:
        levels = _quantisation_levels(values)
        levelled = levels is not None
        if levelled:
            period = (hi - lo) * levels / (levels - 1)
            how = f"float on {levels} levels, period = (max-min) * {levels}/{levels - 1}"
        else:
            period, how = hi - lo, "float, period = max-min"
    radians = (values - values.dtype.type(lo)).astype(np.float32) * np.float32(
        _TWO_PI / period) - np.float32(np.pi)
    return radians, f"rescaled range {lo:g}..{hi:g} pooled over echoes ({how}) to [-pi, pi)", \
        levelled


def _siemens(values: np.ndarray, lo: float, hi: float) -> tuple[np.ndarray, str]:
    if lo < 0:
        return (values.astype(np.float32) * np.float32(np.pi / SIEMENS_LEVELS),
                "siemens-signed integer -4096..4095: rad = value * pi / 4096")
    return (values.astype(np.float32) * np.float32(2 * np.pi / SIEMENS_LEVELS)
            - np.float32(np.pi), "siemens-raw integer 0..4095: rad = value * pi / 2048 - pi")


def scale_phase_to_radians(phase: np.ndarray, units: str | None = None,
                           override: str | None = None) -> ScaledPhase:
    """Convert a stored phase image to radians in [-pi, pi).

    Rules, in order (min and max are pooled over all echoes):

    0. ``override`` (``--phase-units``): ``rad`` trusted and wrapped; ``siemens`` the
       12-bit convention of rule 2 (signed when min < 0, else raw); ``arbitrary`` the
       range rescaling of rule 4. Never a guess, never a warning.
    1. ``units == "rad"`` (BIDS sidecar ``Units``): trusted, only wrapped, even when
       the values span little (an unwrapped-free phantom, a small field of view).
    2. Integer-valued data within -4096..4095 and spanning more than half of it:
       Siemens 12-bit phase, ``value * pi / 4096``; integer data within 0..4095
       spanning more than half of it: Siemens raw, ``value * pi / 2048 - pi``.
    3. Data within [-pi, pi] (to 1e-3) that fill it: radians, only wrapped. "Fill"
       means at least :data:`RAD_MIN_COVERAGE` (90 %) of 64 equal bins of
       [-pi, pi) hold a value. Wrapped phase of a head fills [-pi, pi) almost
       completely: every wrap crosses all of it, and the noise-only background has
       uniform phase, so with more than a few thousand voxels every bin (0.1 rad
       wide) is hit. Measured on the real heads in ``shared/realdata``: the Philips 3 T
       phase (dcm2niix, rad) fills 64/64 bins per echo, the 7 T crop once scaled 62/64
       at its first echo (4 ms) and 64/64 pooled. Data with a small range inside
       [-pi, pi] (e.g. +-0.0037 arbitrary units) fill 1 bin.
    4. Otherwise the pooled range is rescaled:
       ``(value - min) * 2*pi / period - pi`` with ``period = max - min + 1`` for
       integer data, ``(max - min) * n / (n - 1)`` for float data on ``n`` regular
       levels, and ``max - min`` for continuous float data.

    The units count as *guessed* under rule 4 unless the sidecar says
    ``Units: arbitrary`` (then the rescaling is what the data declare): no sidecar
    ``Units``, no Siemens integers, no full-span radians. The QC reports flag such
    runs. A *warning* is
    set when the guess is doubtful: continuous float data whose span is not within
    10 % of 2*pi (nothing says that span is one period), data inside [-pi, pi] that
    do not fill it (radians with little variation, or arbitrary units?), or a
    rescaled range that the values fill for less than 90 % (outliers stretch it).

    Parameters
    ----------
    phase
        Stored phase, any real dtype, any shape (e.g. (x, y, z) or (x, y, z, echo));
        all echoes must share one convention, so pass them together. Non-finite
        values are set to 0 rad.
    units
        The sidecar ``Units`` value if any (``"rad"``, ``"arbitrary"`` or None).
    override
        One of :data:`PHASE_UNITS` chosen by the user, or None (rules 1-4).

    Returns
    -------
    ScaledPhase

    Raises
    ------
    ValueError
        If the phase is empty, complex, constant, or has no finite value; an unknown
        ``override``; ``override="siemens"`` on values outside -4096..4095.
    """
    if override is not None and override not in PHASE_UNITS:
        raise ValueError(f"phase units override must be one of {', '.join(PHASE_UNITS)}; "
                         f"got {override!r}")
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
    in_pi = lo >= -np.pi - _RAD_TOLERANCE and hi <= np.pi + _RAD_TOLERANCE
    guessed, warning = False, None
    if override == "rad":
        radians, rule = values, "--phase-units rad: values taken as radians, wrapped"
    elif override == "siemens":
        if not siemens_range:
            raise ValueError(f"--phase-units siemens: values {lo:g}..{hi:g} lie outside the "
                             "12-bit range -4096..4095")
        radians, rule = _siemens(values, lo, hi)
        rule = "--phase-units siemens: " + rule
    elif override == "arbitrary":
        radians, rule, _ = _rescale(values, lo, hi)
        rule = "--phase-units arbitrary: " + rule
    elif units is not None and units.strip().lower() in ("rad", "radian", "radians"):
        radians, rule = values, "sidecar Units=rad: values taken as radians, wrapped"
    elif siemens_range and lo < 0 and hi - lo > SIEMENS_LEVELS and _is_integer_valued(values):
        radians, rule = _siemens(values, lo, hi)
    elif siemens_range and lo >= 0 and hi - lo > SIEMENS_LEVELS // 2 \
            and _is_integer_valued(values):
        radians, rule = _siemens(values, lo, hi)
    elif in_pi and _coverage(values, -np.pi, np.pi) >= RAD_MIN_COVERAGE:
        radians = values
        rule = ("values fill [-pi, pi) (no sidecar Units): taken as radians, wrapped")
    else:
        radians, rule, levelled = _rescale(values, lo, hi)
        declared = units is not None and units.strip().lower() == "arbitrary"
        guessed = not declared
        rule = (f"sidecar Units=arbitrary: {rule}" if declared
                else f"units guessed (no sidecar Units): {rule}")
        span = hi - lo
        hint = ("; if this is wrong pass --phase-units rad|siemens|arbitrary "
                "(or set Units in the phase sidecar)")
        if in_pi and span > 0.1 * _TWO_PI:
            warning = (f"phase values {lo:.3g}..{hi:.3g} lie within [-pi, pi] but fill only "
                       f"{100 * _coverage(values, -np.pi, np.pi):.0f}% of it: radians with "
                       "little phase variation, or arbitrary units? Rescaled the range to "
                       "one period" + hint)
        elif not levelled and abs(span / _TWO_PI - 1) > 0.1:
            warning = (f"float phase {lo:.3g}..{hi:.3g} (span {span:.3g}, not 2*pi, not on "
                       "regular levels): assumed the range is one period and rescaled it"
                       + hint)
        elif _coverage(values, lo, hi) < RAD_MIN_COVERAGE:
            warning = (f"phase values fill only {100 * _coverage(values, lo, hi):.0f}% of "
                       f"their range {lo:.3g}..{hi:.3g}: outliers may stretch the assumed "
                       "period" + hint)
    return ScaledPhase(wrap_to_pi(np.asarray(radians, dtype=np.float32)), rule, guessed,
                       warning)


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
