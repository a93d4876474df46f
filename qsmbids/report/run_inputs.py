"""What the participant report is given about one run: :class:`RunReportInputs`.

The images (file paths or nibabel images on the run's grid) and the values the
workflow's nodes reported (registration overlap, echo-fit residual, unwrapping
wraps, phase scaling), from which :mod:`qsmbids.report.participant` draws the
figures and :mod:`qsmbids.report.qc_metrics` the QC metrics.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib

from qsmbids.atlas.regions import DEFAULT_REGION_LABELS

#: an image given as a file path or as an in-memory NIfTI image
ImageSource = str | os.PathLike | nib.spatialimages.SpatialImage


def _default_regions() -> dict[str, tuple[int, ...]]:
    return {name: (label,) for name, label in DEFAULT_REGION_LABELS.items()}


@dataclass(frozen=True)
class RunReportInputs:
    """Everything the report shows about one run; any image may be ``None`` (then the
    figures and metrics that need it are left out and the page says so).

    All images must lie on one voxel grid (the run's subject space). Images are files
    (``.nii``/``.nii.gz``) or nibabel images.

    Attributes
    ----------
    participant_id
        ``sub-<label>``.
    run_id
        The run's entities as in its file names, e.g. ``sub-01_ses-1_run-1``; used in
        headings and figure names.
    session_id
        ``ses-<label>`` or ``None``.
    magnitude
        First-echo magnitude (3-D) or all echoes (4-D: the first is shown), a.u.
    mask
        Brain mask used by the reconstruction.
    field, field_units
        Unwrapped total field (echo-combined) and its units (``"ppm"`` or ``"Hz"``).
    local_field, local_field_units
        Local field after background removal and its units.
    qsm
        Susceptibility map, ppm.
    r2star
        R2* map, 1/s.
    dseg
        Atlas labels warped to the subject.
    regions
        Region name -> label numbers of ``dseg`` (``atlas.json`` ``"Regions"``); default:
        the phantom numbering (Caudate_L = 1 ... Dentate_R = 14).
    template
        Atlas template warped to the subject (its edges are drawn over the magnitude).
    regional_tsv
        The run's regional statistics table (TSV with a header row).
    echo_fit_residual
        Per-voxel residual of the phase-vs-TE fit, rad.
    registration_similarity, registration_metric
        Similarity reported by the registration and the metric's name.
    refinement_correlation
        (before, after) correlation of the susceptibility template with the map around
        the nuclei, reported by the susceptibility refinement; None without it.
    registration_note
        One sentence on how the nuclei were placed (refined on the map, or why the
        refinement was skipped), added to the captions of the nuclei zooms.
    unwrap_residual_wraps
        Wraps the unwrapping left (:func:`qsmbids.recon.unwrap.residual_wraps`).
    echo_fit_residual_stats
        (median, p95) of the echo-fit residual in the mask, rad, as the field
        estimation reported them (instead of ``echo_fit_residual``).
    template_overlap
        (Dice with the mask, NMI with the magnitude) of the registered template, as the
        registration reported them (instead of ``template``).
    references
        The atlas's reference regions (``WhiteMatter`` -> labels of ``dseg``) for the
        phase-sign check of the nuclei; empty: compared with the brain median.
    phase_units_rule, phase_units_guessed, phase_units_warning
        What the phase scaling step did (``PhaseUnitsRule``, ``PhaseUnitsGuessed``,
        ``PhaseUnitsWarning`` of its provenance, in the Chimap sidecar).
    minip, venogram
        The SWI's minimum-intensity projection (a.u.) and the QSM venogram (ppm).
    venous_oef, venous_voxels
        The run's oxygen extraction fraction from its veins and the centre-line voxels
        it was measured on (the ``*_desc-veins_stats.tsv`` table).
    warnings
        Extra warnings from the pipeline (plain-language sentences).
    """

    participant_id: str
    run_id: str
    session_id: str | None = None
    magnitude: ImageSource | None = None
    mask: ImageSource | None = None
    field: ImageSource | None = None
    field_units: str = "ppm"
    local_field: ImageSource | None = None
    local_field_units: str = "ppm"
    qsm: ImageSource | None = None
    r2star: ImageSource | None = None
    dseg: ImageSource | None = None
    regions: Mapping[str, Sequence[int]] = dataclasses.field(default_factory=_default_regions)
    template: ImageSource | None = None
    regional_tsv: str | os.PathLike | None = None
    echo_fit_residual: ImageSource | None = None
    registration_similarity: float | None = None
    registration_metric: str | None = None
    refinement_correlation: tuple[float, float] | None = None
    registration_note: str | None = None
    unwrap_residual_wraps: int | None = None
    echo_fit_residual_stats: tuple[float, float] | None = None
    template_overlap: tuple[float, float | None] | None = None
    references: Mapping[str, Sequence[int]] = dataclasses.field(default_factory=dict)
    phase_units_rule: str | None = None
    phase_units_guessed: bool | None = None
    phase_units_warning: str | None = None
    minip: ImageSource | None = None
    venogram: ImageSource | None = None
    venous_oef: float | None = None
    venous_voxels: int | None = None
    warnings: tuple[str, ...] = ()

    @classmethod
    def from_outputs(cls, participant_id: str, run_id: str, outputs: Mapping[str, ImageSource],
                     **extra) -> RunReportInputs:
        """Describe a run from the derivative files the pipeline wrote.

        Parameters
        ----------
        participant_id, run_id
            As in the class.
        outputs
            Output kind -> file, with the kinds of
            :data:`qsmbids.derivatives.naming.OUTPUT_KINDS` (``magnitude``, ``mask``,
            ``totalfield``, ``localfield``, ``chi``, ``r2star``, ``dseg``, ``regions``);
            other kinds are ignored. Field units are read from the images' JSON
            sidecars (``Units``) when present.
        **extra
            Any other field (``template``, ``session_id``, ``regions``, QC values...).
        """
        kinds = {"magnitude": "magnitude", "mask": "mask", "totalfield": "field",
                 "localfield": "local_field", "chi": "qsm", "r2star": "r2star",
                 "dseg": "dseg", "regions": "regional_tsv"}
        values = {name: outputs[kind] for kind, name in kinds.items() if kind in outputs}
        for name, units in (("field", "field_units"), ("local_field", "local_field_units")):
            found = _sidecar_units(values.get(name))
            if found and units not in extra:
                values[units] = found
        return cls(participant_id=participant_id, run_id=run_id, **{**values, **extra})


def _sidecar_units(image: ImageSource | None) -> str | None:
    """``Units`` of the JSON sidecar beside a NIfTI file, if there is one."""
    if not isinstance(image, (str, os.PathLike)):
        return None
    name = Path(image).name
    stem = name[: -len(".nii.gz")] if name.endswith(".nii.gz") else Path(name).stem
    sidecar = Path(image).with_name(stem + ".json")
    try:
        units = json.loads(sidecar.read_text(encoding="utf-8")).get("Units")
    except (OSError, ValueError, AttributeError):
        return None
    return units if isinstance(units, str) else None
