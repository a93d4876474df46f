"""``qsmbids BIDS_DIR OUTPUT_DIR {participant,group}``: settings from arguments, then dispatch."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from qsmbids.bids.discovery import DiscoveryError, load_bids_filters
from qsmbids.cli.exit_codes import ExitCode
from qsmbids.cli.parser import PROG
from qsmbids.recon.swi import DEFAULT_SLAB_MM
from qsmbids.recon.veins import DEFAULT_HEMATOCRIT
from qsmbids.workflows.settings import Settings


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Build the frozen :class:`Settings` from parsed command-line arguments.

    Raises
    ------
    DiscoveryError
        When the ``--bids-filter-file`` is unusable.
    """
    filters = load_bids_filters(args.bids_filter_file)
    output_dir = Path(args.output_dir).absolute()
    work_dir = (Path(args.work_dir) if args.work_dir is not None
                else output_dir.parent / "qsmbids_work").absolute()
    resources = {k: v for k, v in (("nprocs", args.nprocs), ("mem_gb", args.mem_gb))
                 if v is not None}
    return Settings.from_preset(
        getattr(args, "preset", "accurate"),
        bids_dir=Path(args.bids_dir).absolute(), output_dir=output_dir, work_dir=work_dir,
        participant_label=tuple(args.participant_label or ()),
        session_label=tuple(args.session_label or ()),
        bids_filters=json.dumps(filters, sort_keys=True),
        field_strength=args.field_strength, unwrapping=args.unwrapping,
        bg_removal=args.bg_removal, inversion=args.inversion, reference=args.reference,
        # absolute: the nodes run in their own folders, where a relative path is lost
        atlas=args.atlas, atlas_dir=_absolute(args.atlas_dir), mask=_absolute(args.mask),
        field_map=_absolute(getattr(args, "field_map", None)),
        field_map_units=getattr(args, "field_map_units", None),
        phase_units=getattr(args, "phase_units", None),
        phase_sign=getattr(args, "phase_sign", 1),
        registration=getattr(args, "registration", None),
        registration_contrast=getattr(args, "registration_contrast", None),
        deterministic=getattr(args, "deterministic", False),
        veins=getattr(args, "veins", True),
        hematocrit=getattr(args, "hematocrit", DEFAULT_HEMATOCRIT),
        slab_mm=getattr(args, "slab_mm", DEFAULT_SLAB_MM),
        plugin=args.plugin, plugin_args=json.dumps(args.plugin_args or {}),
        omp_nthreads=args.omp_nthreads or 0, overwrite=args.overwrite,
        verbose=args.verbose, progress=args.progress, **resources)


def run_bids_app(args: argparse.Namespace) -> int:
    """Run the participant or group level; return the exit code."""
    from qsmbids.cli.run import SetupError, run_participant

    try:
        settings = settings_from_args(args)
    except DiscoveryError as exc:
        sys.stderr.write(f"{PROG}: error: {exc}\n")
        return int(ExitCode.NO_INPUT)
    except ValueError as exc:  # options that cannot go together (Settings checks them)
        sys.stderr.write(f"{PROG}: error: {exc} (see '{PROG} --help')\n")
        return int(ExitCode.USAGE)
    try:
        settings.output_dir.mkdir(parents=True, exist_ok=True)
        settings.work_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        sys.stderr.write(f"{PROG}: error: cannot create {exc.filename}: {exc.strerror}\n")
        return int(ExitCode.CANT_CREATE)
    try:
        if args.analysis_level == "group":
            from qsmbids.cli.group import run_group

            return run_group(settings)
        return run_participant(settings)
    except SetupError as exc:
        sys.stderr.write(f"{PROG}: error: {exc}\n")
        return int(ExitCode.NO_INPUT)


def _absolute(path: Path | str | None) -> Path | None:
    """``path`` made absolute against the current folder (None stays None)."""
    return None if path is None else Path(path).absolute()
