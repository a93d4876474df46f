"""QC tables: one row per run (metrics, warning codes, critical flags), written per run
and concatenated for the cohort, so that a large cohort can be screened without
opening any report."""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Mapping
from dataclasses import asdict, fields
from pathlib import Path

from qsmbids.atomic import atomic_write_text
from qsmbids.report.qc_metrics import QCWarning, RunQC, critical_flags, format_qc_value

#: columns of a QC table, in order: identifiers, metrics, warnings
QC_ID_COLUMNS: tuple[str, ...] = ("participant_id", "session_id", "run_id")
QC_METRIC_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(RunQC))
QC_COLUMNS: tuple[str, ...] = (*QC_ID_COLUMNS, *QC_METRIC_COLUMNS, "n_warnings", "warnings",
                               "qc_flags")


def qc_row(participant_id: str, session_id: str | None, run_id: str, qc: RunQC,
           warnings: Iterable[QCWarning] = ()) -> dict[str, str]:
    """One QC table row (all values as text, ``n/a`` where missing).

    Parameters
    ----------
    participant_id
        ``sub-<label>``.
    session_id
        ``ses-<label>`` or ``None``.
    run_id
        Name of the run's entities, e.g. ``sub-01_ses-1_run-1``.
    qc
        Metrics of the run.
    warnings
        Findings of :func:`qc_warnings` (and any passed in by the pipeline).
    """
    codes = [w.code for w in warnings]
    row = {"participant_id": participant_id, "session_id": format_qc_value(session_id),
           "run_id": run_id}
    row.update({name: format_qc_value(value) for name, value in asdict(qc).items()})
    row["n_warnings"] = str(len(codes))
    row["warnings"] = ",".join(codes)
    row["qc_flags"] = ",".join(critical_flags(codes))
    return row


def write_qc_tsv(rows: Iterable[Mapping[str, str]], path: str | os.PathLike) -> Path:
    """Write QC rows (see :func:`qc_row`) as a tab-separated table, atomically.

    Used for one run's QC file and for the cohort QC table alike.
    """
    lines = ["\t".join(QC_COLUMNS)]
    for row in rows:
        missing = [c for c in QC_COLUMNS if c not in row]
        if missing:
            raise ValueError(f"QC row lacks columns {missing}")
        lines.append("\t".join(str(row[c]) for c in QC_COLUMNS))
    return atomic_write_text(path, "\n".join(lines) + "\n")


def read_qc_tsv(path: str | os.PathLike) -> list[dict[str, str]]:
    """Read a QC table written by :func:`write_qc_tsv`."""
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def write_cohort_qc_tsv(run_tables: Iterable[str | os.PathLike],
                        path: str | os.PathLike) -> Path:
    """Concatenate per-run QC tables into one cohort QC table, sorted by identifiers."""
    # tables of older versions lack newer columns: those read n/a
    rows = [{c: row[c] if row.get(c) is not None else "n/a" for c in QC_COLUMNS}
            for table in run_tables for row in read_qc_tsv(table)]
    rows.sort(key=lambda r: tuple(r[c] for c in QC_ID_COLUMNS))
    return write_qc_tsv(rows, path)
