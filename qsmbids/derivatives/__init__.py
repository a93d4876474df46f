"""The one place that names and writes qsmbids derivatives (shared by every layer).

``OUTPUT_DIR`` is a BIDS derivative dataset::

    dataset_description.json   DatasetType "derivative", GeneratedBy, DatasetLinks.raw
    CITATION.md                methods boilerplate of the settings used
    sub-<s>/[ses-<t>/]anat/<run>_space-orig_desc-<ref>_Chimap.nii.gz (+ .json) ...
    sub-<s>/log/<run>.log, <run>_manifest.json

Every file is written atomically and files shared by concurrent participant runs
(dataset_description, CITATION.md, group tables) under the output lock, both from
:mod:`qsmbids.atomic`. A run's *manifest* is written last: a run is complete
when its manifest exists, was made with the same settings and every file it lists
is present with the recorded size.

Modules: :mod:`~qsmbids.derivatives.naming` (entities, file names, folders),
:mod:`~qsmbids.derivatives.sidecars` (the JSON sidecars),
:mod:`~qsmbids.derivatives.run_outputs` (a run's files, its manifest and state) and
:mod:`~qsmbids.derivatives.dataset` (dataset_description.json, CITATION.md, the
container).
"""
