"""Visual QC: figures, QC metrics and the participant and cohort HTML reports.

* :mod:`qsmbids.report.participant` — :class:`~qsmbids.report.participant.RunReportInputs`
  (one run's files and QC values) and
  :func:`~qsmbids.report.participant.write_participant_report`, which writes
  ``OUTPUT_DIR/sub-X.html``, its figures in ``OUTPUT_DIR/sub-X/figures/`` and the
  participant's QC table ``sub-X/figures/sub-X_qc.tsv``.
* :mod:`qsmbids.report.group` — :func:`~qsmbids.report.group.write_group_report`:
  ``OUTPUT_DIR/group.html`` (self-contained) and ``OUTPUT_DIR/group_qc.tsv``.
* :mod:`qsmbids.report.qc_metrics` — the metrics (pure numpy), their thresholds and
  plain-language warnings, and the QC TSV writers.
* :mod:`qsmbids.report.figures` — matplotlib (Agg canvas, headless) figures.
"""
