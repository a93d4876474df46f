"""Regional statistics of a parametric map (QSM in ppm, R2* in 1/s) over labelled regions.

Pure array code: no files. Voxels count when they lie inside the region AND
inside the reconstruction mask AND hold a finite value. A voxel is never dropped
because its value is 0 (a susceptibility of exactly 0 ppm is a valid value).

Robust mean: the 10 % trimmed mean (the lowest and highest 10 % of the region's
values are discarded, the rest averaged), which resists outliers such as
streaks, veins or calcifications crossing a region.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from scipy import ndimage, stats

from qsmbids.atlas.regions import group_bilateral, hemisphere

#: fraction cut from each tail for the robust (trimmed) mean
TRIM_FRACTION = 0.10

#: statistic columns, in table order
STAT_COLUMNS: tuple[str, ...] = (
    "n_voxels", "volume_mm3", "mean", "median", "std", "iqr", "p05", "p95", "robust_mean",
    "coverage", "border_fraction",
)


def _values_stats(values: np.ndarray) -> dict[str, float]:
    if values.size == 0:
        return {k: float("nan") for k in
                ("mean", "median", "std", "iqr", "p05", "p95", "robust_mean")}
    p05, q1, median, q3, p95 = np.percentile(values, [5, 25, 50, 75, 95])
    return {
        "mean": float(np.mean(values, dtype=np.float64)),
        "median": float(median),
        "std": float(np.std(values, ddof=1, dtype=np.float64)) if values.size > 1 else 0.0,
        "iqr": float(q3 - q1),
        "p05": float(p05),
        "p95": float(p95),
        "robust_mean": float(stats.trim_mean(values.astype(np.float64), TRIM_FRACTION)),
    }


def region_statistics(values: np.ndarray, region: np.ndarray, *, valid: np.ndarray,
                      voxel_volume_mm3: float, erode: bool = False) -> dict[str, float]:
    """Statistics of ``values`` over one region.

    Parameters
    ----------
    values
        Map, (x, y, z), any units (ppm for QSM).
    region
        bool, (x, y, z): the region's voxels (from the label image).
    valid
        bool, (x, y, z): inside the reconstruction mask with a finite value.
    voxel_volume_mm3
        Volume of one voxel, mm3.
    erode
        Compute the statistics over the region eroded by one voxel (6-connected),
        a guard against partial-volume contamination from neighbours.

    Returns
    -------
    dict
        ``n_voxels`` and ``volume_mm3`` of the voxels used; ``mean``, ``median``,
        ``std`` (sample, ddof=1), ``iqr``, ``p05``, ``p95``, ``robust_mean``
        (10 % trimmed mean) in the units of ``values``; ``coverage`` = used voxels /
        region voxels; ``border_fraction`` = fraction of used voxels that touch a
        voxel outside the region (6-neighbourhood).
    """
    core = ndimage.binary_erosion(region, border_value=0)
    used = (core if erode else region) & valid
    n = int(used.sum())
    n_region = int(region.sum())
    out: dict[str, float] = {"n_voxels": n, "volume_mm3": n * voxel_volume_mm3}
    out.update(_values_stats(values[used]))
    out["coverage"] = n / n_region if n_region else float("nan")
    out["border_fraction"] = float((used & ~core).sum() / n) if n else float("nan")
    return out


def regional_statistics(
    values: np.ndarray,
    labels: np.ndarray,
    regions: Mapping[str, Sequence[int]],
    *,
    voxel_size: Sequence[float],
    mask: np.ndarray | None = None,
    erode: bool = False,
    bilateral: bool = True,
) -> list[dict[str, object]]:
    """Statistics of a map for each region (left, right and bilateral).

    Parameters
    ----------
    values
        Map, (x, y, z): QSM in ppm or R2* in 1/s.
    labels
        Integer label image on the same grid, (x, y, z).
    regions
        Region name -> label numbers (``Atlas.regions``, optionally with
        references); ``_L``/``_R`` pairs also give a bilateral row when ``bilateral``.
    voxel_size
        Voxel size in mm, (3,).
    mask
        Reconstruction mask, bool (x, y, z); voxels outside are excluded. ``None``:
        all voxels. Non-finite values are always excluded; zeros never are.
    erode
        Use the regions eroded by one voxel (see :func:`region_statistics`).
    bilateral
        Add one row per left/right pair over the union of both sides.

    Returns
    -------
    list of dict
        One record per region: ``region``, ``hemisphere`` (``L``, ``R`` or
        ``bilateral``) and the columns of :data:`STAT_COLUMNS`.
    """
    values = np.asarray(values)
    labels = np.asarray(labels)
    if values.shape != labels.shape:
        raise ValueError(f"map shape {values.shape} differs from label shape {labels.shape}")
    valid = np.isfinite(values)
    if mask is not None:
        mask = np.asarray(mask)
        if mask.shape != values.shape:
            raise ValueError(f"mask shape {mask.shape} differs from map shape {values.shape}")
        valid &= mask.astype(bool)
    voxel_volume = float(np.prod(np.asarray(voxel_size, dtype=np.float64)))
    todo: list[tuple[str, str, Sequence[int]]] = [
        (name, hemisphere(name) or "bilateral", labs) for name, labs in regions.items()
    ]
    if bilateral:
        todo += [(name, "bilateral", labs) for name, labs in group_bilateral(dict(regions)).items()
                 if name not in regions]
    boxes = _label_boxes(labels)
    records = []
    for name, side, labs in todo:
        # on the region's bounding box grown by one voxel: the same voxels, and the same
        # erosion (the array's own edge stays an edge), at a fraction of the whole grid's
        # cost (24 regions of a 1 mm head: 2.8 -> 0.1 s)
        box = _region_box(boxes, labs, labels.shape)
        region = np.isin(labels[box], np.asarray(labs))
        row: dict[str, object] = {"region": name, "hemisphere": side}
        row.update(region_statistics(values[box], region, valid=valid[box],
                                     voxel_volume_mm3=voxel_volume, erode=erode))
        records.append(row)
    return records


def _label_boxes(labels: np.ndarray) -> list[tuple[slice, ...] | None]:
    """Bounding box of each positive label (index ``label - 1``; None where absent)."""
    if labels.size == 0 or not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0:
        return []
    return ndimage.find_objects(labels)


def _region_box(boxes: list[tuple[slice, ...] | None], labs: Sequence[int],
                shape: tuple[int, ...]) -> tuple[slice, ...]:
    """The box holding every voxel of ``labs``, grown by one voxel within ``shape``: the
    whole grid when a label has no box (label 0, non-integer or negative labels); a
    one-voxel box when none of them occurs."""
    found = []
    for label in labs:
        label = int(label)
        if label < 1 or not boxes:
            return tuple(slice(0, n) for n in shape)
        if label <= len(boxes) and boxes[label - 1] is not None:
            found.append(boxes[label - 1])
    if not found:
        return tuple(slice(0, min(n, 1)) for n in shape)
    return tuple(slice(max(min(b[a].start for b in found) - 1, 0),
                       min(max(b[a].stop for b in found) + 1, shape[a]))
                 for a in range(len(shape)))

