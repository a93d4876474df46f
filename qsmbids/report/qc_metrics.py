"""Automatic QC metrics of one QSM run and their warnings (QC flags).

Pure numpy (the image measures live in :mod:`qsmbids.stats.qc_images`): arrays in
NIfTI voxel order (x, y, z), voxel sizes in mm, susceptibility in ppm.
:func:`compute_run_qc` gathers the metrics of one run into a :class:`RunQC`;
:func:`qc_warnings` turns them into plain-language warnings using the limits of
:class:`qsmbids.report.qc_thresholds.QCThresholds` (the one place each threshold is
defined, with the reason for its value). The QC tables are written by
:mod:`qsmbids.report.qc_tables`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from qsmbids.recon.veins import MAX_MEASURE_VOXEL_MM
from qsmbids.report.qc_thresholds import DEFAULT_THRESHOLDS, QCThresholds
from qsmbids.stats.qc_images import (  # noqa: F401  (re-exported: part of this API)
    IRON_RICH,
    SIGN_CHECK_NUCLEI,
    _as_mask,
    _check_same_shape,
    chi_flatness,
    chi_tail_ratio,
    dice,
    iron_nuclei_contrast,
    mask_edge_contact,
    mask_shape,
    mask_volume_ml,
    normalized_mutual_information,
    nuclei_contrast,
    robust_z,
)


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
    chi_refinement_r_before, chi_refinement_r_after
        Correlation of the atlas's susceptibility template with the map around the
        deep grey nuclei through the anatomical registration and after the
        susceptibility refinement (``--registration-contrast anatomy+chi``).
    chi_p01, chi_median, chi_p99
        1st percentile, median, 99th percentile of the QSM in the mask, ppm.
    fraction_chi_outside_range
        Fraction of mask voxels outside the plausible range, see :class:`QCThresholds`.
    echo_fit_residual_median, echo_fit_residual_p95
        Median and 95th percentile of the echo-fit residual in the mask, rad.
    unwrap_residual_wraps
        Neighbouring voxel pairs whose unwrapped phase still differs by more than pi
        (summed over echoes), reported by the field estimation.
    unwrap_residual_wrap_fraction
        ``unwrap_residual_wraps`` per mask voxel.
    regions_missing
        Atlas regions with no voxel inside the mask, comma-separated.
    nuclei_contrast_ppm
        Mean QSM over the iron-rich nuclei's atlas labels minus the QSM median in the
        mask, ppm (see :data:`IRON_RICH`).
    chi_iqr
        Interquartile range of the QSM in the mask, ppm.
    chi_zero_fraction
        Fraction of mask voxels where the QSM is exactly 0 or not finite.
    chi_tail_ratio
        The map's positive over its negative tail
        (:func:`qsmbids.stats.qc_images.chi_tail_ratio`; the phase-sign check that
        needs no atlas).
    mask_components, mask_largest_fraction
        Number of connected parts of the mask (face connectivity) and the share of the
        mask voxels in the largest.
    mask_box_fill
        Mask voxels over the voxels of the mask's bounding box.
    iron_nuclei_minus_reference_ppm
        Mean QSM over globus pallidus, substantia nigra and red nucleus minus the mean
        over white matter (when the atlas has it) or the median in the mask, ppm (see
        :data:`SIGN_CHECK_NUCLEI`).
    sign_check_reference
        ``WhiteMatter`` or ``brain median``: what the nuclei were compared with.
    phase_units_guessed
        True when the phase units were inferred from the values alone (no sidecar
        ``Units``, no Siemens integers, no full-span radians, no ``--phase-units``).
    phase_units_warning
        Why the phase scaling is doubtful (from the scaling step), if it is.
    venous_oef, venous_voxels
        Oxygen extraction fraction from the large veins and the centre-line voxels it
        was measured on (NaN and 0 when no vein was wide enough).
    """

    mask_volume_ml: float | None = None
    mask_edge_fraction: float | None = None
    mask_edge_faces: str | None = None
    template_dice: float | None = None
    template_nmi: float | None = None
    registration_similarity: float | None = None
    registration_metric: str | None = None
    chi_refinement_r_before: float | None = None
    chi_refinement_r_after: float | None = None
    chi_p01: float | None = None
    chi_median: float | None = None
    chi_p99: float | None = None
    fraction_chi_outside_range: float | None = None
    echo_fit_residual_median: float | None = None
    echo_fit_residual_p95: float | None = None
    unwrap_residual_wraps: int | None = None
    unwrap_residual_wrap_fraction: float | None = None
    regions_missing: str | None = None
    nuclei_contrast_ppm: float | None = None
    chi_iqr: float | None = None
    chi_zero_fraction: float | None = None
    chi_tail_ratio: float | None = None
    mask_components: int | None = None
    mask_largest_fraction: float | None = None
    venous_oef: float | None = None
    venous_voxels: int | None = None
    mask_box_fill: float | None = None
    iron_nuclei_minus_reference_ppm: float | None = None
    sign_check_reference: str | None = None
    phase_units_guessed: bool | None = None
    phase_units_warning: str | None = None


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
    echo_fit_residual_stats: tuple[float, float] | None = None,
    template_overlap: tuple[float, float | None] | None = None,
    registration_similarity: float | None = None,
    registration_metric: str | None = None,
    refinement_correlation: tuple[float, float] | None = None,
    unwrap_residual_wraps: int | None = None,
    reference_labels: Mapping[str, Sequence[int]] | None = None,
    phase_units_guessed: bool | None = None,
    phase_units_warning: str | None = None,
    venous: tuple[float | None, int | None] | None = None,
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
    echo_fit_residual_stats
        (median, 95th percentile) of that residual in the mask, rad, as the field
        estimation node reports them; used when ``echo_fit_residual`` is not given.
    template_overlap
        (Dice of the template's brain with the mask, NMI of the template with the
        magnitude or None) as the registration node reports them; used when
        ``template`` is not given.
    registration_similarity, registration_metric
        Similarity value and metric name reported by the registration, passed through.
    refinement_correlation
        (before, after) correlations reported by the susceptibility refinement.
    unwrap_residual_wraps
        Wraps the unwrapping left (see :class:`RunQC`).
    reference_labels
        The atlas's reference regions (``WhiteMatter`` for the phase-sign check).
    phase_units_guessed, phase_units_warning
        From the phase scaling step (``PhaseUnitsGuessed``, ``PhaseUnitsWarning``).
    venous
        (OEF, centre-line voxels) from the run's venous table, if it has one; ignored
        for voxels coarser than :data:`qsmbids.recon.veins.MAX_MEASURE_VOXEL_MM`,
        where the OEF is not measured.
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
    (values["mask_components"], values["mask_largest_fraction"],
     values["mask_box_fill"]) = mask_shape(mask)
    values["phase_units_guessed"] = phase_units_guessed
    values["phase_units_warning"] = phase_units_warning
    # above MAX_MEASURE_VOXEL_MM the OEF is not measured (the venous table says why):
    # not a QC finding
    if venous is not None and float(np.mean(voxel_size)) <= MAX_MEASURE_VOXEL_MM:
        values["venous_oef"], values["venous_voxels"] = venous
    if qsm is not None and n_mask:
        values["chi_iqr"], values["chi_zero_fraction"] = chi_flatness(qsm, mask)
        values["chi_tail_ratio"] = chi_tail_ratio(qsm, mask, voxel_size)
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
    elif template_overlap is not None:
        values["template_dice"] = float(template_overlap[0])
        if template_overlap[1] is not None:
            values["template_nmi"] = float(template_overlap[1])
    if dseg is not None and region_labels:
        dseg = _check_same_shape("the atlas labels", dseg, mask)
        inside = np.unique(dseg[mask])
        missing = [name for name, labels in region_labels.items()
                   if not np.isin(np.asarray(labels), inside).any()]
        values["regions_missing"] = ",".join(missing)
        if qsm is not None and n_mask:
            values["nuclei_contrast_ppm"] = nuclei_contrast(qsm, mask, dseg, region_labels)
            sign = iron_nuclei_contrast(qsm, mask, dseg, region_labels, reference_labels)
            if sign is not None:
                (values["iron_nuclei_minus_reference_ppm"],
                 values["sign_check_reference"]) = sign
    if echo_fit_residual is not None and n_mask:
        res = _check_same_shape("the echo-fit residual", echo_fit_residual, mask)[mask]
        res = res[np.isfinite(res)]
        if res.size:
            values["echo_fit_residual_median"] = float(np.median(res))
            values["echo_fit_residual_p95"] = float(np.percentile(res, 95))
    elif echo_fit_residual_stats is not None:
        (values["echo_fit_residual_median"],
         values["echo_fit_residual_p95"]) = (float(v) for v in echo_fit_residual_stats)
    if registration_similarity is not None:
        values["registration_similarity"] = float(registration_similarity)
        values["registration_metric"] = registration_metric
    if refinement_correlation is not None:
        (values["chi_refinement_r_before"],
         values["chi_refinement_r_after"]) = (float(v) for v in refinement_correlation)
    if unwrap_residual_wraps is not None:
        values["unwrap_residual_wraps"] = int(unwrap_residual_wraps)
        values["unwrap_residual_wrap_fraction"] = (int(unwrap_residual_wraps) / n_mask
                                                   if n_mask else 0.0)
    return RunQC(**values)


def _venous_warnings(qc: RunQC, t: QCThresholds) -> list[QCWarning]:
    """The ``venous_oef`` flag: no vein wide enough to measure, or an implausible OEF."""
    if qc.venous_voxels is None and qc.venous_oef is None:
        return []
    oef = qc.venous_oef
    if not qc.venous_voxels or oef is None or not np.isfinite(oef):
        return [QCWarning(
            "venous_oef", "No vein was wide enough to measure its susceptibility, so there "
            "is no OEF: with voxels above about 1 mm the veins' peaks are lowered by "
            "partial volume; check the vein mask (*_desc-veins_mask) and the venogram.")]
    if not t.min_venous_oef <= oef <= t.max_venous_oef:
        return [QCWarning(
            "venous_oef", f"The oxygen extraction fraction from the veins is {oef:.2f}, "
            f"outside the plausible {t.min_venous_oef:g}-{t.max_venous_oef:g}: check the "
            "haematocrit (participants.tsv or --hematocrit), the vein mask and venogram "
            "(too few or too thin veins, voxels above about 1 mm), and the phase units and "
            "field strength (a map off in scale).")]
    return []


def format_qc_value(value: object) -> str:
    """A QC value as one line of text (``n/a`` for None and NaN; floats to 6 digits)."""
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.6g}"
    return " ".join(str(value).split())  # one line, no tabs: safe in a TSV cell


@dataclass(frozen=True)
class QCWarning:
    """One QC finding: a short code for tables and a sentence for people."""

    code: str
    message: str


#: the QC flags that mean the susceptibility values themselves are not to be trusted
#: (also written as ``QCFlags`` into the Chimap sidecars and the run log)
CRITICAL_CODES: tuple[str, ...] = ("chi_flat", "phase_units_guessed", "phase_units_doubtful",
                                   "nuclei_inverted", "phase_sign_suspect", "mask_empty",
                                   "mask_volume",
                                   "mask_fragmented", "mask_box", "mask_edge",
                                   "registration", "echo_fit", "unwrapping", "venous_oef")


def qc_warnings(qc: RunQC, thresholds: QCThresholds = DEFAULT_THRESHOLDS) -> list[QCWarning]:
    """Plain-language warnings for the metrics of ``qc`` that break ``thresholds``.

    The one place that decides each QC flag; every message says what to check or try.
    """
    t = thresholds
    out: list[QCWarning] = []
    partial_fov = (qc.mask_edge_fraction is not None
                   and qc.mask_edge_fraction > t.max_mask_edge_fraction)
    if qc.mask_volume_ml is not None:
        if qc.mask_volume_ml == 0:
            out.append(QCWarning("mask_empty", "The brain mask is empty: check the magnitude "
                                 "images, or pass a mask with --mask."))
        # a field of view that cuts the brain only makes the mask smaller: then only
        # the upper limit is judged
        elif (qc.mask_volume_ml > t.max_mask_volume_ml
              or (not partial_fov and qc.mask_volume_ml < t.min_mask_volume_ml)):
            cut = " (too large even for a cut field of view)" if partial_fov else ""
            out.append(QCWarning(
                "mask_volume",
                f"The brain mask is {qc.mask_volume_ml:.0f} ml, outside the expected "
                f"{t.min_mask_volume_ml:.0f}-{t.max_mask_volume_ml:.0f} ml of an adult "
                f"brain{cut}: check that it neither cuts brain off nor includes skull or "
                "background; pass a mask with --mask if it does."))
    if partial_fov:
        out.append(QCWarning(
            "mask_edge",
            f"The brain mask touches the edge of the image ({qc.mask_edge_faces}; "
            f"{100 * qc.mask_edge_fraction:.2f}% of its voxels): the brain may be cut by the "
            "field of view (a partial-coverage or cropped scan: then only an oversized "
            "mask is flagged, compactness is not checked, and background-field removal "
            "near the cut is less reliable) or the mask may have leaked into the "
            "background."))
    if (qc.mask_largest_fraction is not None and qc.mask_components
            and qc.mask_largest_fraction < t.min_mask_largest_fraction):
        out.append(QCWarning(
            "mask_fragmented",
            f"The brain mask falls into {qc.mask_components} separate parts; the largest "
            f"holds only {100 * qc.mask_largest_fraction:.0f}% of it (expected at least "
            f"{100 * t.min_mask_largest_fraction:.0f}%): it probably includes noise or "
            "scalp, or a mask given with --mask is in several pieces (every piece is "
            "reconstructed); check the mask outline, or pass a mask in one piece with "
            "--mask."))
    if (not partial_fov and qc.mask_box_fill is not None
            and qc.mask_box_fill > t.max_mask_box_fill):
        out.append(QCWarning(
            "mask_box",
            f"The brain mask fills {100 * qc.mask_box_fill:.0f}% of its bounding box (a brain "
            f"fills about 50-60%, limit {100 * t.max_mask_box_fill:.0f}%): it is box-like and "
            "probably includes background; check the mask outline, or pass a mask with "
            "--mask."))
    if qc.chi_zero_fraction is not None and (
            qc.chi_zero_fraction > t.max_chi_zero_fraction
            or (qc.chi_iqr is not None and not qc.chi_iqr >= t.min_chi_iqr_ppm)):
        out.append(QCWarning(
            "chi_flat",
            f"The susceptibility map is flat: interquartile range "
            f"{format_qc_value(qc.chi_iqr)} ppm in the brain (in vivo 0.02-0.08; limit "
            f"{t.min_chi_iqr_ppm:g}) and {100 * qc.chi_zero_fraction:.1f}% of its voxels "
            "exactly 0 or not finite. The usual cause is a phase read in the wrong units "
            "(e.g. arbitrary units taken as radians): check the phase-scaling rule in the "
            "Chimap sidecar and try --phase-units rad|siemens|arbitrary. A slab of a few "
            "slices (the mask then touches the first and last slice) is also too thin for "
            "the dipole inversion: QSM needs a few centimetres of coverage."))
    if qc.phase_units_guessed:
        out.append(QCWarning(
            "phase_units_guessed",
            "The phase units were guessed from the values (no sidecar Units, no Siemens "
            "integers, not filling [-pi, pi)): the range was rescaled to one period. Check "
            "the phase-scaling rule in the Chimap sidecar; set Units in the phase sidecar or "
            "pass --phase-units rad|siemens|arbitrary to make it explicit."))
    if qc.phase_units_warning:
        out.append(QCWarning("phase_units_doubtful",
                             f"Phase scaling is doubtful: {qc.phase_units_warning}."))
    out += _venous_warnings(qc, t)
    inverted = (qc.iron_nuclei_minus_reference_ppm is not None
                and qc.iron_nuclei_minus_reference_ppm < t.inverted_nuclei_ppm)
    if inverted:
        out.append(QCWarning(
            "nuclei_inverted",
            f"The globus pallidus, substantia nigra and red nucleus are "
            f"{qc.iron_nuclei_minus_reference_ppm:+.3f} ppm against the "
            f"{qc.sign_check_reference} (iron makes them +0.1 to +0.2 ppm above white "
            f"matter; limit {t.inverted_nuclei_ppm:+g}): the phase sign may be inverted; "
            "rerun with --phase-sign -1 (or 1 if you passed -1) after checking the "
            "converter (the handedness of the phase it wrote), then the atlas registration "
            "in the zoomed views."))
    if (qc.chi_tail_ratio is not None and math.isfinite(qc.chi_tail_ratio)
            and qc.chi_tail_ratio < t.min_chi_tail_ratio):
        out.append(QCWarning(
            "phase_sign_suspect",
            f"The map leans negative: its 99th percentile lies {qc.chi_tail_ratio:.2f} times "
            f"as far above the median as the 1st below it (brain maps lean positive, "
            f"3.5-20, as veins and the iron-rich nuclei are paramagnetic; limit "
            f"{t.min_chi_tail_ratio:g}): the phase sign is probably inverted. If the veins "
            "and nuclei look dark, rerun with --phase-sign -1 (or 1 if you passed -1)."))
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
    if (qc.chi_refinement_r_after is not None and qc.chi_refinement_r_before is not None
            and qc.chi_refinement_r_after < qc.chi_refinement_r_before):
        out.append(QCWarning(
            "chi_refinement",
            f"The susceptibility refinement of the nuclei lowered the match of the atlas's "
            f"susceptibility template with the map ({qc.chi_refinement_r_before:.2f} -> "
            f"{qc.chi_refinement_r_after:.2f}): the map's nuclei are probably not where a "
            "brain's are (artefacts, wrong phase sign, lesions). Check the midbrain and "
            "dentate zooms; --registration-contrast anatomy skips the refinement."))
    if (qc.nuclei_contrast_ppm is not None and not inverted
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
    if (qc.unwrap_residual_wrap_fraction is not None
            and qc.unwrap_residual_wrap_fraction > t.max_unwrap_residual_wrap_fraction):
        out.append(QCWarning(
            "unwrapping",
            f"The unwrapping left {qc.unwrap_residual_wraps} phase steps of 2 pi inside the "
            f"brain ({qc.unwrap_residual_wrap_fraction:.3f} per voxel): check the field map "
            "for wrap boundaries and jumps; try --unwrapping laplacian."))
    return out


def critical_flags(codes: Iterable[str]) -> list[str]:
    """The codes among ``codes`` that are in :data:`CRITICAL_CODES`, in their order."""
    return [c for c in codes if c in CRITICAL_CODES]
