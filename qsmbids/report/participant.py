"""The participant QC report: ``OUTPUT_DIR/sub-X.html`` with figures in ``sub-X/figures/``.

The caller (the pipeline's run loop or one nipype node) describes each run with a
:class:`RunReportInputs` (explicit file paths or in-memory NIfTI images, and the QC
values the pipeline steps reported) and calls :func:`write_participant_report` once
per participant. The page references its figures by relative paths, so the HTML file
and the ``sub-X/figures`` folder open from a ``file://`` URL with no network.
"""

from __future__ import annotations

import csv
import datetime as _dt
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from qsmbids.atlas.regions import bilateral_name
from qsmbids.atomic import atomic_write_text
from qsmbids.report import figures as fg
from qsmbids.report import html as hp
from qsmbids.report.qc_metrics import (
    QCWarning,
    RunQC,
    compute_run_qc,
    critical_flags,
    qc_warnings,
)
from qsmbids.report.qc_tables import qc_row, write_qc_tsv
from qsmbids.report.qc_thresholds import DEFAULT_THRESHOLDS, QCThresholds
from qsmbids.report.run_inputs import ImageSource, RunReportInputs

__all__ = ["ParticipantReport", "RunReport", "RunReportInputs", "participant_qc_tsv",
           "write_participant_report"]

#: ``desc`` of the bare basal-ganglia slice the cohort report shows for every run
THUMBNAIL_DESC = "bgthumb"

#: zoomed views: (file key, title, region families, half width of the view in mm)
ZOOMS: tuple[tuple[str, str, tuple[str, ...], float], ...] = (
    ("zoomBasalGanglia", "Basal ganglia and thalamus",
     ("Caudate", "Putamen", "GlobusPallidus", "Thalamus"), 42.0),
    ("zoomMidbrain", "Substantia nigra, red and subthalamic nuclei",
     ("SubstantiaNigra", "RedNucleus", "SubthalamicNucleus"), 24.0),
    ("zoomDentate", "Dentate nuclei", ("Dentate",), 32.0),
)


@dataclass(frozen=True)
class RunReport:
    """What the report found for one run."""

    run_id: str
    qc: RunQC
    warnings: tuple[QCWarning, ...]
    qc_row: dict[str, str]
    figures: tuple[Path, ...]


@dataclass(frozen=True)
class ParticipantReport:
    """Result of :func:`write_participant_report`."""

    html: Path
    runs: tuple[RunReport, ...]

    @property
    def figures(self) -> tuple[Path, ...]:
        """All figure files written."""
        return tuple(f for run in self.runs for f in run.figures)


def participant_qc_tsv(output_dir: str | os.PathLike, participant_id: str) -> Path:
    """Default QC table of a participant: ``OUTPUT_DIR/sub-X/figures/sub-X_qc.tsv``."""
    return Path(output_dir) / participant_id / "figures" / f"{participant_id}_qc.tsv"


def _describe(source: ImageSource) -> str:
    return str(source) if isinstance(source, (str, os.PathLike)) else "an in-memory image"


class _RunImages:
    """The images of one run, loaded lazily in RAS+ orientation on one checked grid."""

    def __init__(self, run: RunReportInputs):
        self.run = run
        self._cache: dict[str, np.ndarray | None] = {}
        self.affine: np.ndarray | None = None
        self.shape: tuple[int, ...] | None = None
        self.voxel_size: tuple[float, float, float] | None = None
        self.reference: str | None = None

    def get(self, name: str) -> np.ndarray | None:
        if name not in self._cache:
            self._cache[name] = self._load(name)
        return self._cache[name]

    def _load(self, name: str) -> np.ndarray | None:
        source = getattr(self.run, name)
        if source is None:
            return None
        where = f"{name} of {self.run.run_id} ({_describe(source)})"
        try:
            image = nib.load(source) if isinstance(source, (str, os.PathLike)) else source
            image = nib.as_closest_canonical(image)
        except Exception as exc:  # nibabel raises many kinds for unreadable files
            raise ValueError(f"cannot read the {where}: {exc}") from exc
        if image.ndim == 4 and name in ("magnitude",):
            image = image.slicer[..., 0]
        if image.ndim != 3:
            raise ValueError(f"the {where} must be 3-D, got shape {image.shape}")
        if self.affine is None:
            self.affine, self.shape, self.reference = image.affine, image.shape, where
            self.voxel_size = tuple(float(v) for v in image.header.get_zooms()[:3])
        elif image.shape != self.shape or not np.allclose(image.affine, self.affine,
                                                          atol=1e-3):
            raise ValueError(
                f"the {where} is not on the grid of the {self.reference} (shape "
                f"{image.shape} vs {self.shape}, or a different affine)")
        if name == "dseg":
            return np.rint(np.asanyarray(image.dataobj)).astype(np.int32)
        data = image.get_fdata(dtype=np.float32)
        return data > 0 if name == "mask" else data


def _label_names(regions: Mapping[str, Sequence[int]]) -> dict[int, str]:
    return {int(label): name for name, labels in regions.items() for label in labels}


def _vein_figures(run: RunReportInputs, images: _RunImages, name
                  ) -> list[tuple[Path, str, str]]:
    """The SWI minIP and the QSM venogram, where the run has them."""
    out: list[tuple[Path, str, str]] = []
    mask, vox = images.get("mask"), images.voxel_size
    minip = images.get("minip")
    if minip is not None:
        out.append((fg.plot_mosaic(
            minip, vox, name("minip"), title=f"{run.run_id}: SWI minIP",
            window=fg.robust_window(minip, mask, symmetric=False, percentile=99.5),
            units="a.u.", extent_mask=mask, blank_outside=mask is not None,
            views=("axial",), n_cols=8),
            "SWI minimum-intensity projection",
            "Susceptibility-weighted image, minimum-intensity projection over sliding axial "
            "slabs (--slab-mm): veins are dark lines, iron-rich nuclei dark too. Dark blotches "
            "near air and bone are signal dropout."))
    venogram = images.get("venogram")
    if venogram is not None:
        out.append((fg.plot_mosaic(
            venogram, vox, name("venogram"), title=f"{run.run_id}: QSM venogram",
            window=(-0.05, 0.45), units="ppm", extent_mask=mask,
            blank_outside=mask is not None, views=("axial",), n_cols=8),
            "QSM venogram",
            "Maximum-intensity projection of the susceptibility map over the same slabs: "
            "veins are bright (about 0.4-0.6 ppm at an oxygen extraction of 0.3-0.4), "
            f"{_oef_text(run)}"))
    return out


def _oef_text(run: RunReportInputs) -> str:
    if run.venous_oef is None:
        return "no venous measurement for this run."
    return (f"the oxygen extraction fraction from the large veins is {run.venous_oef:.2f} "
            f"({run.venous_voxels} centre-line voxels; see the *_desc-veins_stats.tsv table).")


def _run_figures(run: RunReportInputs, images: _RunImages, figure_dir: Path
                 ) -> list[tuple[Path, str, str]]:
    """Write the run's figures; return (path, alt text, caption) triples."""
    out: list[tuple[Path, str, str]] = []
    mask = images.get("mask")
    vox = images.voxel_size

    def name(key: str) -> Path:
        return figure_dir / f"{run.run_id}_desc-{key}_qc.png"

    magnitude = images.get("magnitude")
    if magnitude is not None:
        out.append((fg.plot_mosaic(
            magnitude, vox, name("magmask"), title=f"{run.run_id}: magnitude",
            window=fg.robust_window(magnitude, None, symmetric=False, percentile=99.5),
            units="a.u.", overlays=fg.Overlays(mask=mask),
            legend=[("brain mask", fg.MASK_COLOUR)] if mask is not None else ()),
            "magnitude with mask outline",
            "Magnitude with the brain-mask outline (red). The outline should "
            "follow the brain surface: no skull or background inside, no cortex cut off."))
    for key, attr, units, what in (
            ("field", "field", run.field_units, "Unwrapped total field (echoes combined)"),
            ("localfield", "local_field", run.local_field_units,
             "Local field after background-field removal")):
        volume = images.get(attr)
        if volume is None:
            continue
        out.append((fg.plot_mosaic(
            volume, vox, name(key), title=f"{run.run_id}: {what.lower()}",
            window=fg.robust_window(volume, mask, symmetric=True), units=units,
            extent_mask=mask, blank_outside=mask is not None),
            what.lower(),
            f"{what}. Look for sharp jumps (unwrapping errors) and, in the local field, "
            "smooth large-scale gradients left over near air and bone (incomplete "
            "background removal)."))
    qsm = images.get("qsm")
    if qsm is not None:
        out.append((fg.plot_mosaic(
            qsm, vox, name("qsm"), title=f"{run.run_id}: QSM", window=fg.QSM_WINDOW_PPM,
            units="ppm", extent_mask=mask, blank_outside=mask is not None),
            "susceptibility map",
            "Susceptibility map in a fixed window of -0.15 to 0.25 ppm (the same for every "
            "participant, so reports compare by eye). Iron-rich nuclei and veins are bright, "
            "white matter slightly dark. Streaks radiating from veins or calcifications, "
            "or a bright/dark rim at the brain edge, are artefacts."))
    r2star = images.get("r2star")
    if r2star is not None:
        out.append((fg.plot_mosaic(
            r2star, vox, name("r2star"), title=f"{run.run_id}: R2*",
            window=fg.robust_window(r2star, mask, symmetric=False), units="1/s",
            extent_mask=mask, blank_outside=mask is not None),
            "R2* map", "R2* from the magnitude decay over the echoes."))
    out += _vein_figures(run, images, name)
    template = images.get("template")
    # registration views go over the magnitude, else over the QSM
    background = magnitude if magnitude is not None else qsm
    on_background = {}
    if background is not None:
        on_background = (
            {"window": fg.robust_window(magnitude, None, symmetric=False, percentile=99.5),
             "units": "a.u."} if background is magnitude
            else {"window": fg.QSM_WINDOW_PPM, "units": "ppm"})
    if template is not None and background is not None:
        out.append((fg.plot_mosaic(
            background, vox, name("template"),
            title=f"{run.run_id}: registered template edges over the subject",
            **on_background, overlays=fg.Overlays(edges_of=template), extent_mask=mask,
            legend=[("template edges", fg.EDGE_COLOUR)]),
            "template edges over subject",
            "Edges of the atlas template after registration (cyan) over the subject. They "
            "should trace the subject's brain outline, ventricles and deep nuclei; a "
            "shifted or rotated outline means the registration failed."))
    dseg = images.get("dseg")
    if template is None and dseg is not None and background is not None:
        # no warped template: the atlas regions themselves show where the atlas landed
        names = _label_names(run.regions)
        out.append((fg.plot_mosaic(
            background, vox, name("atlas"),
            title=f"{run.run_id}: registered atlas regions over the subject",
            **on_background, overlays=fg.Overlays(labels=dseg, label_names=names),
            extent_mask=mask,
            legend=sorted({(bilateral_name(n), fg.region_colour(n)) for n in names.values()})),
            "atlas regions over subject",
            "Atlas regions after registration, outlined over the subject. They should lie "
            "symmetrically in the deep grey matter; regions outside the brain or far off "
            "the nuclei mean the registration failed."))
    if qsm is not None and dseg is not None:
        names = _label_names(run.regions)
        for key, title, families, half_width in ZOOMS:
            selected = {label: region for label, region in names.items()
                        if bilateral_name(region) in families}
            centre = fg.label_centroid(dseg, selected)
            if centre is None:
                continue
            if key == "zoomBasalGanglia":
                fg.write_thumbnail(qsm, vox, centre, name(THUMBNAIL_DESC),
                                   half_width_mm=half_width)
            out.append((fg.plot_region_zoom(
                qsm, vox, dseg, selected, centre, name(key), title=f"{run.run_id}: {title}",
                half_width_mm=half_width),
                f"{title} on the QSM",
                f"{title}: the QSM (top) and the atlas regions outlined on it (bottom), three "
                "axial slices and one coronal slice through the regions' centre. The outlines "
                "should sit on the bright nuclei."
                + (f" {run.registration_note}" if run.registration_note else "")))
    return out


def _read_tsv(path: str | os.PathLike) -> tuple[list[str], list[dict[str, str]]]:
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle, delimiter="\t")
            rows = list(reader)
            return list(reader.fieldnames or []), rows
    except OSError as exc:
        raise ValueError(f"cannot read the regional table {path}: {exc}") from exc


def _qc_table(qc: RunQC) -> str:
    rows = [{"metric": key, "value": value} for key, value in qc.__dict__.items()
            if value is not None and value != ""]
    return hp.table(["metric", "value"], rows)


def _run_section(run: RunReportInputs, report: RunReport, page_dir: Path,
                 captions: Sequence[tuple[Path, str, str]]) -> str:
    flags = critical_flags(w.code for w in report.warnings)
    parts = [f'<h2 id="{hp.esc(run.run_id)}">{hp.esc(run.run_id)}</h2>',
             hp.warning_list((f"[{w.code}] {w.message}" for w in report.warnings),
                             heading=f"QC warnings ({', '.join(flags)} mean the values "
                                     "are not to be trusted)" if flags else "QC warnings")]
    if run.phase_units_rule:
        parts.append(f'<p class="note">Phase scaling: {hp.esc(run.phase_units_rule)}</p>')
    missing = [label for label, value in (
        ("magnitude", run.magnitude), ("brain mask", run.mask), ("field map", run.field),
        ("local field", run.local_field), ("QSM", run.qsm), ("R2*", run.r2star),
        ("atlas labels", run.dseg), ("registered template", run.template),
        ("regional table", run.regional_tsv)) if value is None]
    if missing:
        parts.append(f'<p class="note">Not available for this run: {hp.esc(", ".join(missing))}.'
                     "</p>")
    parts.append("<h3>QC metrics</h3>" + _qc_table(report.qc))
    parts.append("<h3>Figures</h3>")
    parts += [hp.figure(hp.relative_src(path, page_dir), alt, caption)
              for path, alt, caption in captions]
    if run.regional_tsv is not None:
        columns, rows = _read_tsv(run.regional_tsv)
        parts.append(f"<h3>Regional susceptibility</h3><p class=\"note\">From "
                     f"{hp.esc(Path(run.regional_tsv).name)}; values in ppm.</p>")
        parts.append(hp.table(columns, rows))
    return "\n".join(parts)


def write_participant_report(
    output_dir: str | os.PathLike,
    runs: Sequence[RunReportInputs],
    *,
    methods_text: str | None = None,
    warnings: Sequence[str] = (),
    thresholds: QCThresholds = DEFAULT_THRESHOLDS,
    qc_tsv: str | os.PathLike | None = None,
) -> ParticipantReport:
    """Write ``OUTPUT_DIR/sub-X.html`` and its figures in ``OUTPUT_DIR/sub-X/figures/``.

    Parameters
    ----------
    output_dir
        The derivatives dataset root.
    runs
        The participant's runs (all with the same ``participant_id``), in display order.
    methods_text
        Methods boilerplate with citations (plain text or Markdown, shown verbatim).
    warnings
        Participant-level warnings from the pipeline (e.g. runs that were skipped).
    thresholds
        QC limits for the warnings.
    qc_tsv
        Where the participant's QC rows (one per run) are written as TSV (default:
        ``OUTPUT_DIR/sub-X/figures/sub-X_qc.tsv``, where the group report finds them).

    Returns
    -------
    ParticipantReport
        The HTML path and, per run, its metrics, warnings, QC row and figure files.

    Raises
    ------
    ValueError
        No runs, runs of different participants, or an image that cannot be read or is
        on a different grid (the message names it).
    """
    if not runs:
        raise ValueError("write_participant_report needs at least one run")
    participants = {run.participant_id for run in runs}
    if len(participants) != 1:
        raise ValueError(f"runs of several participants given: {sorted(participants)}")
    participant = runs[0].participant_id
    if not participant.startswith("sub-"):
        raise ValueError(f"participant_id must look like 'sub-<label>', got {participant!r}")
    output_dir = Path(output_dir)
    figure_dir = output_dir / participant / "figures"
    run_reports, sections, summary = [], [], []
    for run in runs:
        images = _RunImages(run)
        captions = _run_figures(run, images, figure_dir)
        mask = images.get("mask")
        qc = RunQC() if mask is None else compute_run_qc(
            mask, images.voxel_size, qsm=images.get("qsm"), template=images.get("template"),
            magnitude=images.get("magnitude"), dseg=images.get("dseg"),
            region_labels=run.regions if images.get("dseg") is not None else None,
            echo_fit_residual=images.get("echo_fit_residual"),
            echo_fit_residual_stats=run.echo_fit_residual_stats,
            template_overlap=run.template_overlap,
            registration_similarity=run.registration_similarity,
            registration_metric=run.registration_metric,
            refinement_correlation=run.refinement_correlation,
            unwrap_residual_wraps=run.unwrap_residual_wraps, reference_labels=run.references,
            phase_units_guessed=run.phase_units_guessed,
            phase_units_warning=run.phase_units_warning,
            venous=(run.venous_oef, run.venous_voxels) if run.venous_oef is not None or
            run.venous_voxels is not None else None, thresholds=thresholds)
        found = qc_warnings(qc, thresholds) + [QCWarning("pipeline", w) for w in run.warnings]
        if mask is None:
            found.insert(0, QCWarning("no_mask", "No brain mask given: mask metrics skipped."))
        report = RunReport(run.run_id, qc, tuple(found),
                           qc_row(participant, run.session_id, run.run_id, qc, found),
                           tuple(path for path, _, _ in captions))
        run_reports.append(report)
        sections.append(_run_section(run, report, output_dir, captions))
        summary += [f"{run.run_id}: [{w.code}] {w.message}" for w in found]

    body = ['<h2 id="summary">Summary</h2>',
            f"<p>{len(runs)} run(s). Figures are in <code>{hp.esc(participant)}/figures/</code>"
            " beside this page.</p>",
            hp.warning_list([*warnings, *summary], none_text="No QC warnings for any run."),
            hp.table(["run_id", "n_warnings", "qc_flags", "warnings", "mask_volume_ml",
                      "template_dice", "nuclei_contrast_ppm", "chi_iqr",
                      "fraction_chi_outside_range", "chi_median"],
                     [r.qc_row for r in run_reports],
                     flagged=[bool(r.warnings) for r in run_reports])]
    body += sections
    body.append('<h2 id="methods">Methods</h2>')
    body.append(f'<div class="methods">{hp.esc(methods_text)}</div>' if methods_text else
                '<p class="note">No methods text was provided.</p>')
    nav = [("summary", "Summary"), *[(r.run_id, r.run_id) for r in runs],
           ("methods", "Methods")]
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    page = hp.page(f"qsmbids report: {participant}", f"Generated {stamp}", nav,
                   "\n".join(body))
    html_path = atomic_write_text(output_dir / f"{participant}.html", page)
    write_qc_tsv([r.qc_row for r in run_reports],
                 qc_tsv if qc_tsv is not None else participant_qc_tsv(output_dir, participant))
    return ParticipantReport(html_path, tuple(run_reports))
