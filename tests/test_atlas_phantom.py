"""Issue-6 acceptance on the phantom: template -> deformed, obliquely positioned subject.

The phantom atlas (``qsmbids.sim.template``) is registered to a simulated subject's
GRE magnitude (nonlinear warp, head-size scaling, 15 deg oblique slab, bias field,
noise); the warped labels are compared with the subject's true labels, and the
regional means of the TRUE susceptibility map over the warped labels with those
over the true labels.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from qsmbids.atlas.regions import LARGE_NUCLEI, SMALL_NUCLEI
from qsmbids.registration import (
    RegistrationSettings,
    metric_for_contrasts,
    register_template_to_subject,
    warp_labels_to_subject,
)
from qsmbids.sim.subject import AcquisitionSpec, SubjectSpec, simulate_subject
from qsmbids.sim.template import write_phantom_atlas
from qsmbids.stats.regional import regional_statistics
from tests.atlas_helpers import region_dice


def _run(tmp_path, voxel_mm: float, preset: str):
    atlas = write_phantom_atlas(tmp_path / "atlas", voxel_size_mm=voxel_mm,
                                contrast="magnitude")
    sim = simulate_subject(
        SubjectSpec(age_years=60.0, seed=4, pose_seed=2, warp_mm=2.0, oblique_deg=15.0),
        AcquisitionSpec(voxel_size_mm=voxel_mm, snr=40.0), noise_seed=1, workers=2)
    anat = sim.anatomy
    # all echoes: the registration target is their root-sum-of-squares
    mag = nib.Nifti1Image(np.abs(sim.gre.signal).astype(np.float32), anat.affine)
    mask = nib.Nifti1Image(anat.brain_mask.astype(np.uint8), anat.affine)
    result = register_template_to_subject(
        atlas.template, mag, tmp_path / "reg",
        RegistrationSettings(preset=preset, n_threads=2,
                             metric=metric_for_contrasts(atlas.template_contrast, "magnitude")),
        target_mask=mask)
    warped = np.asarray(warp_labels_to_subject(atlas.labels, mask,
                                               result.template_to_subject).dataobj)
    dices = region_dice(anat.labels, warped, dict(atlas.regions))
    regions = dict(atlas.regions)
    est = regional_statistics(anat.chi, warped, regions, voxel_size=anat.voxel_size,
                              mask=anat.brain_mask)
    true = regional_statistics(anat.chi, anat.labels, regions, voxel_size=anat.voxel_size,
                               mask=anat.brain_mask)
    errors = {e["region"]: abs(e["mean"] - t["mean"]) for e, t in zip(est, true, strict=True)}
    return dices, errors, result


@pytest.fixture(scope="module")
def phantom_2mm(tmp_path_factory):
    return _run(tmp_path_factory.mktemp("phantom2"), 2.0, "fast")


# Default suite: the same experiment on a 2 mm grid (the fast preset's working grid),
# where a globus pallidus holds about 200 voxels and a substantia nigra about 60.
# Measured there (seed 4, CC metric as RegisterAtlas picks for a magnitude template):
# Dice caudate 0.87, putamen 0.87, GP 0.87, thalamus 0.94, SN 0.60, RN 0.72, dentate
# 0.89; largest regional-mean error 0.0066 ppm. The checks below guard against
# regressions at that resolution; the targets are checked at 1 mm by the
# slow test.
def test_phantom_registration_dice_2mm(phantom_2mm):
    dices, _, result = phantom_2mm
    for name in LARGE_NUCLEI:
        assert dices[name] >= 0.80, dices
    for name in SMALL_NUCLEI:
        assert dices[name] >= 0.55, dices
    assert result.metric == "CC"
    assert result.similarity["mutual_information"] > 0.3


def test_phantom_regional_means_2mm(phantom_2mm):
    _, errors, _ = phantom_2mm
    assert max(errors.values()) <= 0.012, errors


# Issue 6 targets at 1 mm. Measured (seed 4, fast preset, 2 cores: about 60 s for N4 +
# registration + warps; two runs, 2026-12-01): Dice caudate 0.94, putamen 0.94, GP
# 0.93, thalamus 0.95, SN 0.76-0.77, RN 0.80-0.81, dentate 0.91; largest regional-mean
# error 0.006 ppm. Reruns differ by a few hundredths (ANTs' random sampling, threads).
# Before the template had the target's echo-combined contrast and the SyN stage used
# CC, the pallidum reached only 0.69.
@pytest.mark.slow
def test_phantom_acceptance_1mm(tmp_path):
    dices, errors, _ = _run(tmp_path, 1.0, "fast")
    for name in LARGE_NUCLEI:
        assert dices[name] >= 0.80, dices
    for name in SMALL_NUCLEI:
        assert dices[name] >= 0.65, dices
    assert max(errors.values()) <= 0.015, errors
