"""Quality-guided region-growing phase unwrapping (in the spirit of ROMEO).

Every pair of 6-connected neighbours inside the mask is an edge with a quality in
[0, 1], the product of

* phase coherence ``1 - |wrap(phi_b - phi_a)| / pi`` (small phase gradients first),
* magnitude coherence ``(min(m_a, m_b) / max(m_a, m_b))^2``,
* magnitude weight ``min(1, min(m_a, m_b) / m_ref)`` (bright, reliable voxels first),
* echo consistency ``1 - |wrap(dphi2 - dphi * TE2/TE1)| / pi`` when a second echo
  is given (the gradient of the second echo must be the scaled gradient of the first).

Starting from the best voxel, the unwrapped region grows across the best edge
available (a bucket priority queue with ``n_bins`` levels); each new voxel receives
the wrapped phase plus the multiple of 2*pi that brings it closest to its
already-unwrapped neighbour, so the result differs from the input by exact integer
multiples of 2*pi. Disconnected parts of the mask are grown from their own seeds
(each has its own global 2*pi*k). The loop is compiled with numba (``cache=True``).

Reference: Dymerska et al., MRM 2021, doi:10.1002/mrm.28563 (ROMEO).
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

_TWO_PI = 2.0 * np.pi


@dataclass(frozen=True)
class QualityInputs:
    """Optional inputs of the edge quality (see module docstring).

    Attributes
    ----------
    magnitude
        Magnitude (x, y, z) of the echo being unwrapped, or None.
    second_phase
        Wrapped phase (rad) of another echo, (x, y, z), or None.
    te_ratio
        TE(second) / TE(unwrapped echo).
    """

    magnitude: np.ndarray | None = None
    second_phase: np.ndarray | None = None
    te_ratio: float = 2.0


@numba.njit(cache=True, inline="always")
def _wrap(x):
    return x - _TWO_PI * np.floor((x + np.pi) / _TWO_PI)


@numba.njit(cache=True)
def _edge_quality(a, b, phase, mag, phase2, use_mag, use_p2, te_ratio, inv_mref):
    d = _wrap(phase[b] - phase[a])
    q = 1.0 - abs(d) / np.pi
    if use_mag:
        ma = mag[a]
        mb = mag[b]
        lo = min(ma, mb)
        hi = max(ma, mb)
        if hi <= 0.0:
            return 0.0
        r = lo / hi
        q *= r * r * min(1.0, lo * inv_mref)
    if use_p2:
        d2 = _wrap(phase2[b] - phase2[a])
        q *= max(0.0, 1.0 - abs(_wrap(d2 - d * te_ratio)) / np.pi)
    return q


@numba.njit(cache=True)
def _neighbours(v, nx, ny, nz, out):
    """Flat indices of the up to 6 neighbours of v (C order); returns the count."""
    syz = ny * nz
    i = v // syz
    j = (v // nz) % ny
    k = v % nz
    n = 0
    if i > 0:
        out[n] = v - syz
        n += 1
    if i < nx - 1:
        out[n] = v + syz
        n += 1
    if j > 0:
        out[n] = v - nz
        n += 1
    if j < ny - 1:
        out[n] = v + nz
        n += 1
    if k > 0:
        out[n] = v - 1
        n += 1
    if k < nz - 1:
        out[n] = v + 1
        n += 1
    return n


@numba.njit(cache=True)
def _voxel_quality(phase, mag, phase2, mask, nx, ny, nz, use_mag, use_p2, te_ratio, inv_mref):
    """Mean quality of each in-mask voxel's in-mask edges (0 outside the mask)."""
    out = np.zeros(phase.size, np.float32)
    nb = np.empty(6, np.int64)
    for v in range(phase.size):
        if not mask[v]:
            continue
        count = _neighbours(v, nx, ny, nz, nb)
        total = 0.0
        used = 0
        for t in range(count):
            w = nb[t]
            if mask[w]:
                total += _edge_quality(v, w, phase, mag, phase2, use_mag, use_p2, te_ratio,
                                       inv_mref)
                used += 1
        if used > 0:
            out[v] = total / used
    return out


@numba.njit(cache=True)
def _best_seed(phase, mag, phase2, mask, nx, ny, nz, use_mag, use_p2, te_ratio, inv_mref,
               stride):
    """In-mask voxel with the best summed edge quality on a grid of every ``stride``-th voxel
    (-1 if none)."""
    nb = np.empty(6, np.int64)
    best = -1.0
    seed = -1
    for i in range(0, nx, stride):
        for j in range(0, ny, stride):
            for k in range(0, nz, stride):
                v = (i * ny + j) * nz + k
                if not mask[v]:
                    continue
                count = _neighbours(v, nx, ny, nz, nb)
                total = 0.0
                for t in range(count):
                    w = nb[t]
                    if mask[w]:
                        total += _edge_quality(v, w, phase, mag, phase2, use_mag, use_p2,
                                               te_ratio, inv_mref)
                if total > best:
                    best = total
                    seed = v
    return seed


@numba.njit(cache=True)
def _grow(phase, mag, phase2, mask, first_seed, nx, ny, nz, use_mag, use_p2, te_ratio,
          inv_mref, n_bins):
    size = phase.size
    out = np.zeros(size, np.float32)
    visited = np.zeros(size, np.uint8)
    n_mask = 0
    for v in range(size):
        if mask[v]:
            n_mask += 1
    capacity = 3 * n_mask + 6
    head = np.full(n_bins, -1, np.int64)
    nxt = np.empty(capacity, np.int32)
    src = np.empty(capacity, np.int32)
    tgt = np.empty(capacity, np.int32)
    nb = np.empty(6, np.int64)
    n_items = 0
    n_components = 0
    scan = 0
    remaining = n_mask
    while remaining > 0:
        # seed: the best voxel for the first component, then the next unvisited one
        if n_components == 0 and first_seed >= 0:
            seed = first_seed
        else:
            while not (mask[scan] and visited[scan] == 0):
                scan += 1
            seed = scan
        n_components += 1
        visited[seed] = 1
        out[seed] = phase[seed]
        remaining -= 1
        top = -1
        current = seed
        while True:
            # push the edges from the newly unwrapped voxel to unvisited mask neighbours
            count = _neighbours(current, nx, ny, nz, nb)
            for t in range(count):
                w = nb[t]
                if mask[w] and visited[w] == 0:
                    q = _edge_quality(current, w, phase, mag, phase2, use_mag, use_p2,
                                      te_ratio, inv_mref)
                    level = int(q * (n_bins - 1) + 0.5)
                    level = min(max(level, 0), n_bins - 1)
                    nxt[n_items] = head[level]
                    src[n_items] = current
                    tgt[n_items] = w
                    head[level] = n_items
                    n_items += 1
                    if level > top:
                        top = level
            # pop the best edge leading to an unvisited voxel
            current = -1
            while top >= 0:
                item = head[top]
                if item < 0:
                    top -= 1
                    continue
                head[top] = nxt[item]
                w = tgt[item]
                if visited[w] == 0:
                    s = src[item]
                    out[w] = phase[w] + _TWO_PI * np.round((out[s] - phase[w]) / _TWO_PI)
                    visited[w] = 1
                    remaining -= 1
                    current = w
                    break
            if current < 0:
                break
    return out, n_components


def _prepare(phase, mask, quality_inputs):
    phase = np.ascontiguousarray(phase, dtype=np.float32)
    if phase.ndim != 3:
        raise ValueError(f"phase must be (x, y, z), got shape {phase.shape}")
    mask = (np.ones(phase.shape, bool) if mask is None
            else np.ascontiguousarray(mask, dtype=bool))
    if mask.shape != phase.shape:
        raise ValueError(f"mask shape {mask.shape} != phase shape {phase.shape}")
    use_mag = quality_inputs.magnitude is not None
    use_p2 = quality_inputs.second_phase is not None
    dummy = np.zeros(1, np.float32)
    mag = dummy
    inv_mref = 1.0
    if use_mag:
        mag = np.ascontiguousarray(quality_inputs.magnitude, dtype=np.float32)
        if mag.shape != phase.shape:
            raise ValueError(f"magnitude shape {mag.shape} != phase shape {phase.shape}")
        inside = mag[mask]
        mref = float(np.percentile(inside, 75)) if inside.size else 0.0
        inv_mref = 1.0 / mref if mref > 0 else 0.0
        mag = mag.ravel()
    phase2 = dummy
    if use_p2:
        phase2 = np.ascontiguousarray(quality_inputs.second_phase, dtype=np.float32)
        if phase2.shape != phase.shape:
            raise ValueError(f"second_phase shape {phase2.shape} != phase shape {phase.shape}")
        phase2 = phase2.ravel()
    return (phase.ravel(), mag, phase2, mask.ravel(), phase.shape, use_mag, use_p2,
            float(quality_inputs.te_ratio), inv_mref)


def voxel_quality(
    phase: np.ndarray,
    mask: np.ndarray | None = None,
    quality_inputs: QualityInputs = QualityInputs(),
) -> np.ndarray:
    """Mean edge quality per voxel, in [0, 1], float32, (x, y, z); 0 outside the mask.

    Useful as a phase-quality map for masking (low values: noise or fast phase).
    """
    phase_f, mag, phase2, mask_f, shape, use_mag, use_p2, ratio, inv_mref = _prepare(
        phase, mask, quality_inputs)
    q = _voxel_quality(phase_f, mag, phase2, mask_f, *shape, use_mag, use_p2, ratio, inv_mref)
    return q.reshape(shape)


def unwrap_region_growing(
    phase: np.ndarray,
    mask: np.ndarray | None = None,
    quality_inputs: QualityInputs = QualityInputs(),
    *,
    n_bins: int = 256,
    seed_stride: int = 3,
) -> np.ndarray:
    """Unwrap a 3D phase image by quality-guided region growing.

    Parameters
    ----------
    phase
        Wrapped phase in rad, (x, y, z).
    mask
        bool (x, y, z); voxels outside are not unwrapped (None: whole image).
    quality_inputs
        Magnitude and/or a second echo that refine the edge quality.
    n_bins
        Quality levels of the priority queue.
    seed_stride
        The seed is the in-mask voxel with the best edges among every
        ``seed_stride``-th voxel along each axis.

    Returns
    -------
    numpy.ndarray
        float32 (x, y, z): inside the mask ``phase + 2*pi*k`` with integer k per voxel
        (a global 2*pi*k per connected component is arbitrary); 0 outside the mask.
    """
    if not 2 <= n_bins <= 65536:
        raise ValueError(f"n_bins must be in 2..65536, got {n_bins}")
    phase_f, mag, phase2, mask_f, shape, use_mag, use_p2, ratio, inv_mref = _prepare(
        phase, mask, quality_inputs)
    if phase_f.size >= 2**31:
        raise ValueError(f"volume too large for the unwrapper: {shape}")
    seed = _best_seed(phase_f, mag, phase2, mask_f, *shape, use_mag, use_p2, ratio, inv_mref,
                      seed_stride)
    out, _ = _grow(phase_f, mag, phase2, mask_f, seed, *shape, use_mag, use_p2, ratio,
                   inv_mref, n_bins)
    return out.reshape(shape)
