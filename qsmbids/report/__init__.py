"""Visual QC: figures, QC metrics and the participant and cohort HTML reports."""
