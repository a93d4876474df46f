"""Multi-echo phase unwrapping driver.

Two strategies (``echo_mode``):

* ``"temporal"``: one template echo is unwrapped spatially and every other echo
  temporally, ``phi_n = wrapped_n + 2*pi*round((phi_t * TE_n / TE_t - wrapped_n) / 2*pi)``.
  This needs the echo-independent phase offset removed first (see
  :func:`qsmbids.recon.echo_fit.estimate_phase_offset`), since the offset does not
  scale with TE.
* ``"spatial"``: every echo is unwrapped spatially, then each echo's global 2*pi*k is
  chosen so that it agrees (median over the mask) with the template echo scaled by
  TE_n / TE_t.

Spatial unwrapping is the region-growing unwrapper (``"region-growing"``, exact
multiples of 2*pi) or the Laplacian one (``"laplacian"``). The Laplacian result is
the true phase plus a harmonic function inside the mask (removed later by
background-field removal) and is not congruent to the input modulo 2*pi, so it is
used only with ``echo_mode="spatial"`` and without the 2*pi*k alignment.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from qsmbids.recon.unwrap_laplacian import unwrap_laplacian
from qsmbids.recon.unwrap_region_growing import QualityInputs, unwrap_region_growing

SPATIAL_METHODS = ("region-growing", "laplacian")
ECHO_MODES = ("temporal", "spatial")
_TWO_PI = 2 * np.pi


@dataclass(frozen=True)
class UnwrapSettings:
    """How to unwrap multi-echo phase.

    Attributes
    ----------
    method
        Spatial unwrapper: ``"region-growing"`` or ``"laplacian"``.
    echo_mode
        ``"temporal"`` or ``"spatial"`` (see module docstring); None (default) picks
        ``"temporal"`` for region growing and ``"spatial"`` for the Laplacian.
    template_echo
        0-based index of the echo unwrapped spatially in temporal mode (and the
        reference for the global 2*pi*k in spatial mode).
    """

    method: str = "region-growing"
    echo_mode: str | None = None
    template_echo: int = 0

    def __post_init__(self) -> None:
        if self.echo_mode is None:
            default = "spatial" if self.method == "laplacian" else "temporal"
            object.__setattr__(self, "echo_mode", default)
        if self.method not in SPATIAL_METHODS:
            raise ValueError(f"unknown unwrapping method {self.method!r}; "
                             f"choose from {SPATIAL_METHODS}")
        if self.echo_mode not in ECHO_MODES:
            raise ValueError(f"unknown echo mode {self.echo_mode!r}; choose from {ECHO_MODES}")
        if self.method == "laplacian" and self.echo_mode == "temporal":
            raise ValueError("Laplacian unwrapping is not congruent modulo 2*pi; "
                             "use echo_mode='spatial' with it")

    def describe(self) -> str:
        """One-line description for the sidecar."""
        return (f"{self.method} spatial unwrapping, {self.echo_mode} across echoes "
                f"(template echo {self.template_echo + 1})")


def unwrap_spatial(
    phase: np.ndarray,
    mask: np.ndarray,
    voxel_size: Sequence[float],
    method: str = "region-growing",
    quality_inputs: QualityInputs | None = None,
) -> np.ndarray:
    """Unwrap one 3D phase (rad) inside ``mask`` with the named spatial method."""
    if method == "region-growing":
        return unwrap_region_growing(phase, mask, quality_inputs or QualityInputs())
    if method == "laplacian":
        return unwrap_laplacian(phase, voxel_size, mask)
    raise ValueError(f"unknown unwrapping method {method!r}; choose from {SPATIAL_METHODS}")


def _round_to_turns(values: np.ndarray) -> np.ndarray:
    return _TWO_PI * np.round(values / _TWO_PI)


def unwrap_echoes(
    phase: np.ndarray,
    magnitude: np.ndarray | None,
    echo_times_s: Sequence[float],
    mask: np.ndarray,
    voxel_size: Sequence[float],
    settings: UnwrapSettings = UnwrapSettings(),
) -> np.ndarray:
    """Unwrap multi-echo phase.

    Parameters
    ----------
    phase
        Wrapped phase in rad, (x, y, z, echo), offset-corrected for temporal mode.
    magnitude
        Magnitude (x, y, z, echo) for the quality map, or None.
    echo_times_s
        Echo times in s, one per echo (any order/spacing).
    mask
        bool (x, y, z).
    voxel_size
        mm along (x, y, z).
    settings
        See :class:`UnwrapSettings`.

    Returns
    -------
    numpy.ndarray
        Unwrapped phase in rad, float32, (x, y, z, echo); 0 outside the mask.
    """
    phase = np.asarray(phase, dtype=np.float32)
    if phase.ndim == 3:
        phase = phase[..., None]
    tes = np.asarray(echo_times_s, dtype=np.float64)
    n_echoes = phase.shape[3]
    if tes.shape != (n_echoes,):
        raise ValueError(f"{tes.size} echo times for {n_echoes} echoes")
    if magnitude is not None and np.shape(magnitude)[:4] != phase.shape:
        magnitude = np.reshape(magnitude, phase.shape)
    t = settings.template_echo
    if not 0 <= t < n_echoes:
        raise ValueError(f"template_echo {t} out of range for {n_echoes} echoes")
    mask = np.asarray(mask, dtype=bool)
    out = np.zeros(phase.shape, np.float32)

    def quality(n: int) -> QualityInputs:
        other = t + 1 if t + 1 < n_echoes else t - 1
        use_other = n == t and n_echoes > 1 and settings.echo_mode == "temporal"
        return QualityInputs(
            magnitude=None if magnitude is None else magnitude[..., n],
            second_phase=phase[..., other] if use_other else None,
            te_ratio=float(tes[other] / tes[n]) if use_other else 2.0)

    template = unwrap_spatial(phase[..., t], mask, voxel_size, settings.method, quality(t))
    congruent = settings.method == "region-growing"
    if congruent and mask.any():  # global 2*pi*k: median over the mask in [-pi, pi)
        template -= np.float32(_round_to_turns(np.median(template[mask])))
    out[..., t] = template
    for n in range(n_echoes):
        if n == t:
            continue
        predicted = template * np.float32(tes[n] / tes[t])
        if settings.echo_mode == "temporal":
            unwrapped = phase[..., n] + _round_to_turns(predicted - phase[..., n])
        else:
            unwrapped = unwrap_spatial(phase[..., n], mask, voxel_size, settings.method,
                                       quality(n))
            if congruent and mask.any():
                shift = np.median((predicted - unwrapped)[mask])
                unwrapped = unwrapped + np.float32(_round_to_turns(np.asarray(shift)))
        out[..., n] = np.where(mask, unwrapped, 0.0)
    return out


def residual_wraps(unwrapped: np.ndarray, mask: np.ndarray) -> int:
    """Wraps a spatial unwrapping left: neighbouring voxel pairs (6-connected, both in
    the mask) whose unwrapped phase still differs by more than pi.

    Give it the echo that was unwrapped in space (the template echo; the other echoes
    follow it in time, and errors there show in the echo-fit residual instead). At
    its short echo time a usable scan changes by well under pi between neighbours;
    each pair counted here is a 2 pi step left inside the brain: a path of the region
    growing that closed on itself across a phase singularity (e.g. of a failed coil
    combination) or through noise.

    Parameters
    ----------
    unwrapped
        Unwrapped phase of one echo in rad, (x, y, z).
    mask
        bool (x, y, z).

    Returns
    -------
    int
    """
    phase = np.asarray(unwrapped, np.float32)
    mask = np.asarray(mask, bool)
    if mask.shape != phase.shape:
        raise ValueError(f"mask shape {mask.shape} != phase shape {phase.shape}")
    count = 0
    for axis in range(3):
        both = np.logical_and(np.delete(mask, 0, axis), np.delete(mask, -1, axis))
        count += int(np.count_nonzero((np.abs(np.diff(phase, axis=axis)) > np.pi) & both))
    return count
