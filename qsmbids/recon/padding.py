"""Zero padding for FFT-based convolutions, so that circular wrap-around stays outside the FOV."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.fft


def padded_shape(shape: Sequence[int], pad_fraction: float = 0.5) -> tuple[int, ...]:
    """FFT-friendly grid at least ``(1 + pad_fraction)`` times ``shape`` along every axis.

    Parameters
    ----------
    shape
        Array shape (x, y, z) in voxels.
    pad_fraction
        Extra size relative to each axis; 0 keeps the size (rounded up to a fast FFT length).
    """
    if pad_fraction < 0:
        raise ValueError(f"pad_fraction must be >= 0, got {pad_fraction}")
    return tuple(
        scipy.fft.next_fast_len(int(np.ceil(n * (1 + pad_fraction))), real=True) for n in shape
    )


def zero_pad(array: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Place ``array`` at the origin corner of a zero array of ``shape``."""
    if any(s < n for s, n in zip(shape, array.shape, strict=True)):
        raise ValueError(f"cannot pad shape {array.shape} to smaller {tuple(shape)}")
    out = np.zeros(shape, dtype=array.dtype)
    out[tuple(slice(0, n) for n in array.shape)] = array
    return out


def crop(array: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Inverse of :func:`zero_pad`: the origin corner of ``array`` with ``shape``."""
    return array[tuple(slice(0, n) for n in shape)]
