"""``qsmbids demo OUTPUT_DIR``: simulate a small cohort, run participant + group, compare to truth.

Writes ``OUTPUT_DIR/bids`` (simulated BIDS dataset with ground truth under
``derivatives/groundtruth``), ``OUTPUT_DIR/atlas`` (the phantom's own template and
labels in the atlas layout), ``OUTPUT_DIR/derivatives`` (qsmbids outputs, reports,
cohort tables) and ``OUTPUT_DIR/work``; then prints, per subject and region, the
estimated mean susceptibility next to the simulator's truth.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path
from typing import TextIO

import nibabel as nib
import numpy as np

from qsmbids.cli.exit_codes import ExitCode

#: ages of the demo cohort (years): young, middle, old
DEMO_AGES = (25.0, 50.0, 75.0)
DEFAULT_REGIONS = ("Caudate", "Putamen", "GlobusPallidus", "Thalamus", "SubstantiaNigra",
                   "RedNucleus", "Dentate")


def write_phantom_atlas(atlas_dir: Path, voxel_size_mm: float) -> Path:
    """Write the phantom's atlas with its echo-combined GRE magnitude template; return the folder.

    The simulator deforms and repositions this same phantom for each subject, so the
    registration meets a real problem while the truth stays known. The template has
    the contrast of the registration target (:func:`qsmbids.sim.template.magnitude_like`).
    """
    from qsmbids.sim.template import write_phantom_atlas as write

    return write(atlas_dir, voxel_size_mm, contrast="magnitude").root


def _truth_means(bids_dir: Path, prefix: str, subject: str, session: str | None
                 ) -> dict[str, float]:
    """True mean chi per bilateral region, referenced to the true whole-brain mean (ppm)."""
    folder = bids_dir / "derivatives" / "groundtruth" / f"sub-{subject}"
    if session:
        folder = folder / f"ses-{session}"
    folder = folder / "anat"
    chi = np.asarray(nib.load(next(folder.glob(f"{prefix}_space-orig_Chimap.nii*"))).dataobj)
    mask = np.asarray(nib.load(next(folder.glob(
        f"{prefix}_space-orig_desc-brain_mask.nii*"))).dataobj) > 0
    labels = np.asarray(nib.load(next(folder.glob(f"{prefix}_space-orig_dseg.nii*"))).dataobj)
    reference = float(chi[mask].mean())
    from qsmbids.atlas.regions import group_bilateral, phantom_regions

    return {name: float(chi[np.isin(labels, labs) & mask].mean()) - reference
            for name, labs in group_bilateral(phantom_regions()).items()}


def _estimated_means(table: Path) -> dict[str, float]:
    with open(table, newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    return {r["region"]: float(r["mean"]) for r in rows
            if r.get("hemisphere") == "bilateral" and r["mean"] not in ("n/a", "")}


def compare_to_truth(bids_dir: Path, derivatives: Path) -> list[dict[str, object]]:
    """Rows (subject, region, true, estimated, error) for every completed run of the demo."""
    from qsmbids.bids.discovery import discover_runs

    rows = []
    for run in discover_runs(bids_dir).runs:
        folder = derivatives / f"sub-{run.subject}"
        if run.session:
            folder = folder / f"ses-{run.session}"
        tables = sorted((folder / "anat").glob(f"{run.prefix}_*_atlas-*_stats.tsv"))
        if not tables:
            continue
        truth = _truth_means(bids_dir, run.prefix, run.subject, run.session)
        estimate = _estimated_means(tables[0])
        for region in DEFAULT_REGIONS:
            if region in truth and region in estimate:
                rows.append({"run": run.prefix, "region": region, "true": truth[region],
                             "estimated": estimate[region],
                             "error": estimate[region] - truth[region]})
    return rows


def print_comparison(rows: list[dict[str, object]], stream: TextIO) -> None:
    """Table of estimated vs true regional means (ppm, whole-brain reference)."""
    stream.write(f"\n{'run':<12}{'region':<17}{'true ppm':>10}{'estimated':>11}"
                 f"{'error':>9}\n")
    for r in rows:
        stream.write(f"{r['run']:<12}{r['region']:<17}{r['true']:>10.4f}"
                     f"{r['estimated']:>11.4f}{r['error']:>+9.4f}\n")
    if rows:
        errors = np.array([r["error"] for r in rows], float)
        offset = float(np.median(errors))
        stream.write(f"median error {offset:+.4f} ppm (a common offset comes from the "
                     "whole-brain reference); after removing it, mean |error| "
                     f"{np.abs(errors - offset).mean():.4f} ppm\n")


def run_demo(output_dir: Path, *, nprocs: int | None = None, resolution_mm: float = 2.0,
             n_subjects: int = 3, stream: TextIO | None = None) -> int:
    """Simulate, reconstruct, tabulate and compare; return the exit code."""
    from qsmbids.cli.group import run_group
    from qsmbids.cli.run import run_participant
    from qsmbids.sim.bids_writer import SimulationSettings, simulate_dataset
    from qsmbids.workflows.settings import Settings

    stream = stream or sys.stderr
    output_dir = Path(output_dir).absolute()
    bids, atlas = output_dir / "bids", output_dir / "atlas"
    ages = DEMO_AGES[:n_subjects] if n_subjects <= len(DEMO_AGES) else None
    if not (bids / "dataset_description.json").is_file():
        stream.write(f"qsmbids demo: simulating {n_subjects} subjects at {resolution_mm:g} mm "
                     f"into {bids}\n")
        simulate_dataset(bids, SimulationSettings(n_subjects=n_subjects,
                                                  voxel_size_mm=resolution_mm, ages=ages))
    if not (atlas / "atlas.json").is_file():
        write_phantom_atlas(atlas, resolution_mm)
    extra = {"nprocs": nprocs} if nprocs else {}
    settings = Settings.from_preset(
        "accurate", bids_dir=bids, output_dir=output_dir / "derivatives",
        work_dir=output_dir / "work", atlas_dir=atlas, **extra)
    code = run_participant(settings, stream)
    group_code = run_group(settings, stream)
    print_comparison(compare_to_truth(bids, settings.output_dir), stream)
    stream.write(f"\nmaps, tables and reports: {settings.output_dir}\n"
                 f"cohort report: {settings.output_dir / 'group.html'}\n")
    return int(ExitCode.RUNS_FAILED) if (code or group_code) else int(ExitCode.OK)
