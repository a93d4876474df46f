"""Trimming of noisy edge voxels: only what is connected to the outside goes."""

import numpy as np
import pytest

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


def test_every_part_of_a_mask_in_two_parts_is_kept():
    # a user's mask of two separate blocks, each with a noisy rim on one face: both
    # blocks keep their reliable core (the smaller one was lost when only the largest
    # connected part of the whole mask was kept)
    mask = np.zeros((40, 20, 20), bool)
    mask[2:22, 2:18, 2:18] = True
    mask[28:36, 4:16, 4:16] = True
    std = np.ones(mask.shape, np.float32)
    std[2, 2:18, 2:18] = 10.0
    std[35, 4:16, 4:16] = 10.0
    trimmed, removed = trim_unreliable(mask, std, 3.0)
    assert removed == 16 * 16 + 12 * 12
    assert trimmed[3:22, 2:18, 2:18].all() and trimmed[28:35, 4:16, 4:16].all()
    assert not trimmed[2].any() and not trimmed[35].any()
    # a reliable speck cut off from its part by noisy voxels is still trimmed
    std[30, 4:16, 4:16] = 10.0
    trimmed, _ = trim_unreliable(mask, std, 3.0)
    assert not trimmed[28:30].any() and trimmed[31:35, 4:16, 4:16].all()


def test_no_trimming_when_the_field_is_uniformly_reliable():
    mask = np.zeros((10, 10, 10), bool)
    mask[2:8, 2:8, 2:8] = True
    trimmed, removed = trim_unreliable(mask, np.ones(mask.shape), 3.0)
    assert removed == 0 and (trimmed == mask).all()
    assert trim_unreliable(mask, np.ones(mask.shape), np.inf)[1] == 0


def test_edge_weight_ramps_with_depth_in_mm():
    from qsmbids.recon.reliability import edge_weight

    mask = np.zeros((40, 40, 40), bool)
    mask[5:35, 5:35, 5:35] = True
    weight = edge_weight(mask, (2.0, 2.0, 2.0), floor=0.1, ramp_mm=4.0)
    assert weight.dtype == np.float32 and not weight[~mask].any()
    # outermost voxel: 1 mm below the boundary -> 0.1 + 0.9 / 4; second: 3 mm; third: 1
    assert weight[5, 20, 20] == pytest.approx(0.325)
    assert weight[6, 20, 20] == pytest.approx(0.775)
    assert weight[7, 20, 20] == pytest.approx(1.0) and weight[20, 20, 20] == 1.0
    # anisotropic voxels: the ramp is in mm along each axis
    aniso = edge_weight(mask, (1.0, 1.0, 4.0), floor=0.0, ramp_mm=4.0)
    assert aniso[20, 20, 5] == pytest.approx(0.875)  # 4 mm deep, minus half of 1 mm
    assert aniso[5, 20, 20] == pytest.approx(0.125)
    assert np.array_equal(edge_weight(mask, (1, 1, 1), ramp_mm=0.0), mask.astype(np.float32))
    with pytest.raises(ValueError):
        edge_weight(mask, (1, 1, 1), floor=1.5)


def test_edge_weight_treats_the_fov_edge_as_continuing_tissue():
    """A slab that fills the FOV in z is not down-weighted at its first and last slice
    (the brain goes on beyond them), only at its true edges."""
    from qsmbids.recon.reliability import edge_weight

    mask = np.zeros((30, 30, 10), bool)
    mask[5:25, 5:25, :] = True
    weight = edge_weight(mask, (1.0, 1.0, 1.0), floor=0.1, ramp_mm=4.0)
    assert weight[15, 15, 0] == 1.0 and weight[15, 15, -1] == 1.0
    assert weight[5, 15, 0] == pytest.approx(0.1 + 0.9 * 0.5 / 4)
    # the vein node gives the depth it computed already: the same weight
    from qsmbids.recon.masking import distance_to_outside

    for voxel in ((1.0, 1.0, 1.0), (0.8, 0.8, 2.0)):
        depth = distance_to_outside(mask, voxel)
        np.testing.assert_array_equal(
            edge_weight(mask, voxel, floor=0.1, ramp_mm=4.0, depth_mm=depth),
            edge_weight(mask, voxel, floor=0.1, ramp_mm=4.0))
