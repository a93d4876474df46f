"""Find every GRE run (multi- or single-echo) of a BIDS dataset and check it before any
work starts.

A *run* is the set of files of one acquisition: all echoes of the magnitude and
phase (or real and imaginary) parts sharing subject, session, ``acq``, ``rec`` and
``run`` entities. Echoes come either as one file per echo (``echo-<n>`` entity) or
as one 4-D file per part holding every echo (``EchoTime`` is then a list in the
sidecar). A file with one ``EchoTime`` and no ``echo`` entity (a single-echo
``T2starw``/``GRE``/SWI series, or a one-echo ``MEGRE``) is a run of one echo; such a
magnitude without a phase part is an anatomical image and is listed in
:attr:`Discovery.skipped` with the reason, as are files of an unknown ``part``.

Two levels of checks keep one bad run from stopping a cohort:

* :func:`discover_runs` reads only names and sidecars (fast) and sets aside runs
  with missing echoes, missing or implausible ``EchoTime``, unknown field strength
  or too few echoes, each with a message naming what is wrong;
* :func:`validate_run` reads the images of one run (corrupt or truncated files,
  2-D data, mismatched shapes or affines, images that are mostly NaN, 4-D echo counts;
  a NaN background is set to 0 when the images are loaded).

The input dataset is only read: pybids is used without a database file.
"""

from __future__ import annotations

import itertools
import json
import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import nibabel as nib

from qsmbids.bids.run_checks import validate_run
from qsmbids.entities import LABEL_KEYS, RUN_ENTITIES, join_entities
from qsmbids.runs import (
    Discovery,
    GreRun,
    RunProblem,
    bids_uri,
    run_sources,
    summarize,
)

#: suffixes that may hold GRE data for QSM (multi- or single-echo; a single-echo
#: T2starw/GRE counts when it has a phase part)
GRE_SUFFIXES = ("MEGRE", "T2starw", "GRE")
#: image parts; a file without ``part`` is a magnitude image (BIDS)
PARTS = ("mag", "phase", "real", "imag")
_NIFTI = [".nii", ".nii.gz"]
#: echo times above this (seconds) are almost certainly milliseconds
_MAX_ECHO_TIME_S = 0.5


class DiscoveryError(Exception):
    """The dataset as a whole cannot be searched (bad filter file, no dataset)."""


def load_bids_filters(path: Path | None) -> dict[str, dict[str, Any]]:
    """Read a ``--bids-filter-file``: JSON of pybids filters keyed by query (``megre``, ``t1w``).

    Raises
    ------
    DiscoveryError
        If the file is not JSON, not an object of objects, or uses an unknown key.
    """
    if path is None:
        return {}
    try:
        filters = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DiscoveryError(f"cannot read --bids-filter-file {path}: {exc}") from None
    if not isinstance(filters, dict) or not all(isinstance(v, dict) for v in filters.values()):
        raise DiscoveryError(
            f"--bids-filter-file {path} must be a JSON object like "
            '{"megre": {"acquisition": "fast"}, "t1w": {"reconstruction": "norm"}}'
        )
    unknown = set(filters) - {"megre", "t1w"}
    if unknown:
        raise DiscoveryError(
            f"--bids-filter-file {path}: unknown query {sorted(unknown)}; use 'megre' or 't1w'"
        )
    return filters


def _subject_ignore(labels: Sequence[str] | None) -> list[Any]:
    """pybids ignore patterns that skip indexing of unselected subjects (fast on big cohorts)."""
    ignore: list[Any] = ["code", "stimuli", "sourcedata", "models", "derivatives",
                         re.compile(r"^/\.")]
    if labels:
        alternatives = "|".join(re.escape(label) for label in labels)
        ignore.append(re.compile(rf"^/sub-(?!({alternatives})(/|$))"))
    return ignore


def make_layout(bids_dir: Path, participant_label: Sequence[str] | None = None):
    """Index ``bids_dir`` with pybids, read only (no database file is written)."""
    from bids import BIDSLayout
    from bids.layout import BIDSLayoutIndexer

    indexer = BIDSLayoutIndexer(validate=False, ignore=_subject_ignore(participant_label))
    return BIDSLayout(str(bids_dir), validate=False, derivatives=False, indexer=indexer)


def _label(value: Any) -> str | None:
    return None if value is None else str(value)


def _run_name(key: tuple) -> str:
    """File name stem of a run key (subject, session, acq, rec, run), e.g. ``sub-01_ses-1``."""
    subject, *labels = key
    return join_entities({"sub": subject, **{
        LABEL_KEYS[e]: v for e, v in zip(RUN_ENTITIES, labels, strict=True)}})


def _echo_time_list(meta: Mapping[str, Any]) -> list[float] | None:
    """Echo times of a 4-D file: ``EchoTime`` as a list, or ``EchoTime1``, ``EchoTime2``..."""
    te = meta.get("EchoTime")
    if isinstance(te, (list, tuple)):
        return [float(t) for t in te]
    numbered = sorted(
        (int(k[len("EchoTime"):]), float(v)) for k, v in meta.items()
        if re.fullmatch(r"EchoTime\d+", k) and isinstance(v, (int, float))
    )
    return [v for _, v in numbered] or None


class _RunBuilder:
    """Collects the files of one run and turns them into a GreRun or a RunProblem."""

    def __init__(self, key: tuple, suffix: str, bids_dir: Path) -> None:
        self.key = key
        self.suffix = suffix
        self.bids_dir = bids_dir
        # part -> echo (None for 4-D) -> list of (path, metadata)
        self.files: dict[str, dict[int | None, list[tuple[Path, dict]]]] = defaultdict(
            lambda: defaultdict(list))

    @property
    def name(self) -> str:
        return _run_name(self.key)

    def add(self, path: Path, part: str, echo: int | None, meta: dict) -> None:
        self.files[part][echo].append((path, meta))

    @property
    def magnitude_only_single_echo(self) -> bool:
        """A lone T2starw/GRE magnitude (no phase, one echo): not meant for QSM."""
        return (self.suffix != "MEGRE" and set(self.files) == {"mag"}
                and list(self.files["mag"]) in ([1], [None]))

    def _rel(self, path: Path) -> str:
        try:
            return str(path.relative_to(self.bids_dir))
        except ValueError:
            return str(path)

    def build(self, field_strength: float | None, min_echoes: int,
              t1w: Path | None) -> GreRun | RunProblem:
        problem = self._problem
        parts = set(self.files)
        if {"real", "imag"} <= parts:
            wanted = ("real", "imag")
        elif {"mag", "phase"} <= parts:
            wanted = ("mag", "phase")
        elif "mag" in parts and "phase" not in parts:
            return problem("no phase images (part-phase) for this run; QSM needs the phase")
        elif "phase" in parts:
            return problem("no magnitude images (part-mag) for this run")
        else:
            return problem(f"incomplete complex data: found only part-{'/'.join(sorted(parts))}")
        for part in wanted:
            for echo, entries in self.files[part].items():
                if len(entries) > 1:
                    names = ", ".join(self._rel(p) for p, _ in entries)
                    return problem(f"several files for part-{part} echo {echo}: {names}")
        four_d = all(list(self.files[p]) == [None] for p in wanted)
        if not four_d and any(None in self.files[p] for p in wanted):
            return problem("mixes 4-D files (no echo entity) and per-echo files")
        if four_d:
            return self._build_4d(wanted, field_strength, min_echoes, t1w)
        return self._build_echoes(wanted, field_strength, min_echoes, t1w)

    def _problem(self, message: str) -> RunProblem:
        return RunProblem(self.name, message, self.key[0])

    def _build_echoes(self, wanted, field_strength, min_echoes, t1w):
        echoes = [sorted(self.files[p]) for p in wanted]
        all_echoes = sorted(set(echoes[0]) | set(echoes[1]))
        for part, have in zip(wanted, echoes, strict=True):
            missing = [e for e in all_echoes if e not in have]
            if missing:
                return self._problem(
                    f"missing echo {', '.join(map(str, missing))} of part-{part} "
                    f"(found echoes {', '.join(map(str, have))})")
        gaps = sorted(set(range(1, max(all_echoes) + 1)) - set(all_echoes))
        if gaps:
            return self._problem(
                f"missing echo {', '.join(map(str, gaps))} (found echoes "
                f"{', '.join(map(str, all_echoes))}); echo numbers must run from 1 without gaps")
        times = []
        for echo in all_echoes:
            values = []
            for part in wanted:
                path, meta = self.files[part][echo][0]
                te = meta.get("EchoTime")
                if te is None:
                    return self._problem(f"no EchoTime in the sidecar of {self._rel(path)}")
                if not isinstance(te, (int, float)):
                    return self._problem(f"EchoTime of {self._rel(path)} is not a number: {te!r}")
                values.append(float(te))
            if max(values) - min(values) > 1e-6:
                return self._problem(
                    f"echo {echo}: EchoTime differs between parts ({values[0]} vs {values[1]} s)")
            times.append(values[0])
        paths = [tuple(self.files[p][e][0][0] for e in all_echoes) for p in wanted]
        return self._finish(wanted, paths, times, False, field_strength, min_echoes, t1w)

    def _build_4d(self, wanted, field_strength, min_echoes, t1w):
        times_per_part = []
        for part in wanted:
            path, meta = self.files[part][None][0]
            times = _echo_time_list(meta)
            if times is None:
                if isinstance(meta.get("EchoTime"), (int, float)):
                    times = [float(meta["EchoTime"])]
                else:
                    return self._problem(
                        f"no EchoTime in the sidecar of {self._rel(path)} (a 4-D file needs "
                        "EchoTime as a list of all its echo times in seconds)")
            times_per_part.append(times)
        if times_per_part[0] != times_per_part[1]:
            return self._problem(
                f"EchoTime lists differ between parts: {times_per_part[0]} vs {times_per_part[1]}")
        paths = [(self.files[p][None][0][0],) for p in wanted]
        return self._finish(wanted, paths, times_per_part[0], True, field_strength,
                            min_echoes, t1w)

    def _finish(self, wanted, paths, times, four_d, field_strength, min_echoes, t1w):
        if any(t <= 0 for t in times):
            return self._problem(f"echo times must be positive seconds, got {times}")
        if max(times) > _MAX_ECHO_TIME_S:
            return self._problem(
                f"EchoTime values {times} look like milliseconds; BIDS requires seconds")
        if any(b <= a for a, b in itertools.pairwise(times)):
            return self._problem(f"echo times are not increasing with the echo number: {times}")
        if len(times) < min_echoes:
            return self._problem(
                f"only {len(times)} echo(es); the chosen methods need at least {min_echoes}")
        meta = self.files[wanted[1]][None if four_d else 1][0][1]
        notes = []
        sidecar_b0 = meta.get("MagneticFieldStrength")
        if field_strength is not None:
            b0 = float(field_strength)
            if sidecar_b0 is not None and abs(float(sidecar_b0) - b0) > 1e-3:
                notes.append(f"--field-strength {b0} T overrides MagneticFieldStrength "
                             f"{sidecar_b0} T of the sidecar")
        elif sidecar_b0 is None:
            return self._problem(
                f"no MagneticFieldStrength in the sidecar of {self._rel(paths[1][0])}; "
                "pass --field-strength (tesla)")
        else:
            b0 = float(sidecar_b0)
        if not b0 > 0:
            return self._problem(f"field strength must be positive tesla, got {b0}")
        if len(times) == 1:
            notes.append("single echo: no phase-offset removal (the offset is removed with "
                         "the background field) and no R2*/T2* maps")
        channels = _channel_count(paths[1][0], four_d)
        if channels > 1:
            if wanted[0] == "real":
                return self._problem(
                    f"{channels} uncombined coil channels of real/imaginary parts: only "
                    "magnitude/phase channels are combined so far; export magnitude and "
                    "phase, or combined images")
            if len(times) < 2:
                return self._problem(
                    f"{self._rel(paths[1][0])} holds {channels} volumes but one EchoTime: "
                    "if they are echoes, give EchoTime as a list of all their echo times "
                    "in its sidecar; if they are coil channels of a single echo, export "
                    "combined images (the coil combination, MCPC-3D-S, needs two echoes)")
            notes.append(f"{channels} uncombined coil channels: combined by MCPC-3D-S "
                         "before field estimation")
        subject, session, acq, rec, run = self.key
        files = dict(zip(wanted, paths, strict=True))
        units = meta.get("Units") if wanted[1] == "phase" else None
        return GreRun(
            subject=subject, session=session, acquisition=acq, reconstruction=rec, run=run,
            suffix=self.suffix, echo_times=tuple(times),
            magnitude=files.get("mag", ()), phase=files.get("phase", ()),
            real=files.get("real", ()), imag=files.get("imag", ()), four_d=four_d,
            channels=channels,
            field_strength=b0, phase_units=units, t1w=t1w, bids_dir=self.bids_dir,
            metadata=dict(meta), notes=tuple(notes),
        )


def field_map_units(meta: Mapping[str, Any], name: str) -> tuple[str, float | None]:
    """Units of a field map from its sidecar, and the echo time in s of an unwrapped
    phase (``Units`` rad; None otherwise).

    Raises
    ------
    ValueError
        Naming ``name`` when ``Units`` is missing or unknown, or rad comes without a
        plausible ``EchoTime``.
    """
    from qsmbids.recon.units import FIELD_MAP_UNITS

    units = meta.get("Units")
    if units not in FIELD_MAP_UNITS:
        raise ValueError(f"{name}: Units {units!r} in its sidecar; a field map needs one of "
                         f"{', '.join(FIELD_MAP_UNITS)}")
    if units != "rad":
        return str(units), None
    te = meta.get("EchoTime")
    if not isinstance(te, (int, float)) or not 0 < te <= _MAX_ECHO_TIME_S:
        raise ValueError(f"{name}: an unwrapped phase (Units rad) needs its EchoTime in "
                         f"seconds in the sidecar, got {te!r}")
    return "rad", float(te)


def _field_map_run(path: Path, ent: Mapping[str, Any], meta: Mapping[str, Any],
                   bids_dir: Path, field_strength: float | None,
                   t1w: Path | None) -> GreRun | RunProblem:
    """A run from a BIDS ``fieldmap`` image with its ``magnitude`` (case 3 of the BIDS
    field maps), entering the pipeline after field estimation."""
    key = (str(ent["subject"]), *(_label(ent.get(e)) for e in RUN_ENTITIES))
    name = _run_name(key)

    def problem(message: str) -> RunProblem:
        return RunProblem(name, message, key[0])

    rel = _relative(path, bids_dir)
    try:
        units, echo_time = field_map_units(meta, rel)
    except ValueError as exc:
        return problem(str(exc))
    stem = path.name.split(".")[0]
    candidates = [path.with_name(path.name.replace(stem, stem[: -len("fieldmap")] + suffix))
                  for suffix in ("magnitude", "magnitude1")]
    magnitude = next((c for c in candidates if c.is_file()), None)
    if magnitude is None:
        return problem(f"{rel}: no {candidates[0].name} beside it; the field map needs its "
                       "magnitude for the brain mask")
    b0 = field_strength if field_strength is not None else meta.get("MagneticFieldStrength")
    if b0 is None or not float(b0) > 0:
        return problem(f"no MagneticFieldStrength in the sidecar of {rel}; pass "
                       "--field-strength (tesla)")
    return GreRun(
        subject=key[0], session=key[1], acquisition=key[2], reconstruction=key[3],
        run=key[4], suffix="fieldmap", echo_times=(), magnitude=(magnitude,), phase=(),
        four_d=False, field_map=path, field_map_units=str(units),
        field_map_echo_time=echo_time, field_strength=float(b0),
        t1w=t1w, bids_dir=bids_dir, metadata=dict(meta),
        notes=(f"field map given ({units}): no phase scaling, offset removal, "
               "unwrapping or echo fit; no R2*/T2* maps",))


def _channel_count(path: Path, four_d: bool) -> int:
    """Coil channels of a run from its first phase (or imaginary) file's header: the 4th
    axis of a per-echo file, the 5th of a 4-D file (1 when unreadable: validation then
    names the problem)."""
    try:
        shape = nib.load(str(path)).header.get_data_shape()
    except Exception:  # validate_run reports unreadable files
        return 1
    if four_d:
        return int(shape[4]) if len(shape) >= 5 and shape[4] > 1 else 1
    return int(shape[3]) if len(shape) >= 4 and shape[3] > 1 else 1


def _find_t1w(layout, subject: str, session: str | None, filters: Mapping[str, Any]):
    from bids.layout import Query

    query = {"subject": subject, "suffix": "T1w", "extension": _NIFTI,
             "datatype": "anat", **filters}
    for ses in ([session] if session is not None else []) + [Query.NONE]:
        found = sorted(layout.get(session=ses, return_type="filename", **query))
        if found:
            return Path(found[0])
    return None


def discover_runs(
    bids_dir: Path,
    *,
    participant_label: Sequence[str] | None = None,
    session_label: Sequence[str] | None = None,
    bids_filters: Mapping[str, Mapping[str, Any]] | None = None,
    field_strength: float | None = None,
    min_echoes: int = 1,
    layout=None,
) -> Discovery:
    """List the multi-echo GRE runs of a BIDS dataset.

    Parameters
    ----------
    bids_dir
        Root of the raw BIDS dataset (only read).
    participant_label, session_label
        Labels without ``sub-``/``ses-``; None for all.
    bids_filters
        pybids filters keyed by query: ``megre`` (the GRE images) and ``t1w``.
    field_strength
        B0 in tesla used where sidecars lack ``MagneticFieldStrength`` and overriding
        it where they have it (noted in ``GreRun.notes``).
    min_echoes
        Fewest echoes the chosen methods accept; runs with fewer are set aside.
    layout
        An existing ``bids.BIDSLayout`` (else one is made).

    Returns
    -------
    Discovery
        Runs sorted by name, and problems (one specific message per run set aside).
    """
    bids_dir = Path(bids_dir).absolute()
    filters = {k: dict(v) for k, v in (bids_filters or {}).items()}
    if layout is None:
        layout = make_layout(bids_dir, participant_label)
    query: dict[str, Any] = {"extension": _NIFTI, "suffix": list(GRE_SUFFIXES)}
    if participant_label:
        query["subject"] = list(participant_label)
    if session_label:
        query["session"] = list(session_label)
    query.update(filters.get("megre", {}))
    builders: dict[tuple, _RunBuilder] = {}
    skipped: list[str] = []
    for bids_file in layout.get(**query):
        ent = bids_file.get_entities()
        suffix = ent["suffix"]
        echo = ent.get("echo")
        meta = layout.get_metadata(bids_file.path)
        part = ent.get("part", "mag")
        if part not in PARTS:
            skipped.append(f"{_relative(bids_file.path, bids_dir)}: part-{part} is not one "
                           f"of {', '.join(PARTS)}")
            continue
        if echo is None and isinstance(meta.get("EchoTime"), (int, float)):
            echo = 1  # one echo time, no echo entity: a single-echo GRE/SWI image
        key = (str(ent["subject"]),
               *(_label(ent.get(e)) for e in RUN_ENTITIES))
        builder = builders.setdefault((*key, suffix), _RunBuilder(key, suffix, bids_dir))
        builder.add(Path(bids_file.path), part, None if echo is None else int(echo), meta)
    runs: list[GreRun] = []
    problems: list[RunProblem] = []
    t1w_filters = filters.get("t1w", {})
    fm_query = {**query, "suffix": "fieldmap"}
    for bids_file in layout.get(**fm_query):
        t1w = _find_t1w(layout, str(bids_file.get_entities()["subject"]),
                        _label(bids_file.get_entities().get("session")), t1w_filters)
        result = _field_map_run(Path(bids_file.path), bids_file.get_entities(),
                                layout.get_metadata(bids_file.path), bids_dir,
                                field_strength, t1w)
        (problems if isinstance(result, RunProblem) else runs).append(result)
    for full_key in sorted(builders, key=lambda k: tuple("" if v is None else v for v in k)):
        builder = builders[full_key]
        if builder.magnitude_only_single_echo:
            paths = [p for entries in builder.files["mag"].values() for p, _ in entries]
            skipped += [f"{_relative(p, bids_dir)}: a single-echo {builder.suffix} magnitude "
                        "without part-phase (an anatomical image, not QSM input)"
                        for p in paths]
            continue
        t1w = _find_t1w(layout, builder.key[0], builder.key[1], t1w_filters)
        result = builder.build(field_strength, min_echoes, t1w)
        (problems if isinstance(result, RunProblem) else runs).append(result)
    names = [r.prefix for r in runs]
    clashes = {n for n in names if names.count(n) > 1}
    if clashes:  # the same entities under two suffixes (e.g. MEGRE and T2starw, or a
        # GRE run and a field map): the wrapped phase wins
        best = {n: min((r for r in runs if r.prefix == n),
                       key=lambda r: (r.suffix != "MEGRE", r.suffix == "fieldmap"))
                for n in clashes}
        runs = [r for r in runs if r.prefix not in clashes or r is best[r.prefix]]
    runs.sort(key=lambda r: tuple("" if v is None else v for v in
                                  (r.subject, r.session, r.acquisition, r.reconstruction,
                                   r.run)))
    return Discovery(tuple(runs), tuple(problems), tuple(skipped))


def _relative(path: str | Path, root: Path) -> str:
    try:
        return Path(path).absolute().relative_to(root).as_posix()
    except ValueError:
        return str(path)


__all__ = ["GRE_SUFFIXES", "PARTS", "RUN_ENTITIES", "Discovery", "DiscoveryError", "GreRun",
           "RunProblem", "bids_uri", "discover_runs", "load_bids_filters", "make_layout",
           "run_sources", "summarize", "validate_run"]
