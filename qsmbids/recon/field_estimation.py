"""Field estimation from multi-echo GRE: offset removal, unwrapping and echo fit in one call.

Order: MCPC-3D-S phase offset (>= 2 echoes) -> offset-free wrapped phase ->
unwrapping (spatial template + temporal, or all spatial) -> magnitude-weighted fit of
phase vs TE. Phase scaling and masking come before (see
:mod:`qsmbids.recon.phase_scaling`, :mod:`qsmbids.recon.masking`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from qsmbids.recon.echo_fit import (
    OFFSET_SMOOTHING,
    FieldMap,
    estimate_phase_offset,
    fit_field,
    remove_phase_offset,
)
from qsmbids.recon.unwrap import UnwrapSettings, residual_wraps, unwrap_echoes


@dataclass(frozen=True)
class FieldEstimationSettings:
    """Parameters of :func:`estimate_field`.

    Attributes
    ----------
    unwrap
        Unwrapping method and echo strategy.
    offset_correction
        Remove the echo-independent phase offset by MCPC-3D-S (needs >= 2 echoes;
        temporal unwrapping relies on it). Its difference phase is always unwrapped
        by region growing (exact), whatever ``unwrap.method`` is.
    offset_sigma_mm
        Smoothing of the phase offset (mm).
    offset_echoes
        0-based echo pair used for MCPC-3D-S.
    offset_smoothing
        How the offset is smoothed, one of
        :data:`qsmbids.recon.echo_fit.OFFSET_SMOOTHING` (default: a local linear fit,
        unbiased up to the mask edge).
    """

    unwrap: UnwrapSettings = field(default_factory=UnwrapSettings)
    offset_correction: bool = True
    offset_sigma_mm: float = 4.0
    offset_echoes: tuple[int, int] = (0, 1)
    offset_smoothing: str = OFFSET_SMOOTHING[0]

    def describe(self) -> str:
        """One-line description for the sidecar."""
        offset = (f"MCPC-3D-S phase offset (echoes {self.offset_echoes[0] + 1},"
                  f"{self.offset_echoes[1] + 1}; {self.offset_sigma_mm:g} mm "
                  f"{self.offset_smoothing} smoothing)"
                  if self.offset_correction else "no phase offset correction")
        weights = ("magnitude^2" if self.unwrap.method == "region-growing"
                   else "spatially uniform per-echo mean magnitude^2")
        return (f"{offset}; {self.unwrap.describe()}; {weights}-weighted least-squares "
                "fit of phase vs TE through the origin")


@dataclass(frozen=True)
class FieldEstimate:
    """Result of :func:`estimate_field`.

    Attributes
    ----------
    field
        The fitted field map (Hz, ppm, standard error, residual).
    phase_offset_rad
        Echo-independent phase offset removed (rad), (x, y, z); zeros if none.
    description
        What was done, for the sidecar.
    residual_wraps
        Wraps the spatial unwrapping left in the mask, in the template echo
        (:func:`qsmbids.recon.unwrap.residual_wraps`).
    """

    field: FieldMap
    phase_offset_rad: np.ndarray
    description: str
    residual_wraps: int = 0


def estimate_field(
    magnitude: np.ndarray,
    phase: np.ndarray,
    echo_times_s: Sequence[float],
    field_strength_t: float,
    mask: np.ndarray,
    voxel_size: Sequence[float],
    settings: FieldEstimationSettings = FieldEstimationSettings(),
) -> FieldEstimate:
    """Total field map (Hz and ppm) from wrapped multi-echo phase.

    Parameters
    ----------
    magnitude
        Magnitude, (x, y, z, echo) (or (x, y, z) for one echo).
    phase
        Wrapped phase in rad, same shape.
    echo_times_s
        Echo times in s.
    field_strength_t
        B0 in tesla.
    mask
        bool (x, y, z).
    voxel_size
        mm along (x, y, z).
    settings
        See :class:`FieldEstimationSettings`.

    Returns
    -------
    FieldEstimate
    """
    phase = np.asarray(phase, dtype=np.float32)
    magnitude = np.asarray(magnitude, dtype=np.float32)
    if phase.ndim == 3:
        phase, magnitude = phase[..., None], magnitude[..., None]
    if magnitude.shape != phase.shape:
        raise ValueError(f"magnitude {magnitude.shape} and phase {phase.shape} shapes differ")
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != phase.shape[:3]:
        raise ValueError(f"mask shape {mask.shape} != image shape {phase.shape[:3]}")
    n_echoes = phase.shape[3]
    correct = settings.offset_correction and n_echoes >= 2
    if correct:
        offset = estimate_phase_offset(phase, magnitude, echo_times_s, mask, voxel_size,
                                       echoes=settings.offset_echoes,
                                       sigma_mm=settings.offset_sigma_mm,
                                       smoothing=settings.offset_smoothing)
        phase = remove_phase_offset(phase, offset)
    else:
        offset = np.zeros(phase.shape[:3], np.float32)
    unwrapped = unwrap_echoes(phase, magnitude, echo_times_s, mask, voxel_size, settings.unwrap)
    del phase
    wraps = residual_wraps(unwrapped[..., settings.unwrap.template_echo], mask)
    fitted = fit_field(unwrapped, magnitude, echo_times_s, field_strength_t, mask,
                       uniform_weights=settings.unwrap.method != "region-growing")
    description = settings.describe()
    if settings.offset_correction and not correct:
        description = description.replace("MCPC-3D-S", "single echo: no MCPC-3D-S")
    return FieldEstimate(fitted, offset, description, wraps)
