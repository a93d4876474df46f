"""Trimming of noisy edge voxels: only what is connected to the outside goes."""

import numpy as np

from qsmbids.recon.reliability import trim_unreliable


def test_noisy_rim_is_trimmed_but_noisy_core_stays():
    shape = (30, 30, 30)
    grid = np.meshgrid(*[np.arange(n) - 15 for n in shape], indexing="ij")
    radius = np.sqrt(sum(g**2 for g in grid))
    mask = radius < 12
    std = np.ones(shape, np.float32)
    std[(radius >= 10) & (grid[0] > 0)] = 10.0  # a noisy rim on one side (air edge)
    std[radius < 3] = 10.0  # a noisy core (vein / iron at 7 T): enclosed, kept
    trimmed, removed = trim_unreliable(mask, std, 3.0)
    rim = mask & (radius >= 10) & (grid[0] > 0)
    assert removed == int(rim.sum())
    assert not (trimmed & rim).any()
    assert trimmed[radius < 3].all()
    assert (trimmed == (mask & ~rim)).all()


def test_no_trimming_when_the_field_is_uniformly_reliable():
    mask = np.zeros((10, 10, 10), bool)
    mask[2:8, 2:8, 2:8] = True
    trimmed, removed = trim_unreliable(mask, np.ones(mask.shape), 3.0)
    assert removed == 0 and (trimmed == mask).all()
    assert trim_unreliable(mask, np.ones(mask.shape), np.inf)[1] == 0
