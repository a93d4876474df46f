"""Phase written as scanners and converters write it, and read back.

The simulator stores phase in one of the units the pipeline's phase scaling
(:mod:`qsmbids.recon.phase_scaling`) must recognise: float radians, Siemens integers
as dcm2niix writes them, or an arbitrary linear range. The unit names are the
pipeline's own (:data:`qsmbids.recon.units.PHASE_UNITS`).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from qsmbids.recon.units import PHASE_UNITS

PhaseUnits = Literal["rad", "siemens", "arbitrary"]


def encode_phase(phase_rad: np.ndarray, units: PhaseUnits):
    """Phase in a vendor convention.

    Parameters
    ----------
    phase_rad
        Wrapped phase in rad, [-pi, pi).
    units
        ``rad`` (float32 radians), ``siemens`` (uint16 0..4095 to be stored with
        scl_slope 2, scl_inter -4096: -4096..4094 after scaling, rad = value * pi / 4096)
        or ``arbitrary`` (float32, [-pi, pi) mapped linearly to [0, 1000)).

    Returns
    -------
    tuple
        (array to store, (slope, inter) or None, sidecar ``Units``).
    """
    phase = np.asarray(phase_rad, np.float32)
    if units == "rad":
        return phase, None, "rad"
    if units == "siemens":
        raw = np.round(phase * (2048 / np.pi) + 2048).astype(np.int32) % 4096
        return raw.astype(np.uint16), (2.0, -4096.0), "arbitrary"
    if units == "arbitrary":
        return ((phase + np.float32(np.pi)) * np.float32(1000 / (2 * np.pi))), None, "arbitrary"
    raise ValueError(f"phase units must be one of {PHASE_UNITS}, got {units!r}")


def decode_phase(values: np.ndarray, units: PhaseUnits) -> np.ndarray:
    """Radians from the scaled values of :func:`encode_phase` (as nibabel returns them)."""
    values = np.asarray(values, np.float64)
    if units == "rad":
        return values
    if units == "siemens":
        return values * np.pi / 4096
    if units == "arbitrary":
        return values * (2 * np.pi / 1000) - np.pi
    raise ValueError(f"phase units must be one of {PHASE_UNITS}, got {units!r}")
