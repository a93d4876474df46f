"""Regional statistics against values computed independently on known arrays."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from qsmbids.atlas.regions import DEFAULT_REGION_LABELS, phantom_regions
from qsmbids.stats.regional import STAT_COLUMNS, region_statistics, regional_statistics


def _phantom(shape=(24, 20, 16)):
    labels = np.zeros(shape, dtype=np.int16)
    labels[2:8, 3:9, 4:10] = 1       # Caudate_L: 6x6x6 block
    labels[12:18, 3:9, 4:10] = 2     # Caudate_R
    labels[3:6, 12:15, 2:5] = 9      # SubstantiaNigra_L: 3x3x3
    labels[14:17, 12:15, 2:5] = 10
    return labels


def test_zero_values_are_kept_and_mask_excludes():
    labels = _phantom()
    values = np.zeros(labels.shape, dtype=np.float32)        # every value is exactly 0
    values[labels == 2] = np.linspace(-0.1, 0.2, (labels == 2).sum())
    mask = np.ones(labels.shape, bool)
    mask[12:18, 3:9, 4:5] = False                              # cut one slab of Caudate_R
    regions = {"Caudate_L": [1], "Caudate_R": [2]}
    rows = {r["region"]: r for r in regional_statistics(values, labels, regions,
                                                         voxel_size=(1.0, 1.0, 2.0), mask=mask)}
    left = rows["Caudate_L"]
    assert left["n_voxels"] == 216                    # zeros are not dropped
    assert left["mean"] == 0.0 and left["std"] == 0.0
    assert left["volume_mm3"] == pytest.approx(216 * 2.0)
    right = rows["Caudate_R"]
    used = values[(labels == 2) & mask]
    assert right["n_voxels"] == used.size == 180
    assert right["coverage"] == pytest.approx(180 / 216)
    assert right["mean"] == pytest.approx(used.mean(), abs=1e-7)
    both = rows["Caudate"]
    assert both["hemisphere"] == "bilateral"
    assert both["n_voxels"] == 216 + 180
    assert both["mean"] == pytest.approx(np.concatenate([np.zeros(216), used]).mean(), abs=1e-7)


def test_statistics_match_independent_formulas():
    rng = np.random.default_rng(3)
    labels = _phantom()
    values = rng.normal(0.05, 0.02, labels.shape).astype(np.float64)
    region = labels == 1
    x = np.sort(values[region])
    got = region_statistics(values, region, valid=np.ones_like(region), voxel_volume_mm3=1.0)
    n = x.size
    k = int(0.1 * n)                                  # trimmed: drop k lowest and k highest
    assert got["robust_mean"] == pytest.approx(x[k:n - k].mean(), rel=1e-12)
    assert got["median"] == pytest.approx(np.median(x))
    assert got["std"] == pytest.approx(np.sqrt(((x - x.mean()) ** 2).sum() / (n - 1)))
    assert got["p05"] == pytest.approx(np.quantile(x, 0.05))
    assert got["p95"] == pytest.approx(np.quantile(x, 0.95))
    assert got["iqr"] == pytest.approx(np.quantile(x, 0.75) - np.quantile(x, 0.25))
    assert set(STAT_COLUMNS) <= set(got)


def test_robust_mean_resists_outliers():
    labels = _phantom()
    region = labels == 1
    values = np.full(labels.shape, 0.08)
    idx = np.flatnonzero(region)[:10]                  # 10 of 216 voxels: a vein at 0.5 ppm
    values.flat[idx] = 0.5
    got = region_statistics(values, region, valid=np.ones_like(region), voxel_volume_mm3=1.0)
    assert got["mean"] > 0.09
    assert got["robust_mean"] == pytest.approx(0.08)


def test_erosion_and_border_fraction():
    labels = _phantom()
    region = labels == 1                               # 6x6x6 cube
    values = np.where(region, 0.1, 0.0)
    core = ndimage.binary_erosion(region)
    values[region & ~core] = 0.4                       # contaminated shell
    full = region_statistics(values, region, valid=np.ones_like(region), voxel_volume_mm3=1.0)
    eroded = region_statistics(values, region, valid=np.ones_like(region), voxel_volume_mm3=1.0,
                               erode=True)
    assert full["border_fraction"] == pytest.approx((216 - 64) / 216)
    assert eroded["n_voxels"] == 64 and eroded["border_fraction"] == 0.0
    assert eroded["mean"] == pytest.approx(0.1)


def test_empty_region_gives_nan_not_error():
    labels = _phantom()
    values = np.ones(labels.shape)
    rows = regional_statistics(values, labels, {"Dentate_L": [13], "Dentate_R": [14]},
                               voxel_size=(1, 1, 1))
    assert all(r["n_voxels"] == 0 and np.isnan(r["mean"]) for r in rows)


def test_phantom_regions_cover_default_names_and_shape_mismatch():
    regions = phantom_regions()
    assert list(regions) == list(DEFAULT_REGION_LABELS)
    labels = _phantom()
    with pytest.raises(ValueError, match="shape"):
        regional_statistics(np.zeros((3, 3, 3)), labels, regions, voxel_size=(1, 1, 1))
    rows = regional_statistics(np.zeros(labels.shape), labels, regions, voxel_size=(1, 1, 1))
    assert len(rows) == 14 + 7


@pytest.mark.parametrize("erode", [False, True])
def test_each_region_read_on_its_box_equals_the_whole_grid(erode):
    """regional_statistics reads each region on its bounding box; the rows are those of
    region_statistics on the whole grid, for regions split in two, touching the array's
    edge, absent, or given label 0."""
    rng = np.random.default_rng(3)
    labels = np.zeros((30, 26, 22), np.int32)
    labels[0:5, 4:12, 3:9] = 1                        # on the array's edge
    labels[20:30, 18:26, 12:22] = 2                   # in a corner
    labels[8:12, 2:6, 2:6] = 3
    labels[15:18, 20:24, 15:19] = 3                   # label 3 in two places
    labels[rng.random(labels.shape) < 0.02] = 4       # scattered voxels
    values = rng.normal(0.05, 0.1, labels.shape)
    values[rng.random(labels.shape) < 0.01] = np.nan
    mask = rng.random(labels.shape) < 0.9
    regions = {"A_L": [1], "A_R": [2], "B": [3, 4], "Absent": [9], "Background": [0]}
    rows = regional_statistics(values, labels, regions, voxel_size=(1, 1, 2), mask=mask,
                               erode=erode, bilateral=True)
    valid = np.isfinite(values) & mask
    assert [r["region"] for r in rows] == [*regions, "A"]
    for row in rows:
        labs = regions.get(row["region"], [1, 2])
        whole = region_statistics(values, np.isin(labels, labs), valid=valid,
                                  voxel_volume_mm3=2.0, erode=erode)
        for column in STAT_COLUMNS:
            np.testing.assert_equal(row[column], whole[column], err_msg=f"{row} {column}")
