"""Image-based QC measures of one run: pure numpy on arrays in NIfTI voxel order.

Masks are boolean (x, y, z), voxel sizes in mm, susceptibility in ppm. These are
the measurements; :mod:`qsmbids.report.qc_metrics` gathers them per run and decides
which ones raise a QC flag.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

#: region families bright on QSM in adults (iron), used for ``nuclei_contrast_ppm``
IRON_RICH: tuple[str, ...] = ("GlobusPallidus", "Putamen", "SubstantiaNigra", "RedNucleus",
                              "Dentate")


#: the nuclei whose contrast against white matter checks the phase sign: the most
#: iron-rich ones (putamen and dentate are fainter and vary more with age)
SIGN_CHECK_NUCLEI: tuple[str, ...] = ("GlobusPallidus", "SubstantiaNigra", "RedNucleus")

_FACE_NAMES = ("x-", "x+", "y-", "y+", "z-", "z+")


def _as_mask(mask: np.ndarray) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.ndim != 3:
        raise ValueError(f"the brain mask must be 3-D (x, y, z), got shape {mask.shape}")
    return mask > 0 if mask.dtype != bool else mask


def _check_same_shape(name: str, array: np.ndarray, mask: np.ndarray) -> np.ndarray:
    array = np.asarray(array)
    if array.shape[:3] != mask.shape:
        raise ValueError(
            f"{name} has shape {array.shape}, the mask {mask.shape}: both must be on the "
            "same voxel grid"
        )
    return array


def mask_volume_ml(mask: np.ndarray, voxel_size: Sequence[float]) -> float:
    """Volume of a binary mask in ml.

    Parameters
    ----------
    mask
        Boolean (or 0/1) array (x, y, z).
    voxel_size
        Voxel edge lengths in mm.
    """
    mask = _as_mask(mask)
    return float(mask.sum()) * float(np.prod(voxel_size)) / 1000.0


def mask_edge_contact(mask: np.ndarray) -> tuple[float, str]:
    """How much of a mask lies on the outer faces of the image.

    Parameters
    ----------
    mask
        Boolean array (x, y, z).

    Returns
    -------
    fraction : float
        Fraction of mask voxels on at least one outer face (0 when the mask is empty).
    faces : str
        The faces touched, comma-separated from ``x-, x+, y-, y+, z-, z+``.
    """
    mask = _as_mask(mask)
    border = np.zeros(mask.shape, dtype=bool)
    touched = []
    for axis in range(3):
        for side, index in ((0, 0), (1, -1)):
            face = [slice(None)] * 3
            face[axis] = index
            face = tuple(face)
            border[face] = True
            if mask[face].any():
                touched.append(_FACE_NAMES[2 * axis + side])
    total = int(mask.sum())
    fraction = float((mask & border).sum()) / total if total else 0.0
    return fraction, ",".join(touched)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice overlap 2|A∩B| / (|A| + |B|) of two boolean arrays (0 when both are empty)."""
    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    total = int(a.sum()) + int(b.sum())
    return 2.0 * float((a & b).sum()) / total if total else 0.0


def normalized_mutual_information(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None,
                                  bins: int = 32) -> float:
    """Studholme's normalised mutual information (H(A) + H(B)) / H(A, B).

    1 for independent images, 2 for images that determine each other; insensitive to
    the contrast difference between a T1w template and a GRE magnitude.

    Parameters
    ----------
    a, b
        Images on the same grid.
    mask
        Voxels to use (default: all).
    bins
        Histogram bins per image (intensities clipped to the 1st-99th percentile).
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    select = np.ones(a.shape, bool) if mask is None else _as_mask(mask)
    select = select & np.isfinite(a) & np.isfinite(b)
    x, y = a[select], b[select]
    if x.size < 2:
        return float("nan")

    def _clipped(v: np.ndarray) -> np.ndarray:
        lo, hi = np.percentile(v, [1, 99])
        return np.clip(v, lo, hi if hi > lo else lo + 1.0)

    joint, _, _ = np.histogram2d(_clipped(x), _clipped(y), bins=bins)
    p = joint / joint.sum()

    def _entropy(q: np.ndarray) -> float:
        q = q[q > 0]
        return float(-(q * np.log(q)).sum())

    h_joint = _entropy(p)
    if h_joint == 0:
        return float("nan")
    return (_entropy(p.sum(axis=0)) + _entropy(p.sum(axis=1))) / h_joint


def nuclei_contrast(qsm: np.ndarray, mask: np.ndarray, dseg: np.ndarray,
                    region_labels: Mapping[str, Sequence[int]]) -> float | None:
    """Mean susceptibility over the iron-rich nuclei minus the median in the mask (ppm).

    Parameters
    ----------
    qsm
        Susceptibility map, ppm (x, y, z).
    mask
        Brain mask.
    dseg
        Atlas labels in subject space.
    region_labels
        Region name -> label numbers; the regions whose name without ``_L``/``_R`` is
        in :data:`IRON_RICH` are used.

    Returns
    -------
    float or None
        ``None`` when no iron-rich region has a voxel in the mask.
    """
    wanted = [int(v) for name, labels in region_labels.items()
              if _family(name) in IRON_RICH for v in labels]
    mask = _as_mask(mask)
    nuclei = np.isin(dseg, wanted) & mask
    chi = np.asarray(qsm)
    inside, everywhere = chi[nuclei], chi[mask]
    inside, everywhere = inside[np.isfinite(inside)], everywhere[np.isfinite(everywhere)]
    if not inside.size or not everywhere.size:
        return None
    return float(inside.mean() - np.median(everywhere))


def _family(name: str) -> str:
    return name[:-2] if name.endswith(("_L", "_R")) else name


def mask_shape(mask: np.ndarray) -> tuple[int, float, float]:
    """Connected parts and compactness of a mask.

    Parameters
    ----------
    mask
        Boolean array (x, y, z).

    Returns
    -------
    components : int
        Number of face-connected parts.
    largest_fraction : float
        Share of the mask voxels in the largest part (0 when empty).
    box_fill : float
        Voxels of the largest part over the voxels of its bounding box (0 when empty):
        a box-like part is found even when another part lies beside it.
    """
    from scipy import ndimage

    mask = _as_mask(mask)
    total = int(mask.sum())
    if not total:
        return 0, 0.0, 0.0
    labels, n = ndimage.label(mask)
    sizes = np.bincount(labels.ravel())[1:]
    index = int(np.argmax(sizes))
    largest = int(sizes[index])
    box = ndimage.find_objects(labels)[index]
    box_voxels = int(np.prod([s.stop - s.start for s in box]))
    return int(n), largest / total, largest / box_voxels


def chi_flatness(qsm: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """Spread and exact-zero share of a susceptibility map in a mask.

    Returns
    -------
    iqr : float
        Interquartile range of the finite values in the mask, ppm (nan when none).
    zero_fraction : float
        Fraction of mask voxels that are exactly 0 or not finite (0 when the mask is
        empty).
    """
    mask = _as_mask(mask)
    values = _check_same_shape("the QSM", qsm, mask)[mask].astype(np.float64)
    if not values.size:
        return float("nan"), 0.0
    finite = values[np.isfinite(values)]
    zero = float(((values == 0) | ~np.isfinite(values)).mean())
    if not finite.size:
        return float("nan"), zero
    q1, q3 = np.percentile(finite, [25, 75])
    return float(q3 - q1), zero


def iron_nuclei_contrast(qsm: np.ndarray, mask: np.ndarray, dseg: np.ndarray,
                         region_labels: Mapping[str, Sequence[int]],
                         reference_labels: Mapping[str, Sequence[int]] | None = None
                         ) -> tuple[float, str] | None:
    """Mean QSM of :data:`SIGN_CHECK_NUCLEI` minus white matter (or the brain median).

    Parameters
    ----------
    qsm
        Susceptibility map, ppm.
    mask
        Brain mask.
    dseg
        Atlas labels in subject space.
    region_labels
        Region name -> label numbers (``_L``/``_R`` suffixes allowed).
    reference_labels
        The atlas's reference regions; ``WhiteMatter`` is used when it has voxels in
        the mask.

    Returns
    -------
    (float, str) or None
        The difference in ppm and the reference used (``WhiteMatter`` or
        ``brain median``); None when no checked nucleus has a voxel in the mask.
    """
    mask = _as_mask(mask)
    chi = np.asarray(qsm)
    wanted = [int(v) for name, labels in region_labels.items()
              if _family(name) in SIGN_CHECK_NUCLEI for v in labels]
    nuclei = chi[np.isin(dseg, wanted) & mask]
    nuclei = nuclei[np.isfinite(nuclei)]
    if not nuclei.size:
        return None
    white = list((reference_labels or {}).get("WhiteMatter", ()))
    wm = chi[np.isin(dseg, white) & mask] if white else np.empty(0)
    wm = wm[np.isfinite(wm)]
    if wm.size:
        return float(nuclei.mean() - wm.mean()), "WhiteMatter"
    brain = chi[mask]
    brain = brain[np.isfinite(brain)]
    return float(nuclei.mean() - np.median(brain)), "brain median"


def robust_z(values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Robust z-scores 0.6745 (x - median) / MAD (Iglewicz & Hoaglin, 1993).

    NaNs stay NaN. When the MAD is 0 (more than half the values equal), the mean
    absolute deviation x 1.2533 is used instead; when that is 0 too, all scores are 0.

    Parameters
    ----------
    values
        1-D values, e.g. one region's mean susceptibility across participants.

    Returns
    -------
    numpy.ndarray
        float64 scores, same length; |z| > 3.5 is the usual outlier cut-off.
    """
    x = np.asarray(values, dtype=np.float64)
    z = np.full(x.shape, np.nan)
    finite = np.isfinite(x)
    if not finite.any():
        return z
    med = np.median(x[finite])
    dev = np.abs(x[finite] - med)
    mad = np.median(dev)
    if mad > 0:
        z[finite] = 0.6745 * (x[finite] - med) / mad
    else:
        mean_ad = dev.mean()
        z[finite] = (x[finite] - med) / (1.2533 * mean_ad) if mean_ad > 0 else 0.0
    return z


def chi_tail_ratio(qsm: np.ndarray, mask: np.ndarray, voxel_size, depth_mm: float = 6.0
                   ) -> float:
    """Positive over negative tail of a susceptibility map: ``(p99 - median) /
    (median - p1)`` over the mask deeper than ``depth_mm`` (the whole mask when that
    leaves under 1000 voxels, e.g. a crop).

    Veins and the iron-rich nuclei are paramagnetic, so a brain map leans positive:
    3.5 on the Philips 3 T head, 8.5-22 on qsm-forward heads (whose map is the same
    thing made elsewhere); a phase with the wrong handedness inverts it (0.29 on the
    Philips head). The 7 T crop of ``shared/realdata`` (white and grey matter only) sits
    at 1.1 either way.

    Returns
    -------
    float
        The ratio (nan without finite values or spread).
    """
    from qsmbids.recon.masking import distance_to_outside

    mask = _as_mask(mask)
    values = _check_same_shape("the QSM", qsm, mask)
    deep = distance_to_outside(mask, voxel_size) > depth_mm
    region = deep if np.count_nonzero(deep) >= 1000 else mask
    chi = values[region].astype(np.float64)
    chi = chi[np.isfinite(chi)]
    if chi.size < 10:
        return float("nan")
    p01, median, p99 = np.percentile(chi, [1, 50, 99])
    negative = median - p01
    return float((p99 - median) / negative) if negative > 0 else float("nan")
