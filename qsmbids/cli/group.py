"""The ``group`` level: cohort tables from the participants' regional tables (and the report)."""

from __future__ import annotations

import importlib
import sys
from typing import TextIO

from qsmbids.cli.exit_codes import ExitCode
from qsmbids.workflows.settings import Settings


def run_group(settings: Settings, stream: TextIO | str | None = "stderr") -> int:
    """Build the cohort tables (issue 6's table builder) and, when available, the group report.

    Returns
    -------
    int
        0 on success, 1 when no participant table was found or the report failed.
    """
    from qsmbids.bids.derivatives import init_output_dir, output_lock

    if stream == "stderr":
        stream = sys.stderr
    init_output_dir(settings.output_dir, settings.bids_dir)
    try:
        tables = importlib.import_module("qsmbids.stats.tables")
    except ImportError:
        if stream is not None:
            stream.write("qsmbids: error: cohort tables are not available in this version "
                         "(qsmbids.stats.tables is missing)\n")
        return int(ExitCode.UNAVAILABLE)
    with output_lock(settings.output_dir):
        written = tables.write_group_tables(settings.output_dir, settings.bids_dir)
    if stream is not None:
        for path in written or []:
            stream.write(f"qsmbids: wrote {path}\n")
    code = int(ExitCode.OK if written else ExitCode.RUNS_FAILED)
    try:
        report = importlib.import_module("qsmbids.report.group")
    except ImportError:
        return code
    try:
        path = report.write_group_report(settings.output_dir, settings.bids_dir)
        if stream is not None:
            stream.write(f"qsmbids: wrote {path}\n")
    except Exception as exc:  # the report must not hide the tables
        if stream is not None:
            stream.write(f"qsmbids: group report failed: {type(exc).__name__}: {exc}\n")
        return int(ExitCode.RUNS_FAILED)
    return code
