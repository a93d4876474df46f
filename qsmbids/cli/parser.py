"""Argument parsing for the ``qsmbids`` command.

Two shapes share one program:

* the BIDS-Apps call ``qsmbids BIDS_DIR OUTPUT_DIR {participant,group} [options]``;
* tool subcommands ``qsmbids demo|simulate|atlas ...``.

Usage errors print one line on stderr and exit with code 64.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import NoReturn

from qsmbids import __version__
from qsmbids.cli.exit_codes import ExitCode
from qsmbids.recon.swi import DEFAULT_SLAB_MM
from qsmbids.recon.units import FIELD_MAP_UNITS
from qsmbids.recon.veins import DEFAULT_HEMATOCRIT
from qsmbids.workflows.settings import (
    BG_REMOVAL,
    DEFAULT_PRESET,
    INVERSION,
    PHASE_UNITS,
    PLUGINS,
    PRESETS,
    REFERENCE,
    REGISTRATION,
    REGISTRATION_CONTRAST,
    UNWRAPPING,
)

PROG = "qsmbids"
#: subcommands recognised in the first position instead of BIDS_DIR
SUBCOMMANDS = ("demo", "simulate", "atlas")


class _Parser(argparse.ArgumentParser):
    """ArgumentParser that reports errors in one line and exits with code 64."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: error: {message} (see '{self.prog} --help')\n")
        raise SystemExit(ExitCode.USAGE)


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows defaults, except where that says nothing or says it twice.

    Skipped: switches (``--overwrite``: "(default: False)"), ``None`` defaults, and help
    texts that already state their default in words ("default: all CPUs").
    """

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.nargs == 0 or action.default is None or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _strip_prefix(prefix: str):
    def convert(text: str) -> str:
        label = text.removeprefix(prefix)
        if not label or not label.isalnum():
            raise argparse.ArgumentTypeError(
                f"labels are alphanumeric (e.g. 01 or {prefix}01), got {text!r}"
            )
        return label

    return convert


def build_bids_app_parser() -> argparse.ArgumentParser:
    """Parser for ``qsmbids BIDS_DIR OUTPUT_DIR {participant,group}``."""
    parser = _Parser(
        prog=PROG,
        description=(
            "Quantitative Susceptibility Mapping from multi-echo GRE in a BIDS dataset, with "
            "regional susceptibility tables of the deep grey nuclei. Other commands: "
            f"'{PROG} demo OUTPUT_DIR' (simulated dataset, whole pipeline), "
            f"'{PROG} simulate OUTPUT_DIR', '{PROG} atlas fetch'."
        ),
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("bids_dir", type=Path, help="root of the input BIDS dataset (read only)")
    parser.add_argument("output_dir", type=Path, help="derivatives folder to write into")
    parser.add_argument(
        "analysis_level",
        choices=["participant", "group"],
        help="'participant' reconstructs each run; 'group' builds the cohort tables and report",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more log output (repeat for more)")

    sel = parser.add_argument_group("selecting data")
    sel.add_argument("--participant-label", "--participant_label", nargs="+", default=None,
                     type=_strip_prefix("sub-"), metavar="LABEL",
                     help="participants to process (with or without 'sub-'); default: all")
    sel.add_argument("--session-label", nargs="+", default=None, type=_strip_prefix("ses-"),
                     metavar="LABEL", help="sessions to process; default: all")
    sel.add_argument("--bids-filter-file", type=Path, default=None, metavar="FILE",
                     help="JSON file of PyBIDS filters, keyed by query name (e.g. 'megre')")
    sel.add_argument("--skip-bids-validation", action="store_true",
                     help="do not check that BIDS_DIR looks like a BIDS dataset")

    run = parser.add_argument_group("execution")
    run.add_argument("-w", "--work-dir", type=Path, default=None,
                     help="intermediate files; a killed run resumes from here "
                          "(default: OUTPUT_DIR/../qsmbids_work)")
    run.add_argument("--nprocs", type=_positive_int, default=None,
                     help="processes to run at once (default: all CPUs)")
    run.add_argument("--omp-nthreads", type=_positive_int, default=None,
                     help="threads per process for FFTs and ANTs (default: nprocs)")
    run.add_argument("--mem-gb", type=_positive_float, default=None,
                     help="memory limit for scheduling, in GB (default: available memory)")
    run.add_argument("--plugin", choices=PLUGINS, default="MultiProc",
                     help="nipype execution plugin; SLURM/SGE/PBS submit each step as a job, "
                          "their Graph variants submit the whole cohort at once and return")
    run.add_argument("--plugin-args", type=_json_object, default=None, metavar="JSON",
                     help="plugin arguments as JSON, e.g. '{\"sbatch_args\": \"-p short\"}'")
    run.add_argument("--overwrite", action="store_true",
                     help="redo runs whose outputs are already complete")
    run.add_argument("--no-progress", dest="progress", action="store_false",
                     help="no progress lines on stderr")

    meth = parser.add_argument_group(
        "methods", "each default comes from --preset; an explicit choice wins")
    meth.add_argument("--preset", choices=tuple(PRESETS), default=DEFAULT_PRESET,
                      help="; ".join(f"{k}: " + ", ".join(f"{m}" for m in v.values())
                                     for k, v in PRESETS.items()))
    meth.add_argument("--unwrapping", choices=UNWRAPPING, default=None,
                      help="phase unwrapping: romeo (quality-guided region growing, exact) or "
                           "laplacian")
    meth.add_argument("--bg-removal", choices=BG_REMOVAL, default=None,
                      help="background field removal")
    meth.add_argument("--inversion", choices=INVERSION, default=None,
                      help="dipole inversion")
    meth.add_argument("--reference", choices=REFERENCE, default="wholebrain",
                      help="susceptibility reference region")
    meth.add_argument("--field-strength", type=_positive_float, default=None, metavar="TESLA",
                      help="B0 used where sidecars lack MagneticFieldStrength (overrides it "
                           "where present, with a note in the log)")
    meth.add_argument("--phase-sign", type=int, choices=(1, -1), default=1, metavar="{1,-1}",
                      help="multiply the phase by this sign before anything else: -1 for "
                           "data whose converter wrote the phase with the opposite "
                           "handedness (iron-rich nuclei and veins then come out negative; "
                           "the QC flags phase_sign_suspect and nuclei_inverted say so); "
                           "default 1, right for Siemens and Philips data converted by "
                           "dcm2niix (see the README)")
    meth.add_argument("--phase-units", choices=PHASE_UNITS, default=None,
                      help="force how the stored phase is read, for data the automatic rules "
                           "cannot decide (the log and sidecars say which rule was used): "
                           "rad (trust the values), siemens (12-bit integers), arbitrary "
                           "(rescale min..max over all echoes to one period); default: "
                           "sidecar Units, Siemens integers, full-span radians, else rescale "
                           "with a QC flag")
    meth.add_argument("--mask", type=Path, default=None, metavar="PATH",
                      help="brain mask: a NIfTI used for every run, or a folder searched for "
                           "'<run>*_mask.nii[.gz]'; default: computed from the magnitude")
    meth.add_argument("--field-map", type=Path, default=None, metavar="PATH",
                      help="a field map in place of the wrapped phase (a B0 map or an "
                           "unwrapped phase from the scanner or another tool, on the GRE "
                           "grid): a NIfTI for a selection of one run, or a folder searched "
                           "for '<run>*fieldmap.nii[.gz]'; units from the JSON sidecar "
                           "beside it (Units; EchoTime for rad) or --field-map-units. The "
                           "run's magnitude still makes the mask and R2*")
    meth.add_argument("--field-map-units", choices=FIELD_MAP_UNITS, default=None,
                      help="units of the --field-map files (overrides their sidecars)")
    meth.add_argument("--atlas", default="default", metavar="NAME",
                      help="atlas for regional tables: 'default' (MNI152NLin2009cAsym deep "
                           "grey nuclei) or 'none'")
    meth.add_argument("--atlas-dir", type=Path, default=None, metavar="DIR",
                      help="folder holding an atlas in the qsmbids layout (atlas.json)")
    meth.add_argument("--registration", choices=REGISTRATION, default=None,
                      help="atlas registration: fast (2 mm working grid, about 1 minute at "
                           "1 mm on 2 cores) or accurate (down to the data's resolution; "
                           "about 19 minutes at 1 mm)")
    meth.add_argument("--registration-contrast", choices=REGISTRATION_CONTRAST,
                      default=REGISTRATION_CONTRAST[0],
                      help="anatomy+chi: after the anatomical registration (T1w, else the "
                           "magnitude), refine the deep grey nuclei (1.5 mm grid) on the "
                           "susceptibility map against the atlas's susceptibility template "
                           "(the nuclei are faint on T1w and magnitude); anatomy: the "
                           "anatomical registration alone (it then runs beside the "
                           "reconstruction instead of after it)")
    meth.add_argument("--no-veins", dest="veins", action="store_false",
                      help="skip the vein outputs (SWI, its minIP, the QSM venogram, the "
                           "vein mask and the venous susceptibility/OEF table)")
    meth.add_argument("--hematocrit", type=float, default=DEFAULT_HEMATOCRIT, metavar="HCT",
                      help="haematocrit (fraction) for the OEF of participants without a "
                           "'hematocrit' value in participants.tsv (default: "
                           f"{DEFAULT_HEMATOCRIT})")
    meth.add_argument("--slab-mm", type=float, default=DEFAULT_SLAB_MM, metavar="MM",
                      help="slab thickness of the SWI minIP and the QSM venogram, mm "
                           f"(default: {DEFAULT_SLAB_MM:g})")
    meth.add_argument("--deterministic", action="store_true",
                      help="repeatable ANTs registration: one thread (about twice as "
                           "slow when it would get more); no random sampling enters, so a "
                           "registration that gets one thread anyway (2 cores shared with "
                           "the reconstruction) repeats without it; with more threads "
                           "results vary slightly between reruns")
    return parser


def _json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON ({exc.msg}): {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}")
    return value


def build_subcommand_parser() -> argparse.ArgumentParser:
    """Parser for the tool subcommands (``demo``, ``simulate``, ``atlas``)."""
    parser = _Parser(prog=PROG)
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    demo = sub.add_parser("demo", help="simulate a small cohort and run the whole pipeline",
                          formatter_class=_HelpFormatter)
    demo.add_argument("output_dir", type=Path, help="folder for the simulated data and results")
    demo.add_argument("--nprocs", type=_positive_int, default=None)
    demo.add_argument("--subjects", type=_positive_int, default=3,
                      help="participants to simulate (ages 25, 50, 75 for the first three)")
    demo.add_argument("--resolution", type=_positive_float, default=2.0, metavar="MM",
                      help="voxel size of the simulated data (2 mm or coarser keeps it quick)")
    demo.add_argument("-v", "--verbose", action="count", default=0)

    sim = sub.add_parser("simulate", help="write a simulated multi-echo GRE BIDS dataset",
                         formatter_class=_HelpFormatter)
    sim.add_argument("output_dir", type=Path, help="folder for the BIDS dataset")
    sim.add_argument("-v", "--verbose", action="count", default=0)
    from qsmbids.cli.simulate import add_simulate_arguments  # here: simulate imports parser

    add_simulate_arguments(sim)

    atlas = sub.add_parser("atlas", help="manage the atlas used for regional tables")
    atlas_sub = atlas.add_subparsers(dest="atlas_command", required=True, parser_class=_Parser)
    fetch = atlas_sub.add_parser("fetch", help="download the default atlas into a cache folder",
                                 formatter_class=_HelpFormatter)
    fetch.add_argument("--cache-dir", type=Path, default=None,
                       help="cache root (default: $XDG_CACHE_HOME/qsmbids)")
    fetch.add_argument("--atlas-dir", type=Path, default=None,
                       help="where to build the atlas (default: $QSMBIDS_ATLAS_DIR or "
                            "CACHE_DIR/atlas)")
    fetch.add_argument("--mirror", default=None, metavar="URL",
                       help="URL prefix serving the original files under their cache names "
                            "(e.g. file:///data/atlases); checksums are verified all the same")
    fetch.add_argument("--omp-nthreads", type=_positive_int, default=1,
                       help="threads for the one-off template registration")
    check = atlas_sub.add_parser("check", help="validate an atlas folder (atlas.json layout)")
    check.add_argument("atlas_dir", type=Path, help="folder holding atlas.json")
    return parser


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Parse a command line (without the program name).

    Exits with code 64 and a one-line message on a usage error, and with 0 after
    ``--help``/``--version``.
    """
    if argv and argv[0] in SUBCOMMANDS:
        return build_subcommand_parser().parse_args(argv)
    args = build_bids_app_parser().parse_args(argv)
    args.command = args.analysis_level
    return args
