"""Echo combination: phase offset removal (MCPC-3D-S) and weighted fit of phase vs TE.

Phase model per voxel and echo n: ``phi_n = phi0 + 2*pi*f*TE_n`` (+ noise with
standard deviation ``sigma / |S_n|``), with ``phi0`` the echo-independent offset.

* :func:`estimate_phase_offset`: MCPC-3D-S (Eckstein et al., MRM 2018,
  doi:10.1002/mrm.26963). The Hermitian product of two echoes cancels ``phi0``; its
  phase, spatially unwrapped, gives ``2*pi*f*(TE_j - TE_i)``, so
  ``phi0 = phi_i - TE_i * unwrap(phi_j - phi_i) / (TE_j - TE_i)``, smoothed as a
  magnitude-weighted complex field. Works for any TE_i, TE_j (TE1 != dTE).
* :func:`fit_field`: magnitude^2-weighted least squares of the offset-free unwrapped
  phase against TE through the origin (the SNR-optimal weights, as the phase noise
  is ``sigma / |S_n|``), with the standard error of the fit and the weighted residual.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.ndimage as ndi
import scipy.stats

from qsmbids.recon.phase_scaling import wrap_to_pi
from qsmbids.recon.smoothing import LocalLinearFit
from qsmbids.recon.units import hz_per_ppm
from qsmbids.recon.unwrap import unwrap_spatial
from qsmbids.recon.unwrap_region_growing import QualityInputs

_TWO_PI = 2 * np.pi
#: ways to smooth the MCPC-3D-S phase offset (first = default)
OFFSET_SMOOTHING = ("local-linear", "gaussian")


@dataclass(frozen=True)
class FieldMap:
    """Field map fitted from multi-echo phase.

    Attributes
    ----------
    field_hz
        Frequency offset in Hz, float32, (x, y, z); 0 outside the mask.
    field_ppm
        The same field in ppm relative to B0.
    field_std_hz
        Standard error of ``field_hz`` from the noise level and the magnitudes (Hz),
        the reliability map; 0 outside the mask.
    residual_rad
        Magnitude-weighted RMS of the phase residuals (rad), high where the linear
        phase model fails (unwrapping errors, flow); 0 for a single echo.
    noise_sigma
        Noise standard deviation per real/imaginary channel used for ``field_std_hz``
        (magnitude units).
    """

    field_hz: np.ndarray
    field_ppm: np.ndarray
    field_std_hz: np.ndarray
    residual_rad: np.ndarray
    noise_sigma: float


def _check_echoes(data: np.ndarray, echo_times_s: Sequence[float], name: str) -> np.ndarray:
    tes = np.asarray(echo_times_s, dtype=np.float64)
    if data.ndim != 4 or tes.shape != (data.shape[3],):
        raise ValueError(f"{name} must be (x, y, z, echo) with one echo time per echo; got "
                         f"shape {data.shape} and {tes.size} echo times")
    if np.any(tes <= 0) or len(set(tes.tolist())) != tes.size:
        raise ValueError(f"echo times must be positive and distinct (s), got {tes.tolist()}")
    return tes


def estimate_phase_offset(
    phase: np.ndarray,
    magnitude: np.ndarray,
    echo_times_s: Sequence[float],
    mask: np.ndarray,
    voxel_size: Sequence[float],
    *,
    echoes: tuple[int, int] = (0, 1),
    sigma_mm: float = 4.0,
    unwrap_method: str = "region-growing",
    smoothing: str = OFFSET_SMOOTHING[0],
) -> np.ndarray:
    """Echo-independent phase offset by MCPC-3D-S.

    Parameters
    ----------
    phase
        Wrapped phase in rad, (x, y, z, echo), at least two echoes.
    magnitude
        Magnitude (x, y, z, echo).
    echo_times_s
        Echo times in s.
    mask
        bool (x, y, z), where the difference phase is unwrapped.
    voxel_size
        mm along (x, y, z).
    echoes
        0-based indices (i, j) of the two echoes used.
    sigma_mm
        Gaussian smoothing of the offset (mm); 0 disables smoothing.
    unwrap_method
        Spatial unwrapper for the difference phase.
    smoothing
        One of :data:`OFFSET_SMOOTHING`. ``"local-linear"``: a magnitude-weighted
        Gaussian local linear fit (:class:`qsmbids.recon.smoothing.LocalLinearFit`)
        of the complex offset, then of its wrapped residual; unbiased for a linear
        offset up to the mask edge. ``"gaussian"``: a magnitude-weighted Gaussian
        average of the complex offset, biased by the offset's gradient near the edge
        (a one-sided window).

    Returns
    -------
    numpy.ndarray
        Offset in rad, float32, (x, y, z), wrapped to [-pi, pi).

    Notes
    -----
    The unwrapped difference phase is known up to a global 2*pi*k; k is chosen so
    that its median over the mask lies in [-pi, pi) (the median field is closest to
    0 Hz). A different k shifts the field by a constant k / (TE_j - TE_i) Hz, which
    background-field removal removes.
    """
    phase = np.asarray(phase, dtype=np.float32)
    magnitude = np.asarray(magnitude, dtype=np.float32)
    tes = _check_echoes(phase, echo_times_s, "phase")
    i, j = echoes
    if phase.shape[3] < 2 or i == j or not (0 <= i < phase.shape[3] and 0 <= j < phase.shape[3]):
        raise ValueError(f"need two distinct echoes for MCPC-3D-S, got {echoes} of "
                         f"{phase.shape[3]}")
    mask = np.asarray(mask, dtype=bool)
    difference = wrap_to_pi(phase[..., j] - phase[..., i])
    weight = np.sqrt(magnitude[..., i] * magnitude[..., j])
    unwrapped = unwrap_echo_difference(difference, weight, mask, voxel_size, unwrap_method)
    raw = phase[..., i] - unwrapped * np.float32(tes[i] / (tes[j] - tes[i]))
    if smoothing not in OFFSET_SMOOTHING:
        raise ValueError(f"unknown offset smoothing {smoothing!r}; choose from "
                         f"{OFFSET_SMOOTHING}")
    if sigma_mm <= 0:
        return np.where(mask, wrap_to_pi(raw), 0.0).astype(np.float32)
    if smoothing == "local-linear":
        fitter = LocalLinearFit(magnitude[..., i], mask, voxel_size, sigma_mm)
        first = np.angle(fitter.fit_complex(np.exp(1j * raw)))
        residual = wrap_to_pi(np.where(mask, raw - first, 0.0).astype(np.float32))
        second = first + fitter.fit(residual)
        return np.where(mask, wrap_to_pi(second.astype(np.float32)), 0.0).astype(np.float32)
    weighted = np.where(mask, magnitude[..., i], 0.0).astype(np.float32)
    return wrap_to_pi(smooth_phase_gaussian(raw, weighted, sigma_mm, voxel_size))


def unwrap_echo_difference(difference: np.ndarray, weight: np.ndarray, mask: np.ndarray,
                           voxel_size: Sequence[float],
                           method: str = "region-growing") -> np.ndarray:
    """Spatially unwrap a phase difference between two echoes (rad, (x, y, z)), guided by
    ``weight`` (e.g. the geometric mean magnitude), with the global 2*pi*k chosen so that
    its median over ``mask`` lies in [-pi, pi) (the median field is closest to 0 Hz)."""
    unwrapped = unwrap_spatial(difference, mask, voxel_size, method,
                               QualityInputs(magnitude=weight))
    if mask.any():
        unwrapped -= np.float32(_TWO_PI * np.round(np.median(unwrapped[mask]) / _TWO_PI))
    return unwrapped


def smooth_phase_gaussian(phase: np.ndarray, weight: np.ndarray, sigma_mm: float,
                          voxel_size: Sequence[float]) -> np.ndarray:
    """Phase (rad) smoothed as the ``weight``-weighted Gaussian average (sigma in mm) of
    ``exp(i phase)``; float32 in (-pi, pi]."""
    sigma = [sigma_mm / v for v in voxel_size]
    real = ndi.gaussian_filter(weight * np.cos(phase), sigma, truncate=3.0)
    imag = ndi.gaussian_filter(weight * np.sin(phase), sigma, truncate=3.0)
    return np.arctan2(imag, real).astype(np.float32)


def remove_phase_offset(phase: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """Subtract an offset (x, y, z) from every echo of (x, y, z, echo) phase, wrapped (rad)."""
    return wrap_to_pi(np.asarray(phase, np.float32) - offset[..., None]).astype(np.float32)


def _border_noise_sigma(magnitude: np.ndarray) -> float:
    """Noise sigma from the outer faces of the FOV (air), assuming Rayleigh statistics."""
    first = magnitude[..., 0]
    faces = np.concatenate([first[[0, -1], :, :].ravel(), first[:, [0, -1], :].ravel(),
                            first[:, :, [0, -1]].ravel()])
    return float(np.median(faces) / np.sqrt(2 * np.log(2)))


def fit_field(
    unwrapped_phase: np.ndarray,
    magnitude: np.ndarray,
    echo_times_s: Sequence[float],
    field_strength_t: float,
    mask: np.ndarray,
    *,
    noise_sigma: float | None = None,
    uniform_weights: bool = False,
) -> FieldMap:
    """Magnitude-weighted least-squares fit of offset-free unwrapped phase vs TE.

    Parameters
    ----------
    unwrapped_phase
        Unwrapped phase in rad with the offset removed, (x, y, z, echo).
    magnitude
        Magnitude, (x, y, z, echo); weights are magnitude^2.
    echo_times_s
        Echo times in s (any number >= 1, any spacing).
    field_strength_t
        B0 in tesla, for the ppm conversion.
    mask
        bool (x, y, z); outputs are 0 outside.
    noise_sigma
        Noise standard deviation per channel (magnitude units); None to estimate it
        from the fit residuals (>= 2 echoes: median of the weighted residual sum of
        squares over the mask, chi-square calibrated) or, for one echo, from the
        Rayleigh-distributed magnitude on the FOV faces.
    uniform_weights
        Use per-echo weights that do not vary in space (mean magnitude^2 over the
        mask) instead of the voxel's magnitude^2. Needed after Laplacian unwrapping:
        each echo is then off by a harmonic function, and only a spatially constant
        combination of harmonic functions is harmonic (removable by background-field
        removal).

    Returns
    -------
    FieldMap
    """
    phase = np.asarray(unwrapped_phase, dtype=np.float32)
    magnitude = np.asarray(magnitude, dtype=np.float32)
    if phase.ndim == 3:
        phase, magnitude = phase[..., None], magnitude.reshape(*magnitude.shape[:3], -1)
    tes = _check_echoes(phase, echo_times_s, "unwrapped phase")
    if magnitude.shape != phase.shape:
        raise ValueError(f"magnitude {magnitude.shape} and phase {phase.shape} shapes differ")
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != phase.shape[:3]:
        raise ValueError(f"mask shape {mask.shape} != image shape {phase.shape[:3]}")
    n_echoes = tes.size
    inside = np.flatnonzero(mask)  # work on the mask's voxels only, as (voxel, echo)
    phi = phase.reshape(-1, n_echoes)[inside]
    power = magnitude.reshape(-1, n_echoes)[inside]
    power *= power
    te = tes.astype(np.float32)
    if uniform_weights:
        per_echo = power.mean(axis=0) if inside.size else np.ones(n_echoes, np.float32)
        weights = np.broadcast_to(per_echo.astype(np.float32), power.shape)
    else:
        weights = power
    sum_wtt = weights @ (te * te)
    valid = (sum_wtt > 0) & (power.sum(axis=1) > 0)
    slope = np.divide((weights * phi) @ te, sum_wtt, out=np.zeros_like(sum_wtt), where=valid)
    residual = phi - slope[:, None] * te
    weighted_ss = np.einsum("ve,ve,ve->v", power, residual, residual)
    residual_rad = np.sqrt(np.divide(weighted_ss, power.sum(axis=1),
                                     out=np.zeros_like(weighted_ss), where=valid))
    if n_echoes == 1:
        residual_rad[:] = 0.0
    if noise_sigma is None:
        if n_echoes >= 2 and valid.any():
            dof = n_echoes - 1
            noise_sigma = float(np.sqrt(np.median(weighted_ss[valid])
                                        / scipy.stats.chi2.median(dof)))
        else:
            noise_sigma = _border_noise_sigma(magnitude)
    # var(slope) = sum_n w_n^2 TE_n^2 sigma^2 / |S_n|^2 / (sum_n w_n TE_n^2)^2
    inverse_power = np.divide(1.0, power, out=np.zeros_like(power), where=power > 0)
    variance_sum = (weights * weights * inverse_power) @ (te * te)
    std_hz = np.divide(np.float32(noise_sigma / _TWO_PI) * np.sqrt(variance_sum), sum_wtt,
                       out=np.zeros_like(sum_wtt), where=valid)

    def volume(values: np.ndarray) -> np.ndarray:
        out = np.zeros(mask.size, np.float32)
        out[inside] = np.where(valid, values, 0.0)
        return out.reshape(mask.shape)

    field_hz = volume(slope / np.float32(_TWO_PI))
    std_hz, residual_rad = volume(std_hz), volume(residual_rad)
    return FieldMap(
        field_hz=field_hz,
        field_ppm=(field_hz / np.float32(hz_per_ppm(field_strength_t))).astype(np.float32),
        field_std_hz=std_hz.astype(np.float32),
        residual_rad=residual_rad.astype(np.float32),
        noise_sigma=float(noise_sigma),
    )
