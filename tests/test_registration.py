"""Template -> subject registration on synthetic images with a known deformation."""

from __future__ import annotations

from dataclasses import replace

import ants
import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from qsmbids.registration import (
    RegistrationSettings,
    TransformChain,
    apply_transforms,
    combine_echoes,
    metric_for_contrasts,
    prepare_target,
    register_template_to_subject,
    warp_labels_to_subject,
    warp_to_template,
)
from qsmbids.registration.antsio import from_ants, to_ants
from tests.atlas_helpers import dice, oblique_deformed_copy

VOXEL = 3.0
BLOBS = {  # label: (centre mm, semi-axes mm, intensity)
    1: ((-18, 10, 8), (9, 14, 10), 0.55),
    2: ((18, 10, 8), (9, 14, 10), 0.55),
    3: ((-10, -20, -4), (8, 10, 9), 0.35),
    4: ((10, -20, -4), (8, 10, 9), 0.35),
    5: ((0, -45, -30), (22, 14, 12), 0.75),
}


def _synthetic_template():
    """A 3 mm 'brain': ellipsoid with textured background and five nuclei; labels."""
    shape = (56, 64, 52)
    affine = np.diag([VOXEL, VOXEL, VOXEL, 1.0])
    affine[:3, 3] = -(np.asarray(shape) - 1) / 2 * VOXEL
    ijk = np.indices(shape).reshape(3, -1)
    xyz = (affine[:3, :3] @ ijk + affine[:3, 3:4]).reshape(3, *shape)
    brain = ((xyz[0] / 75) ** 2 + (xyz[1] / 90) ** 2 + (xyz[2] / 70) ** 2) <= 1
    rng = np.random.default_rng(1)
    texture = ndimage.gaussian_filter(rng.standard_normal(shape), 2.0)
    img = np.where(brain, 1.0 + 0.15 * texture / texture.std(), 0.0)
    labels = np.zeros(shape, np.int16)
    for lab, (c, ax, val) in BLOBS.items():
        inside = sum(((xyz[i] - c[i]) / ax[i]) ** 2 for i in range(3)) <= 1
        labels[inside] = lab
        img[inside] = val
    img = ndimage.gaussian_filter(img, 0.7).astype(np.float32)
    return nib.Nifti1Image(img, affine), nib.Nifti1Image(labels, affine)


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    template, labels = _synthetic_template()
    subject, truth = oblique_deformed_copy(template, labels, amplitude_mm=4.0,
                                           smooth_mm=40.0, seed=3)
    mask = nib.Nifti1Image((np.asarray(subject.dataobj) > 0.05).astype(np.uint8), subject.affine)
    out = tmp_path_factory.mktemp("reg")
    settings = RegistrationSettings(preset="fast", n_threads=2, deterministic=True, seed=7)
    result = register_template_to_subject(template, subject, out, settings, target_mask=mask,
                                          bias_correct=False)
    return dict(template=template, labels=labels, subject=subject, truth=truth, mask=mask,
                out=out, settings=settings, result=result)


def test_oblique_geometry_roundtrip():
    rot = np.array([[0.9, -0.3, 0.3], [0.3, 0.95, 0.0], [-0.3, 0.1, 0.95]])
    q, _ = np.linalg.qr(rot)
    affine = np.eye(4)
    affine[:3, :3] = q * np.array([1.0, 1.2, 2.0])
    affine[:3, 3] = [10, -20, 30]
    img = nib.Nifti1Image(np.random.default_rng(0).random((5, 6, 7)).astype(np.float32), affine)
    a = to_ants(img)
    back = from_ants(a)
    assert np.allclose(back.affine, affine, atol=1e-5)
    assert np.array_equal(np.asarray(back.dataobj), np.asarray(img.dataobj))
    # ANTs' physical point of voxel (1,2,3) is the LPS version of the NIfTI RAS point
    ras = affine @ np.array([1, 2, 3, 1.0])
    lps = np.asarray(a.origin) + np.asarray(a.direction) @ (np.asarray(a.spacing) * [1, 2, 3])
    assert np.allclose(lps, ras[:3] * [-1, -1, 1], atol=1e-5)


def test_labels_land_on_deformed_oblique_subject(case):
    warped = warp_labels_to_subject(case["labels"], case["subject"],
                                    case["result"].template_to_subject)
    assert warped.shape == case["subject"].shape
    assert np.allclose(warped.affine, case["subject"].affine)
    got = np.asarray(warped.dataobj)
    truth = np.asarray(case["truth"].dataobj)
    # baseline: the same labels assuming template and subject were aligned
    ident = apply_transforms(case["labels"], case["subject"], TransformChain((), ()),
                             interpolation="nearestNeighbor")
    ident = np.rint(np.asarray(ident.dataobj))
    for lab in BLOBS:
        d = dice(got == lab, truth == lab)
        assert d >= 0.80, (lab, d)
        assert d > dice(ident == lab, truth == lab)
    sim = case["result"].similarity
    assert sim["correlation"] > 0.9 and sim["mutual_information"] > 0


def test_transform_files_and_warp_back(case):
    result = case["result"]
    for chain in (result.template_to_subject, result.subject_to_template):
        assert chain.files and all(f.is_file() and f.parent == case["out"] for f in chain.files)
        assert {f.suffix for f in chain.files} <= {".mat", ".gz"}
    assert result.target.is_file()
    # a subject-space map of the true labels, warped to template space, matches the template
    truth_map = nib.Nifti1Image((np.asarray(case["truth"].dataobj) == 5).astype(np.float32),
                                case["subject"].affine)
    back = warp_to_template(truth_map, case["template"], result.subject_to_template)
    assert back.shape == case["template"].shape
    assert dice(np.asarray(back.dataobj) > 0.5, np.asarray(case["labels"].dataobj) == 5) > 0.8


@pytest.mark.parametrize("change", [{"deterministic": False, "n_threads": 1},
                                    {"seed": 8}],
                         ids=["plain run on one thread", "another seed"])
def test_single_thread_registrations_repeat(case, tmp_path, change):
    """``deterministic`` (one thread) repeats exactly, and so does a plain run on one
    thread (the seed is always given; ANTs would draw one per run). And as the presets'
    linear stages sample every voxel, another seed gives the same registration too
    (with 25 % jittered sampling the seed moved the Philips head's nigra label enough
    to change its mean by 0.006 ppm)."""
    import dataclasses

    assert case["settings"].seed != 8
    again = register_template_to_subject(case["template"], case["subject"], tmp_path,
                                         dataclasses.replace(case["settings"], **change),
                                         target_mask=case["mask"], bias_correct=False)
    a = warp_to_template(case["subject"], case["template"], case["result"].subject_to_template)
    b = warp_to_template(case["subject"], case["template"], again.subject_to_template)
    assert np.array_equal(np.asarray(a.dataobj), np.asarray(b.dataobj))


def test_t1w_route_composes_rigid_and_syn(case, tmp_path):
    # the T1w is the deformed subject; the GRE magnitude sees it rigidly moved, with
    # another contrast (inverted nuclei brightness) and a bias field, on a 4D echo series
    t1w = case["subject"]
    moved, moved_truth = oblique_deformed_copy(t1w, case["truth"], angles_deg=(0, 0, 7),
                                               shift_mm=(3, 2, -2), amplitude_mm=0.0, seed=5)
    mag = np.asarray(moved.dataobj)
    bias = np.linspace(0.7, 1.3, mag.shape[0])[:, None, None]
    mag = np.where(mag > 0, (1.2 - mag) * bias, 0).astype(np.float32)
    echoes = nib.Nifti1Image(np.stack([mag, 0.6 * mag], axis=3), moved.affine)
    mag_mask = nib.Nifti1Image((mag > 0.05).astype(np.uint8), moved.affine)
    # the product's choice for a T1w template on a T1w (RegisterAtlas): local correlation
    settings = replace(case["settings"], metric=metric_for_contrasts("T1w", "T1w"))
    result = register_template_to_subject(case["template"], echoes, tmp_path, settings,
                                          target_mask=mag_mask, t1w=t1w, t1w_mask=case["mask"])
    assert len(result.template_to_subject.files) == 3
    warped = np.asarray(warp_labels_to_subject(case["labels"], mag_mask,
                                               result.template_to_subject).dataobj)
    truth = np.asarray(moved_truth.dataobj)
    for lab in BLOBS:  # labels 3/4 are small (about 100 voxels of 3 mm): the lower target
        assert dice(warped == lab, truth == lab) >= (0.65 if lab in (3, 4) else 0.80), lab


def test_errors_and_settings():
    with pytest.raises(ValueError, match="preset"):
        RegistrationSettings(preset="quick")
    with pytest.raises(ValueError, match="metric"):
        RegistrationSettings(metric="MI")
    img = nib.Nifti1Image(np.zeros((4, 4, 4), np.float32), np.eye(4))
    chain = TransformChain(("/nonexistent/x.mat",), (False,))
    with pytest.raises(FileNotFoundError, match=r"x\.mat"):
        apply_transforms(img, img, chain)
    with pytest.raises(ValueError, match="genericLabel"):
        warp_labels_to_subject(img, img, TransformChain((), ()), interpolation="linear")
    four = nib.Nifti1Image(np.ones((2, 2, 2, 3), np.float32) * [[[[1.0, 2.0, 2.0]]]], np.eye(4))
    assert np.allclose(np.asarray(combine_echoes(four).dataobj), 3.0)


def test_crop_keeps_the_mask_box_plus_margin_within_the_grid():
    from qsmbids.registration.grids import crop_to_mask as _crop_to_mask

    mask = np.zeros((30, 40, 20), np.float32)
    mask[5:11, 30:40, 0:4] = 1  # box 5..10, 30..39 (the grid's last row), 0..3
    image = ants.from_numpy(np.arange(mask.size, dtype=np.float32).reshape(mask.shape),
                            spacing=(2.0, 2.0, 2.0))
    crop, crop_mask = _crop_to_mask(image, image.new_image_like(mask), margin_mm=4.0)
    # 2 voxels of margin on both sides, clipped at the grid edges: x 3..12, y 28..39, z 0..5
    assert crop.shape == (10, 12, 6)
    assert crop.numpy()[0, 0, 0] == image.numpy()[3, 28, 0]
    assert crop.numpy()[-1, -1, -1] == image.numpy()[12, 39, 5]
    assert crop_mask.numpy().sum() == mask.sum()  # no mask voxel lost at the edge
    with pytest.raises(ValueError, match="mask is empty"):
        _crop_to_mask(image, image.new_image_like(np.zeros_like(mask)), margin_mm=4.0)


def test_stage_command_lines_follow_the_schedule():
    from qsmbids.registration import PRESETS, SCHEDULES
    from qsmbids.registration.stages import linear_stage, registration_command, syn_stage
    from qsmbids.workflows.settings import REGISTRATION

    assert REGISTRATION == PRESETS == tuple(SCHEDULES)  # the CLI offers what exists
    fast = SCHEDULES["fast"]
    rigid = linear_stage("Rigid", "f.nii", "m.nii", fast.linear_shrink, fast.linear_smooth,
                         fast.linear_iterations)
    assert fast.linear_sampling is None  # every voxel: the seed cannot move the result
    assert rigid == ["--metric", "MI[f.nii,m.nii,1,32]", "--transform",
                     "Rigid[0.1]", "--convergence", "[500x250,1e-06,10]",
                     "--shrink-factors", "4x2", "--smoothing-sigmas", "2x1vox"]
    # the linear stages end one level above the SyN's (at 4 mm for fast)
    assert fast.linear_shrink == fast.syn_shrink[:-1]
    syn = syn_stage("CC", "f.nii", "m.nii", fast.syn_shrink, fast.syn_smooth,
                    fast.syn_iterations["CC"], convergence=fast.syn_convergence,
                    cc_radius=fast.cc_radius, step=fast.syn_step)
    assert syn[:4] == ["--metric", "CC[f.nii,m.nii,1,1]", "--transform", "SyN[0.2,3,0]"]
    assert syn[5] == "[100x50x10,1e-05,10]"
    dense_mi = syn_stage("mattes", "f", "m", (2, 1), (1, 0), (10, 5), convergence=1e-6,
                         cc_radius=1)
    assert dense_mi[1] == "MI[f,m,1,32]"  # dense: no sampling in the deformable stage
    cmd = registration_command("f.nii", "m.nii", "/out/reg_", [rigid, syn],
                               fixed_mask="mask.nii", seed=3)
    assert cmd[cmd.index("--initial-moving-transform") + 1] == "[f.nii,m.nii,1]"
    assert cmd[cmd.index("--masks") + 1] == "mask.nii"
    assert cmd[cmd.index("--random-seed") + 1] == "3"
    assert cmd[-2:] == ["--output", "[/out/reg_]"]
    assert "--random-seed" not in registration_command("f", "m", "o", [rigid])
    with pytest.raises(ValueError, match="one value per level"):
        syn_stage("CC", "f", "m", (2, 1), (1,), (10, 5), convergence=1e-6, cc_radius=1)
    with pytest.raises(ValueError, match="gradient step"):
        syn_stage("CC", "f", "m", (1,), (0,), (5,), convergence=1e-6, cc_radius=1, step=0)
    with pytest.raises(ValueError, match="SyN metric"):
        syn_stage("MI", "f", "m", (1,), (0,), (5,), convergence=1e-6, cc_radius=1)
    with pytest.raises(ValueError, match="Rigid or Affine"):
        linear_stage("Similarity", "f", "m", (1,), (0,), (5,))
    sampled = linear_stage("Affine", "f", "m", (1,), (0,), (5,), sampling=0.25)
    assert sampled[1] == "MI[f,m,1,32,Regular,0.25]"
    with pytest.raises(ValueError, match="sampling fraction"):
        linear_stage("Affine", "f", "m", (1,), (0,), (5,), sampling=0.0)


def test_metric_follows_the_contrasts_and_n4_fits_on_a_coarse_grid():
    from qsmbids.registration.targets import n4_shrink_factor

    assert metric_for_contrasts("magnitude", "magnitude") == "CC"
    assert metric_for_contrasts("T1w", "T1w") == "CC"
    assert metric_for_contrasts("T1w", "magnitude") == "mattes"
    assert n4_shrink_factor((1.0, 1.0, 1.0)) == 5
    assert n4_shrink_factor((0.6, 0.6, 2.0)) == 8
    assert n4_shrink_factor((3.0, 3.0, 3.0)) == 2


def test_prepare_target_removes_a_smooth_bias_inside_the_mask():
    shape = (40, 44, 36)
    xyz = np.indices(shape, dtype=np.float32)
    brain = ((xyz[0] - 20) / 16) ** 2 + ((xyz[1] - 22) / 18) ** 2 + ((xyz[2] - 18) / 14) ** 2 < 1
    rng = np.random.default_rng(0)
    truth = np.where(brain, 1.0 + 0.1 * ndimage.gaussian_filter(rng.standard_normal(shape), 1),
                     0).astype(np.float32)
    bias = np.exp(0.4 * (xyz[0] / shape[0] - 0.5) + 0.2 * (xyz[2] / shape[2] - 0.5))
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    image = nib.Nifti1Image(np.stack([truth * bias, 0.5 * truth * bias], axis=3), affine)
    mask = nib.Nifti1Image(brain.astype(np.uint8), affine)
    out = np.asarray(prepare_target(image, mask, n_threads=1).dataobj)
    assert out.shape == shape and not out[~brain].any()
    ratio = out[brain] / truth[brain]  # flat after correction (N4 keeps an arbitrary scale)
    before = (truth * bias)[brain] / truth[brain]
    assert np.std(ratio) / np.mean(ratio) < 0.25 * np.std(before) / np.mean(before)


def test_the_registration_child_loads_the_ants_library_without_the_package():
    """Each registration runs in a child interpreter; it loads antspyx's compiled library
    alone, since importing the ``ants`` package costs 2.5-2.7 s of start-up there."""
    import subprocess
    import sys

    probe = ("import sys\n"
             "from qsmbids.registration.job import ants_library\n"
             "lib = ants_library()\n"
             "print(hasattr(lib, 'antsRegistration'), 'ants' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True)
    assert done.stdout.split() == ["True", "False"]


def test_a_failed_registration_names_what_was_registered_and_why(tmp_path):
    from qsmbids.registration.job import run_registration

    missing = tmp_path / "fixed.nii.gz"
    args = ["--dimensionality", "3", "--metric", f"MI[{missing},{missing},1,32]",
            "--transform", "Rigid[0.1]", "--convergence", "[10,1e-6,10]",
            "--shrink-factors", "1", "--smoothing-sigmas", "0vox",
            "--output", f"[{tmp_path / 'out_'}]"]
    with pytest.raises(RuntimeError, match=r"ANTs registration of the test pair failed.*"
                                           r"fixed\.nii\.gz does not exist"):
        run_registration(args, n_threads=1, description="the test pair")
