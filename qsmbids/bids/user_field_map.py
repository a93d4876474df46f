"""A field map the user brings (``--field-map``) in place of a run's wrapped phase.

Other tools write B0 maps or unwrapped phases (a scanner's own field map, ROMEO's
``B0.nii``, a SEPIA or QSMxT total field); with ``--field-map`` such a file replaces the
phase of a GRE run, which keeps its magnitude (all echoes: the brain mask and the
R2*/T2* maps still come from it). The map enters the pipeline after field estimation.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from qsmbids.bids.discovery import field_map_units
from qsmbids.runs import GreRun


def sidecar_of(path: Path) -> Path:
    """The JSON sidecar beside a NIfTI file (``x.nii.gz`` -> ``x.json``)."""
    name = path.name
    for ext in (".nii.gz", ".nii"):
        if name.endswith(ext):
            return path.with_name(name[: -len(ext)] + ".json")
    return path.with_suffix(".json")


def find_user_field_map(given: Path, run: GreRun, n_runs: int) -> Path:
    """The ``--field-map`` file for a run.

    Parameters
    ----------
    given
        A NIfTI file (for a selection of one run) or a folder searched, recursively,
        for ``<run>*fieldmap.nii[.gz]`` (e.g. ``sub-01_run-1_fieldmap.nii.gz``).
    run
        The run that needs its map.
    n_runs
        Runs selected in all: one file cannot serve several runs (each has its own field).

    Raises
    ------
    ValueError
        Naming what was looked for when there is no map, or when one file is given
        for several runs.
    """
    given = Path(given)
    if given.is_dir():
        found = sorted(given.rglob(f"{run.prefix}_*fieldmap.nii*"))
        if not found:
            raise ValueError(f"no field map for {run.prefix} in {given} (looked for "
                             f"{run.prefix}_*fieldmap.nii[.gz])")
        return found[0].absolute()
    if given.is_file():
        if n_runs > 1:
            raise ValueError(f"--field-map {given} is one file but {n_runs} runs are "
                             "selected, each with its own field: give a folder of "
                             "<run>_fieldmap.nii.gz files, or select the run with "
                             "--participant-label/--session-label/--bids-filter-file")
        return given.absolute()
    raise ValueError(f"--field-map {given} does not exist")


def with_user_field_map(run: GreRun, path: Path, units: str | None = None) -> GreRun:
    """The run with its wrapped phase replaced by a given field map.

    Parameters
    ----------
    run
        A GRE run of magnitude/phase parts.
    path
        The field map: one 3-D NIfTI volume on the run's grid.
    units
        ``Hz``, ``rad/s``, ``ppm`` or ``rad`` (an unwrapped phase, whose ``EchoTime``
        in s must be in the sidecar); None: ``Units`` of the JSON sidecar beside
        ``path``. Given, it overrides the sidecar.

    Raises
    ------
    ValueError
        Naming the file when its units (or echo time) are unknown or unusable, or when
        the run has no magnitude to make the mask from.
    """
    if run.complex_parts or not run.magnitude:
        raise ValueError(f"--field-map {path.name}: {run.prefix} is stored as real/imaginary "
                         "parts; the field map replaces the phase of a magnitude/phase run")
    sidecar = sidecar_of(path)
    meta = {}
    if sidecar.is_file():
        try:
            meta = json.loads(sidecar.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"cannot read {sidecar}: {exc}") from None
    if units is not None:
        meta["Units"] = units
    try:
        units, echo_time = field_map_units(meta, path.name)
    except ValueError as exc:
        hint = "" if "Units" in meta else f" ({sidecar.name} with Units, or --field-map-units)"
        raise ValueError(f"{exc}{hint}") from None
    note = (f"field map given with --field-map ({path.name}, {units}) in place of the phase: "
            "no phase scaling, offset removal, unwrapping or echo fit")
    return dataclasses.replace(run, phase=(), real=(), imag=(), field_map=Path(path),
                               field_map_units=units, field_map_echo_time=echo_time,
                               notes=(*run.notes, note))
