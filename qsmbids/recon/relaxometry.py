"""R2* and T2* maps from multi-echo GRE magnitude.

Model: ``|S_n| = S0 * exp(-R2* * TE_n)``.

* ``"loglinear"``: weighted least squares of ``log|S_n|`` against TE with weights
  ``|S_n|^2`` (the inverse variance of ``log|S|`` at high SNR); any echo spacing, >= 2
  echoes.
* ``"arlo"``: auto-regression on linear operations (Pei et al., MRM 2015,
  doi:10.1002/mrm.25137) for >= 3 equally spaced echoes: for each consecutive triple,
  ``S_i - S_{i+2} = R2* * integral``, the integral taken by Simpson's rule
  ``dTE/3 * (S_i + 4 S_{i+1} + S_{i+2})``; R2* is the least-squares slope of the
  differences on the integrals. Linear in the data, no logarithm.

R2* is clipped to ``[0, r2star_max]``; T2* = 1/R2*, capped at ``t2star_max``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

METHODS = ("loglinear", "arlo")


@dataclass(frozen=True)
class RelaxationMaps:
    """R2* and T2* maps.

    Attributes
    ----------
    r2star
        R2* in 1/s, float32, (x, y, z); 0 outside the mask.
    t2star
        T2* in s, float32, (x, y, z); 0 outside the mask.
    method
        Description for the sidecar.
    """

    r2star: np.ndarray
    t2star: np.ndarray
    method: str


def _equally_spaced(tes: np.ndarray) -> bool:
    steps = np.diff(tes)
    return tes.size >= 3 and bool(np.all(steps > 0)) and np.allclose(steps, steps[0], rtol=1e-3)


def _loglinear(mag: np.ndarray, tes: np.ndarray, min_signal: float) -> np.ndarray:
    valid = mag > min_signal
    weights = np.where(valid, mag * mag, 0.0).astype(np.float32)
    logs = np.log(np.where(valid, mag, 1.0)).astype(np.float32)
    te = tes.astype(np.float32)
    s_w = weights.sum(axis=-1)
    s_t = weights @ te
    s_tt = weights @ (te * te)
    s_y = np.einsum("...e,...e->...", weights, logs)
    s_ty = np.einsum("...e,...e,e->...", weights, logs, te)
    det = s_w * s_tt - s_t * s_t
    ok = (det > 0) & (valid.sum(axis=-1) >= 2)
    slope = np.divide(s_w * s_ty - s_t * s_y, det, out=np.zeros_like(det), where=ok)
    return -slope


def _arlo(mag: np.ndarray, tes: np.ndarray) -> np.ndarray:
    delta = np.float32(tes[1] - tes[0])
    first, middle, last = mag[..., :-2], mag[..., 1:-1], mag[..., 2:]
    integral = delta / 3 * (first + 4 * middle + last)
    difference = first - last
    num = np.einsum("...e,...e->...", integral, difference)
    den = np.einsum("...e,...e->...", integral, integral)
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def estimate_r2star(
    magnitude: np.ndarray,
    echo_times_s: Sequence[float],
    mask: np.ndarray | None = None,
    *,
    method: str = "loglinear",
    r2star_max: float = 500.0,
    t2star_max: float = 1.0,
    min_signal: float = 0.0,
) -> RelaxationMaps:
    """R2* (1/s) and T2* (s) from multi-echo magnitude.

    Parameters
    ----------
    magnitude
        Magnitude, (x, y, z, echo).
    echo_times_s
        Echo times in s (>= 2 distinct).
    mask
        bool (x, y, z); outputs are 0 outside (None: everywhere).
    method
        ``"loglinear"`` (default: the more precise of the two on simulated brains at
        SNR 50, 4.7% vs 5.2% mean per-voxel error with 4 echoes) or ``"arlo"``.
    r2star_max
        Upper clip of R2* (1/s); the lower clip is 0.
    t2star_max
        Upper cap of T2* (s), used where R2* < 1 / t2star_max.
    min_signal
        Log-linear only: echoes with magnitude <= this are ignored (e.g. noise floor).

    Returns
    -------
    RelaxationMaps
    """
    mag = np.asarray(magnitude, dtype=np.float32)
    tes = np.asarray(echo_times_s, dtype=np.float64)
    if mag.ndim != 4 or tes.shape != (mag.shape[3],):
        raise ValueError(f"magnitude must be (x, y, z, echo) with one echo time per echo; got "
                         f"shape {mag.shape} and {tes.size} echo times")
    if tes.size < 2 or len(set(tes.tolist())) != tes.size or np.any(tes <= 0):
        raise ValueError(f"R2* needs >= 2 distinct positive echo times (s), got {tes.tolist()}")
    if method not in METHODS:
        raise ValueError(f"unknown R2* method {method!r}; choose from {METHODS}")
    order = np.argsort(tes)
    tes, mag = tes[order], mag[..., order]
    if method == "arlo" and not _equally_spaced(tes):
        raise ValueError(f"ARLO needs >= 3 equally spaced echoes, got TE {tes.tolist()}")
    if mask is None:
        mask = np.ones(mag.shape[:3], bool)
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != mag.shape[:3]:
        raise ValueError(f"mask shape {mask.shape} != magnitude shape {mag.shape[:3]}")
    inside = mag[mask]
    values = _arlo(inside, tes) if method == "arlo" else _loglinear(inside, tes, min_signal)
    values = np.clip(np.nan_to_num(values), 0.0, r2star_max)
    r2star = np.zeros(mask.shape, np.float32)
    r2star[mask] = values
    t2star = np.zeros(mask.shape, np.float32)
    t2star[mask] = 1.0 / np.maximum(values, 1.0 / t2star_max)
    description = (f"{method} mono-exponential fit, R2* clipped to [0, {r2star_max:g}] 1/s, "
                   f"T2* capped at {t2star_max:g} s")
    return RelaxationMaps(r2star, t2star, description)
