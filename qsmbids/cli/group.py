"""The ``group`` level: cohort tables from the participants' regional tables, and the report."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TextIO

from qsmbids.cli.exit_codes import ExitCode
from qsmbids.workflows.settings import Settings


def run_group(settings: Settings, stream: TextIO | str | None = "stderr") -> int:
    """Write the cohort tables (long and wide) and the cohort HTML report.

    The tables come from :func:`qsmbids.stats.tables.write_cohort_tables` (joined
    with ``BIDS_DIR/participants.tsv``); the report from
    :func:`qsmbids.report.group.write_group_report`. Shared files are written under
    the OUTPUT_DIR lock, so a group step can run while participant jobs finish.

    Returns
    -------
    int
        0 on success; 1 when no participant table exists or the report failed.
    """
    from qsmbids.bids.derivatives import init_output_dir, output_lock
    from qsmbids.stats.tables import TableError, write_cohort_tables

    if stream == "stderr":
        stream = sys.stderr

    def say(text: str) -> None:
        if stream is not None:
            stream.write(text + "\n")

    init_output_dir(settings.output_dir, settings.bids_dir)
    participants = Path(settings.bids_dir) / "participants.tsv"
    try:
        with output_lock(settings.output_dir):
            long_path, wide_path = write_cohort_tables(
                settings.output_dir, "Chimap",
                participants_tsv=participants if participants.is_file() else None)
    except TableError as exc:
        say(f"qsmbids: error: {exc} (run the participant level first)")
        return int(ExitCode.RUNS_FAILED)
    say(f"qsmbids: wrote {long_path}")
    say(f"qsmbids: wrote {wide_path}")
    try:
        from qsmbids.report.group import write_group_report

        report = write_group_report(settings.output_dir, settings.bids_dir,
                                    regional_table=long_path)
        say(f"qsmbids: wrote {getattr(report, 'html', report)}")
    except Exception as exc:  # the report must not hide the tables
        say(f"qsmbids: group report failed: {type(exc).__name__}: {exc}")
        return int(ExitCode.RUNS_FAILED)
    return int(ExitCode.OK)
