"""Per-run regional tables (TSV + JSON sidecar) and the cohort tables built from them.

Pure functions on records and files (no nipype). Every file is written
atomically (temporary file in the same folder, then ``os.replace``).

Per-run table: one row per region (``region``, ``hemisphere`` and the statistic
columns of :data:`qsmbids.stats.regional.STAT_COLUMNS`), with a sidecar that
declares each column (``Description``, ``Units``) plus ``Measure``, ``Atlas`` and
``Sources``. The run's BIDS entities come from its file name.

Cohort tables (``group`` level): long format, one row per
participant/session/run/region with the ``participants.tsv`` columns joined
(age, sex, ...); and a wide format, one row per participant/session/run with a
column per region and statistic (``Caudate_L_mean``, ...).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from qsmbids.atomic import atomic_write_text
from qsmbids.derivatives.file_cache import FileCache
from qsmbids.entities import parse_entities
from qsmbids.stats.regional import STAT_COLUMNS

#: measure name -> units of the map values
MEASURE_UNITS = {"Chimap": "ppm", "R2starmap": "1/s", "T2starmap": "s"}
#: entities identifying a run, in column order (BIDS TSV column names)
ENTITY_COLUMNS = {"sub": "participant_id", "ses": "session_id", "acq": "acq", "rec": "rec",
                  "run": "run"}
N_A = "n/a"

_DESCRIPTIONS = {
    "region": ("Region name (atlas region; bilateral rows drop the _L/_R suffix)", None),
    "hemisphere": ("L, R or bilateral", None),
    "n_voxels": ("Voxels used: in the region, inside the reconstruction mask, finite "
                 "(zero values are kept)", None),
    "volume_mm3": ("Volume of the voxels used", "mm^3"),
    "mean": ("Mean", "value"),
    "median": ("Median", "value"),
    "std": ("Sample standard deviation (ddof=1)", "value"),
    "iqr": ("Interquartile range (75th - 25th percentile)", "value"),
    "p05": ("5th percentile", "value"),
    "p95": ("95th percentile", "value"),
    "robust_mean": ("10% trimmed mean (lowest and highest 10% of values discarded)", "value"),
    "coverage": ("Fraction of the region's voxels inside the reconstruction mask", None),
    "border_fraction": ("Fraction of used voxels touching a voxel outside the region "
                        "(6-neighbourhood): partial-volume exposure", None),
}


class TableError(ValueError):
    """A table file is malformed; the message names it."""


def _fmt(value: object) -> str:
    if value is None:
        return N_A
    if isinstance(value, float):
        if math.isnan(value):
            return N_A
        return f"{value:.6g}"
    return str(value)


def format_tsv(records: Sequence[Mapping[str, object]], columns: Sequence[str]) -> str:
    """Render records as TSV text (``n/a`` for missing/NaN; floats to 6 significant digits)."""
    lines = ["\t".join(columns)]
    lines += ["\t".join(_fmt(r.get(c)) for c in columns) for r in records]
    return "\n".join(lines) + "\n"


def _parse(text: str) -> object:
    if text == N_A or text == "":
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def read_tsv(path: str | os.PathLike, *, convert: bool = True) -> list[dict[str, object]]:
    """Read a TSV into records (``n/a`` -> None; numbers parsed when ``convert``)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise TableError(f"cannot read table {path}: {exc.strerror}") from None
    reader = csv.DictReader(io.StringIO(text), delimiter="\t")
    if not reader.fieldnames:
        raise TableError(f"table {path} has no header line")
    rows = []
    for line_no, row in enumerate(reader, start=2):
        if None in row or any(v is None for v in row.values()):
            raise TableError(f"table {path} line {line_no}: wrong number of columns")
        rows.append({k: (_parse(v) if convert else v) for k, v in row.items()})
    return rows


def column_sidecar(measure: str) -> dict[str, dict[str, str]]:
    """Column descriptions and units of a per-run table for ``measure`` (e.g. ``Chimap``)."""
    if measure not in MEASURE_UNITS:
        raise ValueError(f"measure must be one of {sorted(MEASURE_UNITS)}, got {measure!r}")
    unit = MEASURE_UNITS[measure]
    out = {}
    for col, (desc, units) in _DESCRIPTIONS.items():
        entry = {"Description": desc}
        if units is not None:
            entry["Units"] = unit if units == "value" else units
        out[col] = entry
    return out


def write_run_table(
    records: Sequence[Mapping[str, object]],
    tsv_path: str | os.PathLike,
    *,
    measure: str = "Chimap",
    atlas: str | None = None,
    sources: Sequence[str] = (),
    extra: Mapping[str, object] | None = None,
) -> tuple[Path, Path]:
    """Write one run's regional table and its JSON sidecar.

    Parameters
    ----------
    records
        From :func:`qsmbids.stats.regional.regional_statistics`.
    tsv_path
        Output path ending in ``.tsv``; the name carries the run's entities
        (e.g. ``sub-01_ses-1_run-1_desc-qsmbidsDGM_Chimap_stats.tsv``).
    measure
        ``Chimap`` (ppm), ``R2starmap`` (1/s) or ``T2starmap`` (s).
    atlas
        Atlas name, recorded in the sidecar.
    sources
        BIDS URIs of the map, labels and mask.
    extra
        Further sidecar keys (e.g. ``Erosion``, registration QC).

    Returns
    -------
    (tsv path, json path)
    """
    tsv_path = Path(tsv_path)
    if tsv_path.suffix != ".tsv":
        raise ValueError(f"table path must end in .tsv: {tsv_path}")
    columns = ["region", "hemisphere", *STAT_COLUMNS]
    sidecar = {
        "Measure": measure,
        "Units": MEASURE_UNITS[measure] if measure in MEASURE_UNITS else None,
        "Atlas": atlas,
        "Sources": list(sources),
        **(extra or {}),
        **column_sidecar(measure),
    }
    json_path = tsv_path.with_suffix(".json")
    atomic_write_text(tsv_path, format_tsv(records, columns))
    atomic_write_text(json_path, json.dumps(sidecar, indent=2) + "\n")
    return tsv_path, json_path


def find_run_tables(derivatives_dir: str | os.PathLike, measure: str = "Chimap",
                    cache: FileCache | None = None) -> list[Path]:
    """Per-run tables of ``measure`` under ``derivatives_dir/sub-*`` (sidecar ``Measure``).

    ``cache`` (optional) keeps each sidecar's ``Measure`` between group runs.
    """
    root = Path(derivatives_dir)
    found = []
    for tsv in sorted(root.glob("sub-*/**/*_stats.tsv")):
        side = tsv.with_suffix(".json")
        try:
            kind = (_sidecar_measure(side) if cache is None
                    else cache.get(side, _sidecar_measure))
        except OSError:
            continue
        if kind == measure:
            found.append(tsv)
    return found


def _sidecar_measure(path: Path) -> str | None:
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return None
    return meta.get("Measure") if isinstance(meta, dict) else None


def read_participants(path: str | os.PathLike | None) -> dict[str, dict[str, object]]:
    """``participants.tsv`` as participant label (without ``sub-``) -> other columns."""
    if path is None or not Path(path).is_file():
        return {}
    rows = read_tsv(path)
    if rows and "participant_id" not in rows[0]:
        raise TableError(f"{path} has no participant_id column")
    return {str(r["participant_id"]).removeprefix("sub-"):
            {k: v for k, v in r.items() if k != "participant_id"} for r in rows}


def build_cohort_table(
    run_tables: Iterable[str | os.PathLike],
    participants: Mapping[str, Mapping[str, object]] | None = None,
    cache: FileCache | None = None,
) -> tuple[list[dict[str, object]], list[str]]:
    """Long cohort table: one row per participant/session/run/region.

    Parameters
    ----------
    run_tables
        Per-run TSVs (entities taken from the file names).
    participants
        From :func:`read_participants`; its columns (age, sex, ...) are joined
        on the participant label (``n/a`` for participants it lacks).
    cache
        Keeps each run table's parsed rows between group runs, so that a grown
        cohort reads only its new or rewritten tables (the result is the same).

    Returns
    -------
    (records, columns)
        Records sorted by participant, session, run, then table order.
    """
    participants = participants or {}
    extra_cols: list[str] = []
    for info in participants.values():
        for k in info:
            if k not in extra_cols:
                extra_cols.append(k)
    tables = []
    for path in run_tables:
        ents = parse_entities(path)
        if "sub" not in ents:
            raise TableError(f"run table name lacks a sub- entity: {path}")
        tables.append((ents, read_tsv(path) if cache is None else cache.get(path, read_tsv)))
    present = [e for e in ENTITY_COLUMNS if any(e in ents for ents, _ in tables)]
    entity_cols = [ENTITY_COLUMNS[e] for e in ["sub", *[e for e in present if e != "sub"]]]

    def key(item):
        ents = item[0]
        return tuple(_natural(ents.get(e, "")) for e in ENTITY_COLUMNS)

    records = []
    stat_cols: list[str] = []
    for ents, rows in sorted(tables, key=key):
        base = {ENTITY_COLUMNS[e]: (f"sub-{v}" if e == "sub" else f"ses-{v}" if e == "ses"
                                    else v) for e, v in ents.items() if e in ENTITY_COLUMNS}
        info = participants.get(ents["sub"], {})
        for row in rows:
            for c in row:
                if c not in stat_cols:
                    stat_cols.append(c)
            records.append({**base, **{c: info.get(c) for c in extra_cols}, **row})
    # a participants.tsv column named like a table column (e.g. hematocrit): the
    # table's value, the one the run used, is kept
    extra_cols = [c for c in extra_cols if c not in stat_cols]
    return records, [*entity_cols, *extra_cols, *stat_cols]


def _natural(text: str) -> tuple[int, object]:
    return (0, int(text)) if text.isdigit() else (1, text)


def to_wide(records: Sequence[Mapping[str, object]], columns: Sequence[str],
            stats: Sequence[str] = ("mean", "robust_mean", "n_voxels")
            ) -> tuple[list[dict[str, object]], list[str]]:
    """Wide cohort table: one row per participant/session/run, ``<region>_<stat>`` columns.

    Parameters
    ----------
    records, columns
        From :func:`build_cohort_table`.
    stats
        Statistics to spread into columns.

    Returns
    -------
    (records, columns)
    """
    id_cols = [c for c in columns if c not in ("region", "hemisphere", *STAT_COLUMNS)]
    rows: dict[tuple, dict[str, object]] = {}
    value_cols: list[str] = []
    for rec in records:
        ident = tuple(rec.get(c) for c in id_cols)
        row = rows.setdefault(ident, {c: rec.get(c) for c in id_cols})
        for s in stats:
            col = f"{rec['region']}_{s}"
            if col not in value_cols:
                value_cols.append(col)
            row[col] = rec.get(s)
    return list(rows.values()), [*id_cols, *value_cols]


def _gather_run_tables(root: Path, measure: str,
                       participants_tsv: str | os.PathLike | None, incremental: bool
                       ) -> tuple[list[Path], list[dict[str, object]], list[str]]:
    """The per-run tables of ``measure`` under ``root`` and their long cohort table
    (:func:`build_cohort_table`), read through the group level's cache when
    ``incremental``; no tables: ``([], [], [])``."""
    cache = FileCache(root, f"run-tables-{measure}") if incremental else None
    tables = find_run_tables(root, measure, cache)
    if not tables:
        return [], [], []
    records, columns = build_cohort_table(tables, read_participants(participants_tsv), cache)
    if cache is not None:
        cache.save()
    return tables, records, columns


def write_cohort_tables(
    derivatives_dir: str | os.PathLike,
    measure: str = "Chimap",
    *,
    participants_tsv: str | os.PathLike | None = None,
    wide_stats: Sequence[str] = ("mean", "robust_mean", "n_voxels"),
    incremental: bool = True,
) -> tuple[Path, Path]:
    """Write ``group_<measure>_regions.tsv`` (long) and ``..._wide.tsv`` at the dataset root.

    Parameters
    ----------
    derivatives_dir
        qsmbids output folder holding ``sub-*`` per-run tables.
    measure
        Which tables to gather (``Chimap``, ``R2starmap``).
    participants_tsv
        The raw dataset's ``participants.tsv`` (optional).
    wide_stats
        Statistics in the wide table.
    incremental
        Keep the per-run tables' contents in ``derivatives_dir/.qsmbids-cache/``
        (:class:`~qsmbids.derivatives.file_cache.FileCache`) and reuse them for the
        tables that did not change since the last call: a cohort that grew is merged
        reading only the new runs' tables. The tables written are the same either way.

    Returns
    -------
    (long tsv path, wide tsv path)

    Raises
    ------
    TableError
        When no per-run table of ``measure`` exists.
    """
    root = Path(derivatives_dir)
    tables, records, columns = _gather_run_tables(root, measure, participants_tsv, incremental)
    if not tables:
        raise TableError(f"no per-run {measure} tables (*_stats.tsv) under {root}/sub-*")
    wide, wide_cols = to_wide(records, columns, wide_stats)
    long_path = root / f"group_{measure}_regions.tsv"
    wide_path = root / f"group_{measure}_regions_wide.tsv"
    atomic_write_text(long_path, format_tsv(records, columns))
    atomic_write_text(wide_path, format_tsv(wide, wide_cols))
    units = MEASURE_UNITS.get(measure)
    col_meta = column_sidecar(measure)
    atomic_write_text(long_path.with_suffix(".json"), json.dumps(
        {"Measure": measure, "Units": units, "RunTables": [str(t.relative_to(root))
                                                           for t in tables], **col_meta},
        indent=2) + "\n")
    wide_meta = {c: {"Description": f"{col_meta[s]['Description']} of {c[:-len(s) - 1]}",
                     **({"Units": col_meta[s]["Units"]} if "Units" in col_meta[s] else {})}
                 for c in wide_cols for s in wide_stats if c.endswith(f"_{s}")
                 and not c.endswith(f"_robust_{s}")}
    atomic_write_text(wide_path.with_suffix(".json"), json.dumps(
        {"Measure": measure, "Units": units, **wide_meta}, indent=2) + "\n")
    return long_path, wide_path


def write_cohort_veins_table(derivatives_dir: str | os.PathLike, *,
                             participants_tsv: str | os.PathLike | None = None,
                             incremental: bool = True) -> Path | None:
    """Write ``group_veins.tsv``: one row per run of its venous susceptibility and OEF.

    The rows are the per-run ``*_desc-veins_stats.tsv`` tables (sidecar ``Measure``
    ``Veins``) with the participant, session and run columns and the
    ``participants.tsv`` columns joined; the sidecar carries their column
    descriptions and units.

    Parameters
    ----------
    derivatives_dir
        qsmbids output folder.
    participants_tsv
        The raw dataset's ``participants.tsv`` (optional).
    incremental
        Reuse what earlier calls read from unchanged tables (see
        :func:`write_cohort_tables`).

    Returns
    -------
    pathlib.Path or None
        The table, or None when no run has a venous table.
    """
    root = Path(derivatives_dir)
    tables, records, columns = _gather_run_tables(root, "Veins", participants_tsv, incremental)
    if not tables:
        return None
    path = root / "group_veins.tsv"
    atomic_write_text(path, format_tsv(records, columns))
    meta = json.loads(tables[0].with_suffix(".json").read_text(encoding="utf-8"))
    meta = {k: v for k, v in meta.items() if k in columns}
    atomic_write_text(path.with_suffix(".json"), json.dumps(
        {"Measure": "Veins", "Description": "Venous susceptibility and oxygen extraction "
         "fraction per run", **meta}, indent=2) + "\n")
    return path
