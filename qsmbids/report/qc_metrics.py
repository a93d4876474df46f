"""Automatic QC metrics of one QSM run, their warnings, and the QC tables.

Pure numpy: every function takes arrays in NIfTI voxel order (x, y, z), voxel sizes
in mm, susceptibility in ppm. :func:`compute_run_qc` gathers the metrics of one run
into a :class:`RunQC`; :func:`qc_warnings` turns them into plain-language warnings
using the limits of :class:`QCThresholds`; :func:`write_qc_tsv` writes per-run rows
(one file per run or one cohort table) that a large cohort can be screened with
without opening any report.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from qsmbids.bids.derivatives import atomic_write_text


@dataclass(frozen=True)
class QCThresholds:
    """Limits above/below which a QC metric raises a warning.

    Attributes
    ----------
    plausible_chi_ppm
        (low, high) susceptibility range (ppm) expected inside the brain; veins and
        calcifications exceed it in a few voxels, streaking in many.
    max_fraction_outside_range
        Largest acceptable fraction of mask voxels outside ``plausible_chi_ppm``.
    max_mask_edge_fraction
        Largest acceptable fraction of mask voxels on the outer faces of the image
        (a brain cut by the field of view, or a mask that leaked into the background).
    min_mask_volume_ml, max_mask_volume_ml
        Plausible brain-mask volume (ml) of an adult head.
    min_template_dice
        Smallest acceptable Dice overlap between the registered template's brain and
        the subject's brain mask (a failed registration scores far lower).
    min_registration_similarity
        Smallest acceptable registration similarity as passed in by the registration
        step (``None``: report it without judging it, its scale depends on the metric).
    max_echo_fit_residual_rad
        Largest acceptable median residual (rad) of the phase-vs-echo-time fit in the
        mask (noise of a usable scan is a few hundredths of a radian).
    max_unwrap_correction_fraction
        Largest acceptable number of unwrapping corrections per mask voxel.
    min_nuclei_contrast_ppm
        Smallest acceptable mean susceptibility of the iron-rich nuclei (globus pallidus,
        putamen, substantia nigra, red nucleus, dentate) above the brain median: adults
        show about 0.1 ppm; atlas labels that miss the nuclei (a failed registration)
        or a failed inversion show about 0.
    """

    plausible_chi_ppm: tuple[float, float] = (-0.3, 0.5)
    max_fraction_outside_range: float = 0.01
    max_mask_edge_fraction: float = 0.001
    min_mask_volume_ml: float = 800.0
    max_mask_volume_ml: float = 2200.0
    min_template_dice: float = 0.80
    min_registration_similarity: float | None = None
    max_echo_fit_residual_rad: float = 0.3
    max_unwrap_correction_fraction: float = 0.02
    min_nuclei_contrast_ppm: float = 0.03


@dataclass(frozen=True)
class RunQC:
    """QC metrics of one run; ``None`` where the input needed was not available.

    Attributes
    ----------
    mask_volume_ml
        Brain-mask volume, ml.
    mask_edge_fraction
        Fraction of mask voxels lying on an outer face of the image.
    mask_edge_faces
        Outer faces the mask touches, e.g. ``"x-,z+"`` (empty when none).
    template_dice
        Dice overlap of the registered template's brain (template > 0) with the mask.
    template_nmi
        Normalised mutual information (Studholme, 1 .. 2) of the registered template
        and the magnitude inside the mask.
    registration_similarity
        Similarity reported by the registration step (metric named by
        ``registration_metric``), passed through.
    registration_metric
        Name of the metric of ``registration_similarity``.
    chi_p01, chi_median, chi_p99
        1st percentile, median, 99th percentile of the QSM in the mask, ppm.
    fraction_chi_outside_range
        Fraction of mask voxels outside the plausible range, see :class:`QCThresholds`.
    echo_fit_residual_median, echo_fit_residual_p95
        Median and 95th percentile of the echo-fit residual in the mask, rad.
    unwrap_corrections
        Number of unwrapping corrections reported by the unwrapping step.
    unwrap_correction_fraction
        ``unwrap_corrections`` per mask voxel.
    regions_missing
        Atlas regions with no voxel inside the mask, comma-separated.
    nuclei_contrast_ppm
        Mean QSM over the iron-rich nuclei's atlas labels minus the QSM median in the
        mask, ppm (see :data:`IRON_RICH`).
    """

    mask_volume_ml: float | None = None
    mask_edge_fraction: float | None = None
    mask_edge_faces: str | None = None
    template_dice: float | None = None
    template_nmi: float | None = None
    registration_similarity: float | None = None
    registration_metric: str | None = None
    chi_p01: float | None = None
    chi_median: float | None = None
    chi_p99: float | None = None
    fraction_chi_outside_range: float | None = None
    echo_fit_residual_median: float | None = None
    echo_fit_residual_p95: float | None = None
    unwrap_corrections: int | None = None
    unwrap_correction_fraction: float | None = None
    regions_missing: str | None = None
    nuclei_contrast_ppm: float | None = None


#: region families bright on QSM in adults (iron), used for ``nuclei_contrast_ppm``
IRON_RICH: tuple[str, ...] = ("GlobusPallidus", "Putamen", "SubstantiaNigra", "RedNucleus",
                              "Dentate")


#: the default QC limits
DEFAULT_THRESHOLDS = QCThresholds()

#: columns of a QC table, in order: identifiers, metrics, warnings
QC_ID_COLUMNS: tuple[str, ...] = ("participant_id", "session_id", "run_id")
QC_METRIC_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(RunQC))
QC_COLUMNS: tuple[str, ...] = (*QC_ID_COLUMNS, *QC_METRIC_COLUMNS, "n_warnings", "warnings")

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
              if (name[:-2] if name.endswith(("_L", "_R")) else name) in IRON_RICH
              for v in labels]
    mask = _as_mask(mask)
    nuclei = np.isin(dseg, wanted) & mask
    chi = np.asarray(qsm)
    inside, everywhere = chi[nuclei], chi[mask]
    inside, everywhere = inside[np.isfinite(inside)], everywhere[np.isfinite(everywhere)]
    if not inside.size or not everywhere.size:
        return None
    return float(inside.mean() - np.median(everywhere))


def compute_run_qc(
    mask: np.ndarray,
    voxel_size: Sequence[float],
    *,
    qsm: np.ndarray | None = None,
    template: np.ndarray | None = None,
    magnitude: np.ndarray | None = None,
    dseg: np.ndarray | None = None,
    region_labels: Mapping[str, Sequence[int]] | None = None,
    echo_fit_residual: np.ndarray | None = None,
    registration_similarity: float | None = None,
    registration_metric: str | None = None,
    unwrap_corrections: int | None = None,
    thresholds: QCThresholds = DEFAULT_THRESHOLDS,
) -> RunQC:
    """Compute the QC metrics of one run from the arrays that are available.

    Parameters
    ----------
    mask
        Brain mask (x, y, z).
    voxel_size
        Voxel edge lengths, mm.
    qsm
        Susceptibility map, ppm, same grid.
    template
        Template image registered to the subject grid (0 outside its brain).
    magnitude
        First-echo magnitude (a.u.), same grid; used with ``template`` for the NMI.
    dseg
        Atlas labels in subject space (int), same grid.
    region_labels
        Region name -> label numbers of ``dseg`` checked for voxels in the mask.
    echo_fit_residual
        Per-voxel residual of the phase-vs-TE fit, rad, same grid.
    registration_similarity, registration_metric
        Similarity value and metric name reported by the registration, passed through.
    unwrap_corrections
        Number of corrections made by the unwrapping step.
    thresholds
        Supplies the plausible susceptibility range.

    Returns
    -------
    RunQC
    """
    mask = _as_mask(mask)
    n_mask = int(mask.sum())
    values: dict[str, object] = {"mask_volume_ml": mask_volume_ml(mask, voxel_size)}
    values["mask_edge_fraction"], values["mask_edge_faces"] = mask_edge_contact(mask)
    if qsm is not None and n_mask:
        chi = _check_same_shape("the QSM", qsm, mask)[mask].astype(np.float64)
        chi = chi[np.isfinite(chi)]
        if chi.size:
            p01, med, p99 = np.percentile(chi, [1, 50, 99])
            lo, hi = thresholds.plausible_chi_ppm
            values.update(chi_p01=float(p01), chi_median=float(med), chi_p99=float(p99),
                          fraction_chi_outside_range=float(((chi < lo) | (chi > hi)).mean()))
    if template is not None:
        template = _check_same_shape("the registered template", template, mask)
        values["template_dice"] = dice(template > 0, mask)
        if magnitude is not None:
            magnitude = _check_same_shape("the magnitude", magnitude, mask)
            if magnitude.ndim == 4:
                magnitude = magnitude[..., 0]
            values["template_nmi"] = normalized_mutual_information(template, magnitude, mask)
    if dseg is not None and region_labels:
        dseg = _check_same_shape("the atlas labels", dseg, mask)
        inside = np.unique(dseg[mask])
        missing = [name for name, labels in region_labels.items()
                   if not np.isin(np.asarray(labels), inside).any()]
        values["regions_missing"] = ",".join(missing)
        if qsm is not None and n_mask:
            values["nuclei_contrast_ppm"] = nuclei_contrast(qsm, mask, dseg, region_labels)
    if echo_fit_residual is not None and n_mask:
        res = _check_same_shape("the echo-fit residual", echo_fit_residual, mask)[mask]
        res = res[np.isfinite(res)]
        if res.size:
            values["echo_fit_residual_median"] = float(np.median(res))
            values["echo_fit_residual_p95"] = float(np.percentile(res, 95))
    if registration_similarity is not None:
        values["registration_similarity"] = float(registration_similarity)
        values["registration_metric"] = registration_metric
    if unwrap_corrections is not None:
        values["unwrap_corrections"] = int(unwrap_corrections)
        values["unwrap_correction_fraction"] = int(unwrap_corrections) / n_mask if n_mask else 0.0
    return RunQC(**values)


@dataclass(frozen=True)
class QCWarning:
    """One QC finding: a short code for tables and a sentence for people."""

    code: str
    message: str


def qc_warnings(qc: RunQC, thresholds: QCThresholds = DEFAULT_THRESHOLDS) -> list[QCWarning]:
    """Plain-language warnings for the metrics of ``qc`` that break ``thresholds``."""
    t = thresholds
    out: list[QCWarning] = []
    if qc.mask_volume_ml is not None:
        if qc.mask_volume_ml == 0:
            out.append(QCWarning("mask_empty", "The brain mask is empty."))
        elif not t.min_mask_volume_ml <= qc.mask_volume_ml <= t.max_mask_volume_ml:
            out.append(QCWarning(
                "mask_volume",
                f"The brain mask is {qc.mask_volume_ml:.0f} ml, outside the expected "
                f"{t.min_mask_volume_ml:.0f}-{t.max_mask_volume_ml:.0f} ml: check that it "
                "neither cuts brain off nor includes skull or background."))
    if qc.mask_edge_fraction is not None and qc.mask_edge_fraction > t.max_mask_edge_fraction:
        out.append(QCWarning(
            "mask_edge",
            f"The brain mask touches the edge of the image ({qc.mask_edge_faces}; "
            f"{100 * qc.mask_edge_fraction:.2f}% of its voxels): the brain may be cut by the "
            "field of view or the mask may have leaked into the background."))
    if qc.template_dice is not None and qc.template_dice < t.min_template_dice:
        out.append(QCWarning(
            "registration",
            f"The registered template overlaps the brain mask poorly (Dice "
            f"{qc.template_dice:.2f} < {t.min_template_dice:.2f}): the registration has "
            "probably failed and the regional values are not trustworthy."))
    if (qc.registration_similarity is not None and t.min_registration_similarity is not None
            and qc.registration_similarity < t.min_registration_similarity):
        out.append(QCWarning(
            "registration_similarity",
            f"The registration similarity ({qc.registration_metric or 'metric'} "
            f"{qc.registration_similarity:.3g}) is below {t.min_registration_similarity:.3g}: "
            "check the template edges over the subject."))
    if (qc.nuclei_contrast_ppm is not None
            and qc.nuclei_contrast_ppm < t.min_nuclei_contrast_ppm):
        out.append(QCWarning(
            "nuclei_contrast",
            f"The atlas's iron-rich nuclei (globus pallidus, putamen, substantia nigra, red "
            f"nucleus, dentate) are only {qc.nuclei_contrast_ppm:+.3f} ppm above the brain "
            f"median (adults: about +0.1; limit {t.min_nuclei_contrast_ppm:g}): the atlas "
            "labels probably miss the nuclei (failed registration) or the QSM failed; "
            "check the zoomed views (young children have little iron)."))
    if qc.regions_missing:
        out.append(QCWarning(
            "regions_missing",
            f"Atlas regions with no voxel inside the brain mask: {qc.regions_missing}."))
    if (qc.fraction_chi_outside_range is not None
            and qc.fraction_chi_outside_range > t.max_fraction_outside_range):
        lo, hi = t.plausible_chi_ppm
        out.append(QCWarning(
            "chi_extreme",
            f"{100 * qc.fraction_chi_outside_range:.1f}% of brain voxels have susceptibility "
            f"outside {lo:g}..{hi:g} ppm (1st-99th percentile {qc.chi_p01:.2f}..{qc.chi_p99:.2f}"
            " ppm): look for streaking, unwrapping errors or background field left over."))
    if (qc.echo_fit_residual_median is not None
            and qc.echo_fit_residual_median > t.max_echo_fit_residual_rad):
        out.append(QCWarning(
            "echo_fit",
            f"The phase does not follow a straight line over the echoes (median residual "
            f"{qc.echo_fit_residual_median:.2f} rad > {t.max_echo_fit_residual_rad:g} rad): "
            "expect noise, motion or unwrapping errors in the field map."))
    if (qc.unwrap_correction_fraction is not None
            and qc.unwrap_correction_fraction > t.max_unwrap_correction_fraction):
        out.append(QCWarning(
            "unwrapping",
            f"Unwrapping corrected {qc.unwrap_corrections} voxels "
            f"({100 * qc.unwrap_correction_fraction:.1f}% of the brain): check the field map "
            "for wrap boundaries and jumps."))
    return out


def _format(value: object) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.6g}"
    return str(value)


def qc_row(participant_id: str, session_id: str | None, run_id: str, qc: RunQC,
           warnings: Iterable[QCWarning] = ()) -> dict[str, str]:
    """One QC table row (all values as text, ``n/a`` where missing).

    Parameters
    ----------
    participant_id
        ``sub-<label>``.
    session_id
        ``ses-<label>`` or ``None``.
    run_id
        Name of the run's entities, e.g. ``sub-01_ses-1_run-1``.
    qc
        Metrics of the run.
    warnings
        Findings of :func:`qc_warnings` (and any passed in by the pipeline).
    """
    codes = [w.code for w in warnings]
    row = {"participant_id": participant_id, "session_id": _format(session_id),
           "run_id": run_id}
    row.update({name: _format(value) for name, value in asdict(qc).items()})
    row["n_warnings"] = str(len(codes))
    row["warnings"] = ",".join(codes)
    return row


def write_qc_tsv(rows: Iterable[Mapping[str, str]], path: str | os.PathLike) -> Path:
    """Write QC rows (see :func:`qc_row`) as a tab-separated table, atomically.

    Used for one run's QC file and for the cohort QC table alike.
    """
    lines = ["\t".join(QC_COLUMNS)]
    for row in rows:
        missing = [c for c in QC_COLUMNS if c not in row]
        if missing:
            raise ValueError(f"QC row lacks columns {missing}")
        lines.append("\t".join(str(row[c]) for c in QC_COLUMNS))
    return atomic_write_text(path, "\n".join(lines) + "\n")


def read_qc_tsv(path: str | os.PathLike) -> list[dict[str, str]]:
    """Read a QC table written by :func:`write_qc_tsv`."""
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def write_cohort_qc_tsv(run_tables: Iterable[str | os.PathLike],
                        path: str | os.PathLike) -> Path:
    """Concatenate per-run QC tables into one cohort QC table, sorted by identifiers."""
    rows = [row for table in run_tables for row in read_qc_tsv(table)]
    rows.sort(key=lambda r: tuple(r[c] for c in QC_ID_COLUMNS))
    return write_qc_tsv(rows, path)


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
