"""The cohort QC report: ``OUTPUT_DIR/group.html``.

Per region, the distribution of a regional value (default: the mean susceptibility)
across participants' runs, the same values against age when known, outliers flagged
by a robust z-score (median/MAD), the QC metrics table of every run and a list of all
participants with links to their reports. The page is one self-contained file: its
figures are embedded as PNG data URIs.
"""

from __future__ import annotations

import base64
import datetime as _dt
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from qsmbids.atlas.regions import DEFAULT_REGIONS, bilateral_name
from qsmbids.atomic import atomic_write_text
from qsmbids.derivatives.file_cache import FileCache
from qsmbids.entities import parse_entities
from qsmbids.report import cohort_figures as cf
from qsmbids.report import figures as fg
from qsmbids.report import html as hp
from qsmbids.report.cohort_veins import venous_section
from qsmbids.report.participant import THUMBNAIL_DESC
from qsmbids.report.qc_metrics import robust_z
from qsmbids.report.qc_tables import QC_COLUMNS, write_cohort_qc_tsv
from qsmbids.stats.tables import (
    ENTITY_COLUMNS,
    build_cohort_table,
    find_run_tables,
    read_participants,
)


@dataclass(frozen=True)
class CohortColumns:
    """Column names of the cohort regional table (long format: one row per
    participant/session/run/region).

    Attributes
    ----------
    participant, session
        Identifier columns (``session`` may be absent from the table).
    run
        Column holding a whole run id (``sub-01_ses-1_run-1``); when absent the id is
        composed from the entity columns (participant_id, session_id, acq, rec, run).
    region
        Region name column.
    value
        Column plotted and screened for outliers (ppm).
    age
        Age column (years), in the table or in ``participants.tsv``.
    """

    participant: str = "participant_id"
    session: str = "session_id"
    run: str = "run_id"
    region: str = "region"
    value: str = "mean"
    age: str = "age"


@dataclass(frozen=True)
class GroupReport:
    """Result of :func:`write_group_report`."""

    html: Path
    participants: tuple[str, ...]
    outliers: pd.DataFrame


def _read_table(table: pd.DataFrame | str | os.PathLike, what: str) -> pd.DataFrame:
    if isinstance(table, pd.DataFrame):
        return table.copy()
    try:
        return pd.read_csv(table, sep="\t", na_values=["n/a"], keep_default_na=True,
                           dtype=str)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise ValueError(f"cannot read the {what} {table}: {exc}") from exc


def _sub(label: str) -> str:
    label = str(label)
    return label if label.startswith("sub-") else f"sub-{label}"


def _png_data_uri(plot: Callable[[Path], Path]) -> str:
    with tempfile.TemporaryDirectory(prefix="qsmbids-group-") as tmp:
        path = plot(Path(tmp) / "figure.png")
        data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f"data:image/png;base64,{data}"


def _region_order(present: Sequence[str], regions: Sequence[str] | None) -> list[str]:
    if regions is not None:
        missing = [r for r in regions if r not in present]
        if missing:
            raise ValueError(f"regions not in the regional table: {missing}")
        return list(regions)
    # the default regions in their order, then the atlas's others (e.g. the subthalamic
    # nucleus of the default atlas), as they come
    lateral = [r for r in DEFAULT_REGIONS if r in present]
    if lateral:
        return lateral + [r for r in dict.fromkeys(present)
                          if r not in lateral and bilateral_name(r) != r]
    bilateral = list(dict.fromkeys(bilateral_name(r) for r in DEFAULT_REGIONS))
    shown = [r for r in bilateral if r in present]
    return (shown + [r for r in dict.fromkeys(present) if r not in shown]) if shown \
        else sorted(present)


def cohort_values(table: pd.DataFrame, columns: CohortColumns, regions: Sequence[str],
                  outlier_z: float) -> tuple[list[cf.CohortValues], pd.DataFrame]:
    """Per-region values, robust z-scores and outlier flags.

    Parameters
    ----------
    table
        Long-format regional table with an ``age`` column (NaN where unknown).
    columns
        Its column names.
    regions
        Regions to include, in order.
    outlier_z
        |robust z| above which a value is an outlier.

    Returns
    -------
    values : list of CohortValues
    outliers : pandas.DataFrame
        Columns ``run``, ``region``, ``value``, ``robust_z``.
    """
    entries, flagged = [], []
    for region in regions:
        rows = table[table[columns.region] == region]
        values = pd.to_numeric(rows[columns.value], errors="coerce").to_numpy(np.float64)
        z = robust_z(values)
        outlier = np.abs(np.nan_to_num(z)) > outlier_z
        ids = tuple(rows[_RUN_ID])
        ages = pd.to_numeric(rows[columns.age], errors="coerce").to_numpy(np.float64)
        qc_flagged = (rows[_QC_FLAG].to_numpy(bool) if _QC_FLAG in rows.columns
                      else np.zeros(len(rows), bool))
        entries.append(cf.CohortValues(region, values, ids, outlier, ages, qc_flagged))
        flagged += [{"run": ids[k], "region": region, "value": values[k],
                     "robust_z": z[k]} for k in np.flatnonzero(outlier)]
    return entries, pd.DataFrame(flagged, columns=["run", "region", "value", "robust_z"])


#: side (px) of each thumbnail in the cohort montage: up to
#: :data:`~qsmbids.report.cohort_figures.MAX_CAPTIONED_TILES` runs, and beyond
MONTAGE_LARGE_TILE_PX = 200
MONTAGE_TILE_PX = 80
_QC_FLAG = "_qc_warning"
_RUN_ID = "_run_id"


def _mark_qc_warnings(table: pd.DataFrame, qc: pd.DataFrame | None,
                      columns: CohortColumns) -> pd.DataFrame:
    """Add a boolean column: the row's run has QC warnings (matched by run id when both
    tables have one, else by participant)."""
    if qc is None or "n_warnings" not in qc.columns:
        return table.assign(**{_QC_FLAG: False})
    warned = qc[pd.to_numeric(qc["n_warnings"], errors="coerce").fillna(0) > 0]
    if "run_id" in qc.columns and table[_RUN_ID].isin(set(qc["run_id"])).any():
        flagged = table[_RUN_ID].isin(set(warned["run_id"]))
    else:  # run ids do not match: a participant with a warned run is flagged whole
        flagged = table[columns.participant].map(_sub).isin(
            set(warned["participant_id"].map(_sub)))
    return table.assign(**{_QC_FLAG: flagged.to_numpy(bool)})


def _thumbnail_montage(output_dir: Path, ages: dict[str, float], flagged_runs: set[str],
                       incremental: bool = True) -> tuple[str, list[str]] | None:
    """Data URI of the basal-ganglia thumbnails of all runs ordered by age, and their
    captions in that order (None if there are none). Thumbnails are read at
    :data:`MONTAGE_TILE_PX` (:data:`MONTAGE_LARGE_TILE_PX` up to
    :data:`qsmbids.report.cohort_figures.MAX_CAPTIONED_TILES` runs), so a cohort of a
    thousand runs costs tens of MB, not gigabytes."""
    found = sorted(output_dir.glob(f"sub-*/figures/*_desc-{THUMBNAIL_DESC}_qc.png"))
    if not found:
        return None
    items = []
    for path in found:
        run_id = path.name.split(f"_desc-{THUMBNAIL_DESC}")[0]
        label = parse_entities(run_id).get("sub")
        age = ages.get(f"sub-{label}" if label else run_id, float("nan"))
        warned = run_id in flagged_runs
        caption = f"{run_id} · {'age n/a' if np.isnan(age) else f'{age:g} y'}"
        caption += " · QC!" if warned else ""
        items.append((np.inf if np.isnan(age) else age, run_id, caption, path, warned))
    items.sort(key=lambda item: item[:2])
    side = (MONTAGE_LARGE_TILE_PX if len(items) <= cf.MAX_CAPTIONED_TILES
            else MONTAGE_TILE_PX)
    read = partial(_read_tile, side=side)
    if incremental:  # tiles kept as base64 bytes in the cache, read only when new
        cache = FileCache(output_dir, f"thumbnails-{side}px")
        thumbnails = [(caption, _tile_from_text(cache.get(path, partial(
            _tile_as_text, side=side)), side)) for _, _, caption, path, _ in items]
        cache.save()
    else:
        thumbnails = [(caption, read(path)) for _, _, caption, path, _ in items]
    flagged = [warned for *_, warned in items]
    uri = _png_data_uri(lambda p: cf.plot_thumbnail_montage(
        thumbnails, p, flagged=flagged, title="QSM through the basal ganglia, ordered by "
        f"age (fixed window {fg.QSM_WINDOW_PPM[0]:g} to {fg.QSM_WINDOW_PPM[1]:g} ppm; "
        "red frame: QC warnings)"))
    return uri, [caption for caption, _ in thumbnails]


def _read_tile(path: Path, side: int) -> np.ndarray:
    """A thumbnail PNG as a ``side`` x ``side`` uint8 RGB array."""
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB").resize((side, side), Image.LANCZOS))


def _tile_as_text(path: Path, side: int) -> str:
    return base64.b64encode(_read_tile(path, side).tobytes()).decode("ascii")


def _tile_from_text(text: str, side: int) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), np.uint8).reshape(side, side, 3)


def _join_age(table: pd.DataFrame, participants_tsv: str | os.PathLike | None,
              columns: CohortColumns) -> pd.DataFrame:
    if columns.age in table.columns and table[columns.age].notna().any():
        return table
    table = table.drop(columns=[columns.age], errors="ignore")
    if participants_tsv is None:
        table[columns.age] = np.nan
        return table
    people = _read_table(participants_tsv, "participants table")
    if "participant_id" not in people.columns:
        raise ValueError(f"{participants_tsv} has no participant_id column")
    if columns.age not in people.columns:
        table[columns.age] = np.nan
        return table
    people = people.assign(_sub=people["participant_id"].map(_sub))[["_sub", columns.age]]
    table = table.assign(_sub=table[columns.participant].map(_sub))
    return table.merge(people, on="_sub", how="left").drop(columns="_sub")


def run_ids(table: pd.DataFrame, columns: CohortColumns) -> pd.Series:
    """Run id of each row (``sub-01_ses-1_run-2``, as the pipeline names runs): the
    ``columns.run`` column when the table has one, else composed from the entity
    columns (participant_id, session_id, acq, rec, run) present."""
    if columns.run in table.columns:
        return table[columns.run].astype(str)

    def compose(row: pd.Series) -> str:
        parts = []
        for key, column in ENTITY_COLUMNS.items():
            column = columns.participant if key == "sub" else column
            value = row.get(column)
            if isinstance(value, str) and value and value != "n/a":
                parts.append(value if value.startswith(f"{key}-") else f"{key}-{value}")
        return "_".join(parts)

    return table.apply(compose, axis=1) if len(table) else pd.Series([], dtype=str)


def collect_run_tables(output_dir: str | os.PathLike,
                       participants_tsv: str | os.PathLike | None = None) -> pd.DataFrame:
    """The cohort long table built from the per-run susceptibility tables under
    ``output_dir`` (:func:`qsmbids.stats.tables.build_cohort_table`).

    Raises
    ------
    ValueError
        When there is no per-run table.
    """
    found = find_run_tables(output_dir, "Chimap")
    if not found:
        raise ValueError(f"no per-run regional tables under {output_dir}: run the "
                         "participant level first")
    records, names = build_cohort_table(found, read_participants(participants_tsv))
    return pd.DataFrame.from_records(records, columns=names)


def write_group_report(
    output_dir: str | os.PathLike,
    bids_dir: str | os.PathLike | None = None,
    *,
    regional_table: pd.DataFrame | str | os.PathLike | None = None,
    qc_table: pd.DataFrame | str | os.PathLike | None = None,
    participants_tsv: str | os.PathLike | None = None,
    columns: CohortColumns = CohortColumns(),
    regions: Sequence[str] | None = None,
    outlier_z: float = 3.5,
    incremental: bool = True,
) -> GroupReport:
    """Write ``OUTPUT_DIR/group.html`` (and the cohort QC table ``OUTPUT_DIR/group_qc.tsv``).

    Tables not given are found in ``output_dir``: the per-run regional tables
    (``*_regions.tsv``, see :func:`collect_run_tables`), the participants' QC tables
    (``sub-*/figures/sub-*_qc.tsv`` written by the participant report) and
    ``BIDS_DIR/participants.tsv``.

    Parameters
    ----------
    output_dir
        Derivatives dataset root (participant reports ``sub-X.html`` are linked).
    bids_dir
        The raw dataset (for ``participants.tsv``).
    regional_table
        Cohort regional table (TSV path or DataFrame), long format, see
        :class:`CohortColumns`; values in ppm.
    qc_table
        Cohort QC table (:func:`qsmbids.report.qc_metrics.write_cohort_qc_tsv`).
    participants_tsv
        BIDS ``participants.tsv`` (for ages when the regional table has none, and for
        listing participants without results).
    columns
        Column names of ``regional_table``.
    regions
        Regions to show, in order (default: the default lateral regions present,
        else the bilateral ones, else all).
    outlier_z
        |robust z-score| above which a value is flagged.
    incremental
        Keep the resized thumbnail tiles in ``output_dir/.qsmbids-cache/`` and reuse
        those of unchanged thumbnails, so a grown cohort reads only its new ones.

    Returns
    -------
    GroupReport
        The HTML path, every participant listed, and the outliers.
    """
    output_dir = Path(output_dir)
    if qc_table is None:
        found = sorted(output_dir.glob("sub-*/figures/sub-*_qc.tsv"))
        if found:
            qc_table = write_cohort_qc_tsv(found, output_dir / "group_qc.tsv")
    if participants_tsv is None and bids_dir is not None:
        candidate = Path(bids_dir) / "participants.tsv"
        participants_tsv = candidate if candidate.is_file() else None
    if regional_table is None:
        regional_table = collect_run_tables(output_dir, participants_tsv)
    table = _read_table(regional_table, "regional table")
    for needed in (columns.participant, columns.region, columns.value):
        if needed not in table.columns:
            raise ValueError(f"the regional table has no {needed!r} column "
                             f"(columns: {', '.join(map(str, table.columns))})")
    table = _join_age(table, participants_tsv, columns)
    table[_RUN_ID] = run_ids(table, columns).to_numpy()
    qc = _read_table(qc_table, "QC table") if qc_table is not None else None
    table = _mark_qc_warnings(table, qc, columns)
    order = _region_order(sorted(set(table[columns.region].dropna())), regions)
    entries, outliers = cohort_values(table, columns, order, outlier_z)

    participants = set(table[columns.participant].map(_sub))
    if qc is not None and "participant_id" in qc.columns:
        participants |= set(qc["participant_id"].map(_sub))
    if participants_tsv is not None:
        participants |= set(_read_table(participants_tsv, "participants table")
                            ["participant_id"].map(_sub))
    participants_sorted = tuple(sorted(participants))

    ylabel = f"{columns.value} susceptibility (ppm)"
    n_runs = table[_RUN_ID].nunique()
    body = ['<h2 id="participants">Participants</h2>',
            f"<p>{len(participants_sorted)} participant(s); {n_runs} run(s) with regional "
            "values.</p>"]
    with_values = set(table[columns.participant].map(_sub))
    rows = []
    for sub in participants_sorted:
        link = output_dir / f"{sub}.html"
        rows.append({"participant_id": sub,
                     "report": f"{sub}.html" if link.exists() else "(no report)",
                     "regional values": "yes" if sub in with_values else "no"})
    body.append(hp.table(["participant_id", "report", "regional values"], rows,
                         flagged=[r["regional values"] == "no" for r in rows]))

    ages = {}
    for sub, age in zip(table[columns.participant].map(_sub),
                        pd.to_numeric(table[columns.age], errors="coerce"), strict=True):
        ages.setdefault(sub, float(age))
    flagged_runs = set()
    if qc is not None and {"run_id", "n_warnings"} <= set(qc.columns):
        flagged_runs = set(qc.loc[pd.to_numeric(qc["n_warnings"], errors="coerce") > 0,
                                  "run_id"])
    montage = _thumbnail_montage(output_dir, ages, flagged_runs, incremental)
    if montage is not None:
        uri, order = montage
        body.append('<h2 id="montage">Basal ganglia by age</h2>')
        body.append(hp.figure(
            uri, "basal ganglia of every run ordered by age",
            "An axial slice through the basal ganglia (atlas centroid) of every run, youngest "
            "first, in the fixed QSM window: iron accumulates with age, so the putamen "
            "and caudate should brighten along the rows. A red frame and 'QC!' mark runs "
            "with QC warnings (an off-centre view hints at a failed registration). "
            + (f"Order: {'; '.join(order)}." if len(order) <= cf.MAX_CAPTIONED_TILES else
               "Tiles are numbered in order: "
               + "; ".join(f"{k} {caption}" for k, caption in enumerate(order, start=1))
               + ".")))
    body.append('<h2 id="distributions">Regional distributions</h2>')
    body.append(hp.figure(
        _png_data_uri(lambda p: cf.plot_region_distributions(entries, p, ylabel=ylabel)),
        "regional distributions",
        f"Column '{columns.value}' of each run, per region: box (median, quartiles) and "
        f"points; red crosses are outliers (robust z-score |z| > {outlier_z:g}, from the "
        "median and the median absolute deviation of that region).", light=True))
    body.append('<h2 id="age">Against age</h2>')
    if any(np.isfinite(e.ages).any() for e in entries):
        body.append(hp.figure(
            _png_data_uri(lambda p: cf.plot_values_vs_age(entries, p, ylabel="ppm")),
            "values against age",
            "Per region, the value of each run against the participant's age with a "
            "least-squares line (slope in ppb per year).", light=True))
    else:
        body.append('<p class="note">No ages: neither the regional table nor '
                    "participants.tsv has an 'age' column with values.</p>")
    body.append('<h2 id="outliers">Outliers</h2>')
    if outliers.empty:
        body.append(hp.warning_list([], none_text="No regional value is an outlier."))
    else:
        body.append(hp.warning_list(
            (f"{row.run}: {row.region} = {row.value:.4f} ppm (robust z {row.robust_z:+.1f})"
             for row in outliers.itertuples()), heading="Outliers"))
    veins = venous_section(output_dir / "group_veins.tsv", _png_data_uri)
    body += veins
    body.append('<h2 id="qc">QC metrics per run</h2>')
    if qc is None:
        body.append('<p class="note">No QC table was given.</p>')
    else:
        shown = [c for c in QC_COLUMNS if c in qc.columns] or list(qc.columns)
        records = qc.fillna("n/a").to_dict("records")
        flags = [str(r.get("n_warnings", "0")) not in ("0", "n/a") for r in records]
        body.append('<p class="note">Rows with warnings are highlighted; the codes are '
                    "explained in each participant's report.</p>")
        body.append(hp.table(shown, records, flagged=flags))
    nav = [("participants", "Participants"), ("montage", "By age"),
           ("distributions", "Distributions"),
           ("age", "Age"), ("outliers", "Outliers"),
           *([("veins", "Veins")] if veins else []), ("qc", "QC metrics")]
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    page = hp.page("qsmbids cohort report", f"Generated {stamp}", nav, "\n".join(body))
    html_path = atomic_write_text(output_dir / "group.html", page)
    return GroupReport(html_path, participants_sorted, outliers)
