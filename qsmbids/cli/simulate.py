"""``qsmbids simulate OUTPUT_DIR``: write a simulated multi-echo GRE BIDS dataset."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from qsmbids.cli.exit_codes import ExitCode
from qsmbids.cli.parser import PROG, _positive_float, _positive_int

_MAX_ECHO_TIME_S = 0.5


def _echo_time(text: str) -> float:
    value = _positive_float(text)
    if value > _MAX_ECHO_TIME_S:
        raise argparse.ArgumentTypeError(
            f"echo times are in seconds (e.g. 0.004), got {text!r}: milliseconds?")
    return value


def _snr(text: str) -> float | None:
    if text.lower() in ("none", "inf", "0"):
        return None
    return _positive_float(text)


def _resolution(text: str) -> float:
    value = _positive_float(text)
    if not 0.5 <= value <= 4.0:
        raise argparse.ArgumentTypeError(f"resolution must be 0.5..4 mm, got {text!r}")
    return value


def _label(text: str) -> str:
    label = text.removeprefix("ses-")
    if not label.isalnum():
        raise argparse.ArgumentTypeError(f"session labels are alphanumeric, got {text!r}")
    return label


def add_simulate_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``qsmbids simulate`` (added to its subparser)."""
    parser.add_argument("--subjects", type=_positive_int, default=3, metavar="N",
                        help="number of participants (ages spread over 20..80 years)")
    parser.add_argument("--sessions", nargs="+", type=_label, default=[], metavar="LABEL",
                        help="session labels (default: no session level)")
    parser.add_argument("--runs", type=_positive_int, default=1, metavar="N",
                        help="runs per session")
    parser.add_argument("--field-strength", type=_positive_float, default=3.0, metavar="T",
                        help="B0 in tesla (e.g. 1.5, 3, 7)")
    parser.add_argument("--resolution", type=_resolution, default=2.0, metavar="MM",
                        help="isotropic voxel size in mm")
    parser.add_argument("--snr", type=_snr, default=50.0, metavar="X",
                        help="first-echo brain SNR ('none' for noise-free data)")
    parser.add_argument("--oblique-deg", type=float, default=0.0, metavar="DEG",
                        help="tilt of the slices against B0 in degrees (oblique affine)")
    parser.add_argument("--phase-units", choices=["rad", "siemens", "arbitrary"], default="rad",
                        help="phase convention: radians, Siemens integers (dcm2niix scaling) "
                             "or an arbitrary linear range")
    parser.add_argument("--echo-times", nargs="+", type=_echo_time,
                        default=[0.004, 0.010, 0.016, 0.022], metavar="S",
                        help="echo times in seconds")
    parser.add_argument("--ages", nargs="+", type=_positive_float, default=None, metavar="YEARS",
                        help="one age per subject (default: spread over 20..80)")
    parser.add_argument("--microbleed", action="store_true", help="add a microbleed")
    parser.add_argument("--no-calcification", action="store_true",
                        help="leave out the choroid-plexus calcification")
    parser.add_argument("--no-groundtruth", action="store_true",
                        help="do not write derivatives/groundtruth")
    parser.add_argument("--uncompressed", action="store_true", help="write .nii, not .nii.gz")
    parser.add_argument("--seed", type=int, default=0, metavar="N", help="random seed")
    parser.add_argument("--overwrite", action="store_true",
                        help="write into a non-empty OUTPUT_DIR (files of the same names are "
                             "replaced, others are left alone)")


def run_simulate(args: argparse.Namespace) -> int:
    """Run ``qsmbids simulate`` from parsed arguments; return the exit code."""
    from qsmbids.sim.bids_writer import SimulationSettings, simulate_dataset

    out: Path = args.output_dir
    if out.exists() and not out.is_dir():
        return _fail(f"OUTPUT_DIR exists and is not a folder: {out}", ExitCode.CANT_CREATE)
    if out.is_dir() and any(out.iterdir()) and not args.overwrite:
        return _fail(f"OUTPUT_DIR is not empty: {out} (use --overwrite to write into it)",
                     ExitCode.CANT_CREATE)
    if args.ages is not None and len(args.ages) != args.subjects:
        return _fail(f"--ages needs {args.subjects} values (one per subject), "
                     f"got {len(args.ages)}", ExitCode.USAGE)
    echo_times = tuple(sorted(args.echo_times))
    try:
        settings = SimulationSettings(
            n_subjects=args.subjects, sessions=tuple(args.sessions), runs=args.runs,
            voxel_size_mm=args.resolution, field_strength_t=args.field_strength,
            echo_times_s=echo_times, snr=args.snr, oblique_deg=args.oblique_deg,
            phase_units=args.phase_units,
            ages=tuple(args.ages) if args.ages is not None else None, seed=args.seed,
            calcification=not args.no_calcification, microbleed=args.microbleed,
            groundtruth=not args.no_groundtruth, compress=not args.uncompressed)
    except ValueError as exc:
        return _fail(str(exc), ExitCode.USAGE)
    start = time.perf_counter()
    try:
        dataset = simulate_dataset(out, settings)
    except OSError as exc:
        return _fail(f"cannot write the dataset to {out}: {exc}", ExitCode.CANT_CREATE)
    print(summary(dataset, time.perf_counter() - start))
    return int(ExitCode.OK)


def summary(dataset, seconds: float) -> str:
    """A short description of what :func:`simulate_dataset` wrote."""
    s = dataset.settings
    sessions = ", ".join(s.sessions) if s.sessions else "none"
    ages = ", ".join(f"{p['participant_id']} ({p['age']:g} y, {p['sex']})"
                     for p in dataset.participants)
    lines = [
        f"Simulated BIDS dataset written to {dataset.root} in {seconds:.1f} s",
        f"  participants: {ages}",
        f"  sessions: {sessions}; runs per session: {s.runs}; {len(dataset.runs)} runs in all",
        f"  {s.field_strength_t:g} T, {s.voxel_size_mm} mm voxels, echo times "
        f"{', '.join(f'{t * 1000:g}' for t in s.echo_times_s)} ms, SNR {s.snr}, "
        f"slab tilt {s.oblique_deg:g} deg, phase units '{s.phase_units}'",
    ]
    if s.groundtruth:
        lines.append(f"  ground truth (chi ppm, labels, mask, local/total field, R2*): "
                     f"{dataset.groundtruth}")
    lines.append(f"Next: {PROG} {dataset.root} OUTPUT_DIR participant")
    return "\n".join(lines)


def _fail(message: str, code: ExitCode) -> int:
    sys.stderr.write(f"{PROG}: error: {message}\n")
    return int(code)
