"""Per-participant values from the raw dataset's ``participants.tsv``."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path

from qsmbids.stats.tables import TableError, read_participants

#: ``participants.tsv`` columns read as the haematocrit (case-insensitive)
HEMATOCRIT_COLUMNS = ("hematocrit", "haematocrit", "hct")
HEMATOCRIT_SOURCE = "participants.tsv"


def read_hematocrits(bids_dir: str | os.PathLike) -> tuple[dict[str, float], list[str]]:
    """Haematocrit (fraction) per participant label from ``BIDS_DIR/participants.tsv``.

    A ``hematocrit`` (or ``haematocrit``, ``hct``) column is read; values above 1 are
    taken as percent (42 -> 0.42). Missing values (``n/a``) are left out.

    Returns
    -------
    (values, problems)
        Label (without ``sub-``) -> fraction, and one line per value that could not
        be used (naming the participant and the value), for the log.
    """
    path = Path(bids_dir) / "participants.tsv"
    try:
        table = read_participants(path if path.is_file() else None)
    except TableError as exc:
        return {}, [f"{path}: {exc}"]
    return hematocrits_from(table, path)


def hematocrits_from(table: Mapping[str, Mapping[str, object]], path: Path | str
                     ) -> tuple[dict[str, float], list[str]]:
    """:func:`read_hematocrits` on an already read table (label -> columns)."""
    values: dict[str, float] = {}
    problems: list[str] = []
    for label, columns in table.items():
        column = next((c for c in columns if c.lower() in HEMATOCRIT_COLUMNS), None)
        raw = columns.get(column) if column else None
        if raw is None:
            continue
        try:
            value = float(raw)
        except (TypeError, ValueError):
            value = math.nan
        if value > 1:
            value /= 100.0
        if not 0.1 <= value <= 0.7:
            problems.append(f"{path}: sub-{label} has {column}={raw!r}, not a haematocrit "
                            "(0.1-0.7, or 10-70 %); the default is used")
            continue
        values[label] = value
    return values, problems
