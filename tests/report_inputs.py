"""Synthetic participant runs for the report tests, written with nibabel.

Built from the head phantom (:func:`qsmbids.sim.phantom.make_head_phantom`, whose
deep-nuclei susceptibility rises with age): the "QSM" is the true susceptibility in
the brain plus noise, the local field its forward field, the total field adds the
field of the sources outside the brain, the magnitude is the first echo's signal.
The "registered template" is a T1w-like image of the phantom, optionally moved by a
rigid transform together with the atlas labels, to imitate a failed registration.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from qsmbids.atlas.regions import phantom_regions
from qsmbids.recon.dipole import forward_field
from qsmbids.report.participant import RunReportInputs
from qsmbids.sim.phantom import make_head_phantom
from qsmbids.stats.regional import regional_statistics
from qsmbids.stats.tables import write_run_table

FIRST_ECHO_S = 0.004


def _rigid(volume: np.ndarray, voxel_mm: float, shift_mm: float, rotation_deg: float,
           order: int) -> np.ndarray:
    """Rotate about z through the grid centre and shift along x (mm)."""
    if shift_mm == 0 and rotation_deg == 0:
        return volume
    angle = np.deg2rad(rotation_deg)
    matrix = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0],
                       [0, 0, 1]])
    centre = (np.array(volume.shape) - 1) / 2.0
    offset = centre - matrix @ centre - np.array([shift_mm / voxel_mm, 0, 0])
    return ndimage.affine_transform(volume, matrix, offset=offset, order=order)


def synthetic_run(out_dir: Path, participant: str, *, age: float = 40.0,
                  session: str | None = None, voxel_mm: float = 3.0, shift_mm: float = 0.0,
                  rotation_deg: float = 0.0, seed: int = 0,
                  with_tsv: bool = True) -> RunReportInputs:
    """Write one synthetic run's images to ``out_dir`` and describe them for the report."""
    rng = np.random.default_rng(seed)
    head = make_head_phantom(voxel_mm, age_years=age)
    brain = head.brain_mask
    vox = head.voxel_size
    chi_brain = np.where(brain, head.chi, 0.0).astype(np.float32)
    local = forward_field(chi_brain, vox) * brain
    total = forward_field(head.chi, vox) * brain
    qsm = (chi_brain + rng.normal(0.0, 0.01, brain.shape)) * brain
    magnitude = head.m0 * np.exp(-head.r2star * FIRST_ECHO_S)
    magnitude = np.abs(magnitude + rng.normal(0.0, 0.01, brain.shape))
    labels = np.where(head.labels <= 14, head.labels, 0).astype(np.int16)
    # T1w-like template: white matter bright, grey matter and nuclei darker, CSF dark
    t1w = np.select([head.labels == 20, head.labels == 22, (head.labels >= 1) &
                     (head.labels <= 14)], [1.0, 0.2, 0.65], default=0.55) * brain
    template = _rigid(ndimage.gaussian_filter(t1w, 0.7) * brain, vox[0], shift_mm,
                      rotation_deg, 1)
    dseg = _rigid(labels, vox[0], shift_mm, rotation_deg, 0)
    residual = brain * np.abs(rng.normal(0.0, 0.03, brain.shape))

    run_id = f"{participant}_ses-{session}_run-1" if session else f"{participant}_run-1"
    out_dir.mkdir(parents=True, exist_ok=True)

    def save(name: str, data: np.ndarray, dtype=np.float32) -> Path:
        path = out_dir / f"{run_id}_{name}.nii.gz"
        nib.save(nib.Nifti1Image(np.asarray(data, dtype=dtype), head.affine), path)
        return path

    tsv = None
    if with_tsv:  # the per-run table as the pipeline writes it (issue 6's writer)
        records = regional_statistics(qsm, dseg, phantom_regions(), voxel_size=vox, mask=brain)
        tsv, _ = write_run_table(records, out_dir / f"{run_id}_desc-report_Chimap_stats.tsv",
                                 atlas="phantom")
    return RunReportInputs(
        participant_id=participant, run_id=run_id,
        session_id=f"ses-{session}" if session else None,
        magnitude=save("mag", magnitude), mask=save("mask", brain, np.uint8),
        field=save("field", total), local_field=save("localfield", local),
        qsm=save("Chimap", qsm), r2star=save("R2starmap", head.r2star * brain),
        dseg=save("dseg", dseg, np.int16), template=save("template", template),
        regional_tsv=tsv, echo_fit_residual=save("residual", residual),
        registration_similarity=0.5, registration_metric="MI", unwrap_residual_wraps=12,
    )
