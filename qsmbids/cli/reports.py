"""Participant HTML reports (issue 9's renderer) from the derivatives a participant run wrote."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from qsmbids.bids.derivatives import NameContext, derivative_name, run_folder
from qsmbids.bids.discovery import GreRun
from qsmbids.workflows.settings import Settings


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
    chi_template = out("chi_template")
    if chi_template is not None:
        side = json.loads(Path(str(chi_template).replace(".nii.gz", ".json")).read_text())
        for step in side.get("ProcessingSteps", []):
            sim = step.get("Info", {}).get("Similarity", {})
            if "correlation" in sim:
                similarity = float(sim["correlation"])
                extra["registration_metric"] = "correlation"
    if atlas_dir is not None:
        from qsmbids.atlas.model import load_atlas

        extra["regions"] = dict(load_atlas(atlas_dir, check_images=False).regions)
    magnitude = run.magnitude[0] if run.magnitude else out("magnitude")
    return RunReportInputs(
        participant_id=f"sub-{run.subject}", run_id=run.prefix,
        session_id=f"ses-{run.session}" if run.session else None,
        magnitude=magnitude, mask=out("mask"), field=out("totalfield"),
        local_field=out("localfield"), qsm=out("chi"), r2star=out("r2star"),
        dseg=out("dseg"), regional_tsv=out("regions"),
        registration_similarity=similarity, warnings=tuple(run.notes), **extra)


def write_participant_reports(settings: Settings, runs: list[GreRun], context: NameContext,
                              atlas_dir: Path | None, methods_text: str) -> dict[str, str]:
    """One ``sub-X.html`` per participant with completed runs.

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
        except Exception as exc:  # reports are QC aids: never fail the runs
            written[subject] = f"report failed: {type(exc).__name__}: {exc}"
    return written
