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

    ``group_qc.tsv`` (the participants' QC rows) is written first, also when there are
    no regional tables (``--atlas none``), and its QC-flagged runs are listed.

    Returns
    -------
    int
        0 on success; 1 when no participant table exists or the report failed.
    """
    from qsmbids.atomic import output_lock
    from qsmbids.derivatives.dataset import init_output_dir
    from qsmbids.stats.tables import (
        TableError,
        write_cohort_tables,
        write_cohort_veins_table,
    )

    if stream == "stderr":
        stream = sys.stderr

    def say(text: str) -> None:
        if stream is not None:
            stream.write(text + "\n")

    init_output_dir(settings.output_dir, settings.bids_dir)
    qc_table = _write_group_qc(settings.output_dir, say)
    participants = Path(settings.bids_dir) / "participants.tsv"
    participants_tsv = participants if participants.is_file() else None
    try:
        with output_lock(settings.output_dir):
            long_path, wide_path = write_cohort_tables(
                settings.output_dir, "Chimap",
                participants_tsv=participants_tsv)
    except TableError as exc:
        say(f"qsmbids: error: {exc} (run the participant level first)")
        return int(ExitCode.RUNS_FAILED)
    say(f"qsmbids: wrote {long_path}")
    say(f"qsmbids: wrote {wide_path}")
    with output_lock(settings.output_dir):
        veins_path = write_cohort_veins_table(settings.output_dir,
                                              participants_tsv=participants_tsv)
    if veins_path is not None:
        say(f"qsmbids: wrote {veins_path}")
    try:
        from qsmbids.report.group import write_group_report

        report = write_group_report(settings.output_dir, settings.bids_dir,
                                    regional_table=long_path, qc_table=qc_table)
        say(f"qsmbids: wrote {getattr(report, 'html', report)}")
    except Exception as exc:  # the report must not hide the tables
        say(f"qsmbids: group report failed: {type(exc).__name__}: {exc}")
        return int(ExitCode.RUNS_FAILED)
    return int(ExitCode.OK)


def _write_group_qc(output_dir: Path, say) -> Path | None:
    """``OUTPUT_DIR/group_qc.tsv`` from the participants' QC tables; say which runs are
    QC-flagged. None when no participant has a QC table yet."""
    from qsmbids.atomic import output_lock
    from qsmbids.report.qc_tables import read_qc_tsv, write_cohort_qc_tsv

    found = sorted(Path(output_dir).glob("sub-*/figures/sub-*_qc.tsv"))
    if not found:
        return None
    with output_lock(output_dir):
        path = write_cohort_qc_tsv(found, Path(output_dir) / "group_qc.tsv")
    rows = read_qc_tsv(path)
    flagged = [r for r in rows if r.get("qc_flags") not in (None, "", "n/a")]
    say(f"qsmbids: wrote {path} ({len(flagged)} of {len(rows)} run(s) QC-flagged)")
    for row in flagged:
        say(f"  QC FLAG {row['run_id']}: {row['qc_flags']} (see the sub-*.html report)")
    return path
