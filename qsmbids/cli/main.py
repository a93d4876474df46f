"""Entry point of the ``qsmbids`` command: parse, check inputs, dispatch."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from qsmbids.cli.environment import prepare_environment
from qsmbids.cli.exit_codes import ExitCode
from qsmbids.cli.parser import PROG, parse_args


class InputError(Exception):
    """A problem with a path given on the command line (exit code 66)."""


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: stop as on Ctrl-C (exit code 143).

    A BaseException, like KeyboardInterrupt, so that no ``except Exception`` in
    nipype or qsmbids takes it for a failed step.
    """


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated(f"signal {signum}")


def handle_sigterm() -> None:
    """Turn SIGTERM into :class:`Terminated` in this (main) thread.

    Without a handler a process ignores SIGTERM when it is a container's PID 1 (the
    kernel drops signals with the default action there), so ``docker stop``, podman
    and schedulers had to wait for SIGKILL; with it qsmbids stops at once, leaving
    only complete runs in OUTPUT_DIR (outputs are written atomically and a run is
    complete only once its manifest exists), and a rerun resumes.
    """
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_terminated)


def _fail(message: str, code: ExitCode) -> int:
    sys.stderr.write(f"{PROG}: error: {message}\n")
    return int(code)


def check_bids_app_paths(args: argparse.Namespace) -> None:
    """Check BIDS_DIR, OUTPUT_DIR and the filter file before any work starts.

    Raises
    ------
    InputError
        Naming the offending path and what is wrong with it.
    """
    bids_dir: Path = args.bids_dir
    if not bids_dir.exists():
        raise InputError(f"BIDS_DIR does not exist: {bids_dir}")
    if not bids_dir.is_dir():
        raise InputError(f"BIDS_DIR is not a folder: {bids_dir}")
    if not args.skip_bids_validation and not (bids_dir / "dataset_description.json").is_file():
        raise InputError(
            f"BIDS_DIR is not a BIDS dataset (no dataset_description.json): {bids_dir} "
            "(use --skip-bids-validation to go on anyway)"
        )
    if args.output_dir.resolve() == bids_dir.resolve():
        raise InputError(
            f"OUTPUT_DIR must differ from BIDS_DIR (the input is never written to): {bids_dir}"
        )
    if args.output_dir.exists() and not args.output_dir.is_dir():
        raise InputError(f"OUTPUT_DIR exists and is not a folder: {args.output_dir}")
    if args.bids_filter_file is not None and not args.bids_filter_file.is_file():
        raise InputError(f"--bids-filter-file does not exist: {args.bids_filter_file}")


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``qsmbids`` with ``argv`` (default: ``sys.argv[1:]``); return the exit code."""
    args = parse_args(list(sys.argv[1:] if argv is None else argv))
    handle_sigterm()
    for note in prepare_environment():
        sys.stderr.write(f"{PROG}: note: {note}\n")
    try:
        if args.command in ("participant", "group"):
            check_bids_app_paths(args)
            from qsmbids.cli.bids_app import run_bids_app

            return run_bids_app(args)
        if args.command == "simulate":
            from qsmbids.cli.simulate import run_simulate

            return run_simulate(args)
        if args.command == "demo":
            from qsmbids.cli.demo import run_demo

            return run_demo(args.output_dir, nprocs=args.nprocs,
                            resolution_mm=args.resolution, n_subjects=args.subjects)
        if args.command == "atlas":
            from qsmbids.cli.atlas import run_atlas

            return run_atlas(args)
        return _fail(f"'{args.command}' is not available in this version yet",
                     ExitCode.UNAVAILABLE)
    except InputError as exc:
        return _fail(str(exc), ExitCode.NO_INPUT)
    except Terminated:
        return _fail("terminated by SIGTERM (the job was cancelled or ran out of time?); "
                     "complete runs are kept, rerun the same command to resume the others",
                     ExitCode.TERMINATED)
    except KeyboardInterrupt:
        return _fail("interrupted; complete runs are kept, rerun the same command to "
                     "resume the others", ExitCode.INTERRUPTED)
