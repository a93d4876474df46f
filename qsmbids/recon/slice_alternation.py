"""Detect and undo a pi phase alternation from slice to slice (GE real/imaginary exports).

GE scanners can store real and imaginary images whose every other slice carries an
extra phase of pi (a sign flip of the complex signal, from the reconstruction's
k-space centring along the slice direction). Phase then jumps by pi between any two
neighbouring slices, which no unwrapper can follow. The flip shows in the mean
magnitude-weighted cosine of the phase difference between neighbouring slices: close
to +1 for a smooth field, close to -1 with the alternation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: below this mean neighbour cosine the alternation is taken as present
ALTERNATION_THRESHOLD = -0.5


@dataclass(frozen=True)
class SliceAlternation:
    """Result of :func:`undo_slice_alternation`.

    Attributes
    ----------
    real, imaginary
        The parts with every other slice negated where an alternation was found
        (float32, input shape).
    axes
        Voxel axes (0, 1, 2) along which the alternation was found and undone.
    coherence
        Mean magnitude-weighted cosine of the neighbour phase difference along each of
        the three voxel axes, before any correction.
    """

    real: np.ndarray
    imaginary: np.ndarray
    axes: tuple[int, ...]
    coherence: tuple[float, float, float]


def neighbour_coherence(signal: np.ndarray, axis: int) -> float:
    """Mean magnitude-weighted cosine of the phase difference between neighbouring
    voxels along ``axis`` of a complex image (x, y, z[, echo]); 1 for a smooth phase,
    -1 for a pi alternation, 0 for noise."""
    a = np.moveaxis(signal, axis, 0)
    product = a[1:] * np.conj(a[:-1])
    weight = float(np.abs(product).sum())
    return float(product.real.sum() / weight) if weight > 0 else 0.0


def undo_slice_alternation(real: np.ndarray, imaginary: np.ndarray,
                           threshold: float = ALTERNATION_THRESHOLD) -> SliceAlternation:
    """Find a pi alternation along any voxel axis and negate every other slice there.

    Parameters
    ----------
    real, imaginary
        Real and imaginary parts, (x, y, z) or (x, y, z, echo), any common scaling.
    threshold
        Largest neighbour coherence counted as an alternation.

    Returns
    -------
    SliceAlternation
    """
    real = np.asarray(real, np.float32)
    imaginary = np.asarray(imaginary, np.float32)
    if real.shape != imaginary.shape or real.ndim not in (3, 4):
        raise ValueError(f"real {real.shape} and imaginary {imaginary.shape} must share a "
                         "3-D or 4-D shape")
    signal = real + 1j * imaginary
    coherence = tuple(neighbour_coherence(signal, axis) for axis in range(3))
    axes = tuple(axis for axis, value in enumerate(coherence)
                 if real.shape[axis] > 1 and value < threshold)
    if axes:
        real, imaginary = real.copy(), imaginary.copy()
        for axis in axes:
            index = [slice(None)] * real.ndim
            index[axis] = slice(1, None, 2)
            real[tuple(index)] *= -1
            imaginary[tuple(index)] *= -1
    return SliceAlternation(real, imaginary, axes, coherence)  # type: ignore[arg-type]
