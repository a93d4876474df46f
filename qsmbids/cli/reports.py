"""Participant HTML reports (issue 9's renderer) from the derivatives a participant run wrote.

The report's QC is also where the run's QC flags are decided
(:func:`qsmbids.report.qc_metrics.qc_warnings`); the flags that make the values
untrustworthy go from here into the Chimap sidecars (``QCFlags``, ``QCWarnings``), the
run's log and the command's output, so a flat map or a guessed phase scaling is never
only in the HTML.
"""

from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

from qsmbids.bids.discovery import GreRun
from qsmbids.derivatives.naming import NameContext, derivative_name, log_path, run_folder
from qsmbids.derivatives.run_outputs import update_run_sidecar
from qsmbids.workflows.settings import Settings

LOGGER = logging.getLogger("qsmbids")

#: the sidecars that carry a run's QC flags (the venous table's too: its OEF is a
#: number users put into their statistics)
FLAGGED_KINDS = ("chi", "chi_template", "veins_table")


def _existing(path: Path) -> Path | None:
    return path if path.is_file() else None


def run_report_inputs(settings: Settings, run: GreRun, context: NameContext,
                      atlas_dir: Path | None):
    """:class:`qsmbids.report.participant.RunReportInputs` of a completed run."""
    from qsmbids.report.participant import RunReportInputs

    folder = run_folder(settings.output_dir, run.entities)

    def out(kind: str) -> Path | None:
        return _existing(folder / derivative_name(run.entities, kind, context))

    similarity = None
    extra = {}
    chi = out("chi")
    if chi is not None:
        extra.update(_chimap_fields(_sidecar_steps(chi, tolerant=True)))
    chi_template = out("chi_template")
    if chi_template is not None:
        for step in _sidecar_steps(chi_template):
            sim = step.get("Info", {}).get("Similarity", {})
            if "correlation" in sim:
                similarity = float(sim["correlation"])
                extra["registration_metric"] = "correlation"
    dseg = out("dseg")
    if dseg is not None:
        extra.update(_registration_fields(_sidecar_steps(dseg)))
    if atlas_dir is not None:
        from qsmbids.atlas.model import load_atlas

        atlas = load_atlas(atlas_dir, check_images=False)
        extra["regions"] = dict(atlas.regions)
        extra["references"] = dict(atlas.references)
    extra.update(_venous_fields(out("veins_table")))
    magnitude = run.magnitude[0] if run.magnitude else out("magnitude")
    return RunReportInputs(
        participant_id=f"sub-{run.subject}", run_id=run.prefix,
        session_id=f"ses-{run.session}" if run.session else None,
        magnitude=magnitude, mask=out("mask"), field=out("totalfield"),
        local_field=out("localfield"), qsm=out("chi"), r2star=out("r2star"),
        dseg=dseg, regional_tsv=out("regions"), minip=out("minip"),
        venogram=out("venogram"),
        registration_similarity=similarity, warnings=tuple(run.notes), **extra)


def _venous_fields(table: Path | None) -> dict:
    """``venous_oef`` and ``venous_voxels`` from a run's venous table (none: {})."""
    if table is None:
        return {}
    from qsmbids.stats.tables import TableError, read_tsv

    try:
        row = read_tsv(table)[0]
    except (TableError, IndexError):
        return {}
    oef = row.get("oef")
    return {"venous_oef": float("nan") if oef is None else float(oef),
            "venous_voxels": int(row.get("n_voxels") or 0)}


def _sidecar_steps(image: Path, *, tolerant: bool = False) -> list[dict]:
    """The ``ProcessingSteps`` of an output's JSON sidecar; ``tolerant``: none when the
    sidecar is missing or unreadable, instead of the error."""
    try:
        return json.loads(Path(str(image).replace(".nii.gz", ".json")).read_text()).get(
            "ProcessingSteps", [])
    except (OSError, ValueError, AttributeError):
        if tolerant:
            return []
        raise


def _registration_fields(steps: list[dict]) -> dict:
    """Report fields from the steps of a dseg sidecar: how the nuclei were placed (the
    refinement's correlations, or why it was skipped) and the template's overlap."""
    found: dict = {}
    for step in steps:
        info = step.get("Info", {})
        skipped = step.get("Parameters", {}).get("SusceptibilityRefinement")
        if step.get("Step") == "registration" and skipped:
            found["registration_note"] = f"Susceptibility refinement {skipped}."
        if step.get("Step") == "registration" and "TemplateDice" in info:
            nmi = info.get("TemplateNMI")
            found["template_overlap"] = (float(info["TemplateDice"]),
                                         None if nmi is None else float(nmi))
        if step.get("Step") == "susceptibility refinement" and "CorrelationAfter" in info:
            before, after = float(info["CorrelationBefore"]), float(info["CorrelationAfter"])
            found["refinement_correlation"] = (before, after)
            found["registration_note"] = (
                "The nuclei were refined on the susceptibility map (correlation with the "
                f"atlas's susceptibility template {before:.2f} -> {after:.2f}).")
    return found


def _chimap_fields(steps: list[dict]) -> dict:
    """Report fields from the steps recorded in a Chimap sidecar: ``phase_units_*`` of
    the phase scaling, the unwrapping's residual wraps and the echo-fit residual of the
    field estimation."""
    found = {}
    for step in steps:
        info = step.get("Info", {})
        if step.get("Step") == "phase scaling":
            found.update(phase_units_rule=step.get("Algorithm"),
                         phase_units_guessed=info.get("PhaseUnitsGuessed"),
                         phase_units_warning=info.get("PhaseUnitsWarning"))
        if step.get("Step") == "field estimation":
            if "ResidualWraps" in info:
                found["unwrap_residual_wraps"] = int(info["ResidualWraps"])
            if "EchoFitResidualMedianRad" in info:
                found["echo_fit_residual_stats"] = (float(info["EchoFitResidualMedianRad"]),
                                                    float(info["EchoFitResidualP95Rad"]))
    return found


def record_qc_flags(settings: Settings, run: GreRun, context: NameContext, warnings,
                    say: Callable[[str], None] | None = None,
                    phase_rule: str | None = None) -> list[str]:
    """Write a run's QC findings into its Chimap sidecars and log; return the flag codes.

    Parameters
    ----------
    settings, run, context
        Locate the run's outputs.
    warnings
        :class:`qsmbids.report.qc_metrics.QCWarning` of the run (from its report).
    say
        Where to print the flags for the user (e.g. the progress stream); None: as
        warnings of the ``qsmbids`` logger.
    phase_rule
        The phase-scaling rule the run used (written into its log).
    """
    from qsmbids.report.qc_metrics import critical_flags

    flags = critical_flags(w.code for w in warnings)
    fields = {"QCFlags": flags or None,
              "QCWarnings": [f"[{w.code}] {w.message}" for w in warnings] or None}
    for kind in FLAGGED_KINDS:
        update_run_sidecar(settings.output_dir, run.entities, kind, fields, context=context)
    log = log_path(settings.output_dir, run.entities)
    lines = [f"QC FLAG {run.prefix} [{w.code}]: {w.message}" for w in warnings
             if w.code in flags]
    notes = [f"phase scaling: {phase_rule}"] if phase_rule else []
    if (lines or notes) and log.parent.is_dir():
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        with open(log, "a", encoding="utf-8") as handle:
            handle.writelines(f"{stamp} {note}\n" for note in notes)
            handle.writelines(f"{stamp} WARNING {line}\n" for line in lines)
    for line in lines:  # on the command's output when there is one, else the logger
        if say is not None:
            say(f"qsmbids: {line}")
        else:
            LOGGER.warning(line)
    return flags


def write_participant_reports(settings: Settings, runs: list[GreRun], context: NameContext,
                              atlas_dir: Path | None, methods_text: str,
                              say: Callable[[str], None] | None = None) -> dict[str, str]:
    """One ``sub-X.html`` per participant with completed runs; the QC flags of each run
    go into its Chimap sidecars and log (:func:`record_qc_flags`) and to ``say``.

    Returns
    -------
    dict
        Participant -> report path, or the error message when the report failed
        (a report never fails the runs).
    """
    from qsmbids.report.participant import write_participant_report

    by_subject: dict[str, list[GreRun]] = defaultdict(list)
    for run in runs:
        by_subject[run.subject].append(run)
    written = {}
    for subject, subject_runs in sorted(by_subject.items()):
        try:
            inputs = [run_report_inputs(settings, r, context, atlas_dir) for r in subject_runs]
            report = write_participant_report(settings.output_dir, inputs,
                                              methods_text=methods_text)
            written[subject] = str(getattr(report, "html", report))
            for run, described, found in zip(subject_runs, inputs,
                                             getattr(report, "runs", ()), strict=False):
                record_qc_flags(settings, run, context, found.warnings, say,
                                described.phase_units_rule)
        except Exception as exc:  # reports are QC aids: never fail the runs
            written[subject] = f"report failed: {type(exc).__name__}: {exc}"
    return written
