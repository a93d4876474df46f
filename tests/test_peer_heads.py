"""The whole participant pipeline on data qsmbids did not make (fast, 3 mm cases).

Heads of qsmbids' anatomy forward-simulated by the peer simulator qsm-forward (its
dipole model, phase offset, shim and noise), scored with qsm-ci over the true brain mask;
and the real scanner data of ``../shared/realdata`` (skipped when absent), checked for
what needs no truth. The bounds are regression guards set from the measured values with
a margin (the issue's targets are tracked in ``benchmarks/bench_accuracy.py``).
"""

from __future__ import annotations

import dataclasses
import json
import math

import nibabel as nib
import numpy as np
import pytest

from qsmbids.validation.peer_heads import (
    case_by_name,
    simulate_peer_head,
    single_echo_dataset,
)
from qsmbids.validation.realdata import (
    phase_flipped_copy,
    philips_bids,
    run_participant,
    seven_tesla_bids,
    shared_realdata,
)
from qsmbids.validation.scoring import field_error_by_edge_distance, map_spread, score_peer_head

pytest.importorskip("qsm_forward", reason="needs the 'validation' extra (qsm-forward)")

#: case -> (largest NRMSE %, largest |nucleus error| ppm): measured at 3 mm (2026-12-03,
#: phantom revision 2, edge-weighted TV with free sources outside the mask: 51.9 / 0.010,
#: 64.0 / 0.005, 63.6 / 0.029; TV over the whole grid gave 61.3 / 0.020, 71.5 / 0.027,
#: 74.5 / 0.032) + margin
BOUNDS = {
    "base3t2mm": (56.0, 0.014),
    "brainonly": (68.0, 0.010),
    "twoecho": (68.0, 0.033),
}
#: smallest Dice of the pipeline's brain mask with the true brain (measured at 3 mm:
#: 0.951 whole head, 0.993 brain-only signal, 0.934 two echoes)
MIN_MASK_DICE = 0.92


def _three_mm(name: str):
    return dataclasses.replace(case_by_name(name), voxel_size_mm=(3.0, 3.0, 3.0),
                               phantom_voxel_mm=3.0)


@pytest.fixture(scope="module", params=sorted(BOUNDS))
def peer_run(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(request.param)
    head = simulate_peer_head(_three_mm(request.param), folder)
    run = run_participant(head.bids_dir, folder / "out", folder / "work", ["--atlas", "none"])
    assert run.returncode == 0, run.log[-3000:]
    return request.param, head, run


def _image(run, pattern):
    found = run.find(pattern)
    assert found, f"no {pattern} in {run.output_dir}"
    return np.asarray(nib.load(found[0]).dataobj, np.float32)


def test_map_is_accurate_on_a_qsm_forward_head(peer_run):
    name, head, run = peer_run
    truth, brain, seg = head.load_truth()
    score = score_peer_head(_image(run, "*_space-orig_desc-wholebrain_Chimap.nii.gz"),
                            truth, brain, seg)
    max_nrmse, max_nucleus = BOUNDS[name]
    nucleus, error = score.worst_nucleus
    print(f"{name}: NRMSE {score.nrmse:.1f}%, XSIM {score.xsim:.3f}, worst {nucleus} "
          f"{error:+.4f} ppm")
    assert score.coverage > 0.97
    assert score.nrmse < max_nrmse
    assert abs(error) < max_nucleus
    assert "phase_sign_suspect" not in _qc_flags(run)
    # no silent wrong sign: the iron-rich nuclei come out above the brain mean
    errors = score.nucleus_error_ppm
    assert all(abs(errors[n]) < 0.5 * v for n, v in
               (("pallidum", 0.17), ("substantia_nigra", 0.13), ("red_nucleus", 0.10)))


def test_brain_mask_matches_the_true_brain(peer_run):
    """The scalp is cut off and the brain (cerebellum included) kept, on heads whose
    magnitude qsm-forward made (signal from the whole head or from the brain only)."""
    _, head, run = peer_run
    _, brain, _ = head.load_truth()
    mask = _image(run, "*_space-orig_desc-brain_mask.nii.gz") > 0
    dice = 2 * np.count_nonzero(mask & brain) / (np.count_nonzero(mask) + brain.sum())
    print(f"mask Dice {dice:.3f}")
    assert dice >= MIN_MASK_DICE


def test_total_field_has_no_bias_at_the_mask_edge(peer_run):
    """The spatially varying phase offset of qsm-forward does not leak into the field next
    to the mask edge (the old Gaussian smoothing gave -0.007 ppm within 2 mm at 2 mm)."""
    name, head, run = peer_run
    if name != "base3t2mm":
        pytest.skip("checked on the whole-head case")
    _, brain, _ = head.load_truth()
    mask = _image(run, "*_space-orig_desc-brain_mask.nii.gz") > 0
    total = _image(run, "*_space-orig_desc-totalfield_fieldmap.nii.gz")
    truth = np.asarray(nib.load(head.field_path).dataobj, np.float32)
    bands = field_error_by_edge_distance(total, truth, mask & brain, (3.0, 3.0, 3.0))
    for band, mean, _, count in bands:
        print(f"{band}: {mean:+.5f} ppm ({count} voxels)")
    assert all(abs(mean) < 0.001 for _, mean, _, _ in bands)


REALDATA = shared_realdata()
needs_realdata = pytest.mark.skipif(REALDATA is None,
                                    reason="../shared/realdata (real scanner data) is absent")


def test_single_echo_map_is_close_to_the_multi_echo_one(tmp_path):
    """Echo 3 (16 ms) of the 4-echo base head at 2 mm as a single-echo T2starw series:
    spatial unwrapping, no MCPC-3D-S, the offset's harmonic part removed with the
    background and its r^2 part fitted (qsmbids.recon.background.offset_term); no R2*,
    and the log and sidecar say it is one echo.

    Issue #15's targets: NRMSE within 10 points of the 4-echo map (measured 36.1 vs
    35.1 %) and every nucleus within 0.015 ppm: missed, the dentate is off by 0.0165
    (red nucleus 0.012); the bound below guards that figure (without the r^2 term the
    map scored 243 % at 3 mm)."""
    head = simulate_peer_head(case_by_name("base3t2mm"), tmp_path / "head")
    truth, brain, seg = head.load_truth()
    scores = {}
    for label, bids in (("four", head.bids_dir),
                        ("one", single_echo_dataset(head, tmp_path / "single", echo=3))):
        run = run_participant(bids, tmp_path / f"out-{label}", tmp_path / f"work-{label}",
                              ["--atlas", "none"])
        assert run.returncode == 0, run.log[-3000:]
        chi_path = run.find("*_space-orig_desc-wholebrain_Chimap.nii.gz")[0]
        scores[label] = score_peer_head(np.asarray(nib.load(chi_path).dataobj, np.float32),
                                        truth, brain, seg)
        if label == "one":
            assert not run.find("*_R2starmap.nii.gz")
            assert "single echo" in run.log
            sidecar = json.loads(chi_path.with_name(
                chi_path.name.replace(".nii.gz", ".json")).read_text())
            steps = {s["Step"]: s for s in sidecar["ProcessingSteps"]}
            assert "single echo: no MCPC-3D-S" in steps["field estimation"]["Algorithm"]
            assert "OffsetTerm" in steps["background field removal"]["Parameters"]
            assert sidecar["EchoTime"] == [0.016]
    one, four = scores["one"], scores["four"]
    worst = max(abs(e) for e in one.nucleus_error_ppm.values())
    print(f"single echo: NRMSE {one.nrmse:.1f}% (4 echoes {four.nrmse:.1f}%), worst nucleus "
          f"{one.worst_nucleus[0]} {one.worst_nucleus[1]:+.4f} ppm")
    assert one.nrmse <= four.nrmse + 10.0
    assert worst <= 0.02


def _qc_flags(run) -> list[str]:
    chi_path = run.find("*_space-orig_desc-wholebrain_Chimap.nii.gz")[0]
    sidecar = json.loads(chi_path.with_name(chi_path.name.replace(".nii.gz", ".json"))
                         .read_text())
    return list(sidecar.get("QCFlags", []))


def test_a_flipped_phase_sign_is_flagged_and_undone_by_the_option(tmp_path):
    """The base head with its phase negated (the other handedness): the map-only check
    flags phase_sign_suspect in the sidecar and the log and names --phase-sign -1;
    with --phase-sign -1 the flag is gone and the map is as accurate as the original."""
    head = simulate_peer_head(_three_mm("base3t2mm"), tmp_path / "head")
    truth, brain, seg = head.load_truth()
    flipped = phase_flipped_copy(head.bids_dir, tmp_path / "flipped")
    wrong = run_participant(flipped, tmp_path / "out-wrong", tmp_path / "work-wrong",
                            ["--atlas", "none"])
    assert wrong.returncode == 0, wrong.log[-3000:]
    assert "phase_sign_suspect" in _qc_flags(wrong)
    assert "--phase-sign -1" in wrong.log
    fixed = run_participant(flipped, tmp_path / "out-fixed", tmp_path / "work-fixed",
                            ["--atlas", "none", "--phase-sign", "-1"])
    assert fixed.returncode == 0, fixed.log[-3000:]
    assert "phase_sign_suspect" not in _qc_flags(fixed)
    chi = _image(fixed, "*_space-orig_desc-wholebrain_Chimap.nii.gz")
    score = score_peer_head(chi, truth, brain, seg)
    print(f"flipped + --phase-sign -1: NRMSE {score.nrmse:.1f}%")
    assert score.nrmse < BOUNDS["base3t2mm"][0]


@pytest.mark.parametrize(("slices", "usable"), [(8, True), (2, False)])
def test_a_thin_multi_slice_slab_runs_and_says_what_it_is(tmp_path, slices, usable):
    """A slab of a few slices through the base head (3 mm; 24 or 6 mm thick), as 2-D
    multi-slice protocols give: the run completes, the mask is flagged as cut by the
    field of view; 8 slices give a map that follows the truth, 2 slices a map too flat
    to use, and the flag chi_flat says so instead of a silent result."""
    import shutil

    head = simulate_peer_head(_three_mm("base3t2mm"), tmp_path / "head")
    truth, brain, _ = head.load_truth()
    bids = tmp_path / "slab"
    shutil.copytree(head.bids_dir, bids, ignore=shutil.ignore_patterns("derivatives"))
    z0 = 26
    for path in sorted((bids / "sub-1" / "anat").glob("*.nii")):
        img = nib.load(str(path))
        data = np.array(img.dataobj[:, :, z0:z0 + slices])  # a copy: the file is replaced
        path.unlink()
        nib.save(nib.Nifti1Image(data, img.affine, img.header), str(path))
    run = run_participant(bids, tmp_path / "out", tmp_path / "work", ["--atlas", "none"])
    assert run.returncode == 0, run.log[-3000:]
    flags = _qc_flags(run)
    assert "mask_edge" in flags
    chi = _image(run, "*_space-orig_desc-wholebrain_Chimap.nii.gz")
    mask = _image(run, "*_space-orig_desc-brain_mask.nii.gz") > 0
    inside = mask & brain[:, :, z0:z0 + slices]
    r = np.corrcoef(chi[inside], truth[:, :, z0:z0 + slices][inside])[0, 1]
    print(f"{slices} slices: correlation with the truth {r:.2f}, flags {flags}")
    if usable:
        assert r > 0.6 and "chi_flat" not in flags
    else:
        assert "chi_flat" in flags


@needs_realdata
def test_philips_head_with_a_flipped_phase_is_flagged(tmp_path):
    bids = phase_flipped_copy(philips_bids(REALDATA, tmp_path / "bids"), tmp_path / "flip")
    run = run_participant(bids, tmp_path / "out", tmp_path / "work", ["--atlas", "none"])
    assert run.returncode == 0, run.log[-3000:]
    assert "phase_sign_suspect" in _qc_flags(run)


@needs_realdata
def test_philips_head_gives_a_brain_mask_and_a_plausible_map(tmp_path):
    bids = philips_bids(REALDATA, tmp_path / "bids")
    run = run_participant(bids, tmp_path / "out", tmp_path / "work", ["--atlas", "none"])
    assert run.returncode == 0, run.log[-3000:]
    chi = _image(run, "*_space-orig_desc-wholebrain_Chimap.nii.gz")
    mask = _image(run, "*_space-orig_desc-brain_mask.nii.gz") > 0
    spread = map_spread(chi, mask, (3.0, 3.0, 3.0))
    print(spread)
    assert 1000 <= spread.mask_ml <= 1700
    assert 0.02 <= spread.iqr_ppm <= 0.08
    # issue #14's target is p1/p99 within +-0.3 ppm; measured -0.116 / +0.305 (2026-12-03,
    # free sources outside the mask; +0.245 before): missed by 0.005 ppm, reported so.
    # 94 % of the voxels above p99 lie within 12 mm of the mask edge, in the transverse
    # sinuses and their confluence, which the mask holds and which now keep their venous
    # susceptibility. The bound here guards that tail against a regression (the scalp-
    # holding mask gave -1.0 / +0.98).
    assert -0.3 <= spread.p01_ppm and spread.p99_ppm <= 0.33
    assert "phase_sign_suspect" not in _qc_flags(run)


@needs_realdata
def test_philips_classic_and_enhanced_dicom_give_the_same_map(tmp_path):
    """dcm2niix's NIfTI of the classic and of the enhanced DICOM of one Philips scan
    (scaled phase, 0..4095 with slope and intercept, turned into radians) reach the
    same map (issue #15: identical to 1e-3 ppm; measured 6e-6)."""
    maps = []
    for variant in ("cl", "enh"):
        bids = philips_bids(REALDATA, tmp_path / f"bids-{variant}", variant)
        run = run_participant(bids, tmp_path / f"out-{variant}", tmp_path / f"w-{variant}",
                              ["--atlas", "none"])
        assert run.returncode == 0, run.log[-3000:]
        maps.append(_image(run, "*_space-orig_desc-wholebrain_Chimap.nii.gz"))
    assert maps[0].shape == maps[1].shape
    assert float(np.abs(maps[0] - maps[1]).max()) <= 1e-3


@needs_realdata
def test_seven_tesla_crop_in_arbitrary_units_gives_contrast(tmp_path):
    bids = seven_tesla_bids(REALDATA, tmp_path / "bids")
    run = run_participant(bids, tmp_path / "out", tmp_path / "work", ["--atlas", "none"])
    assert run.returncode == 0, run.log[-3000:]
    chi = _image(run, "*_space-orig_desc-wholebrain_Chimap.nii.gz")
    mask = _image(run, "*_space-orig_desc-brain_mask.nii.gz") > 0
    spread = map_spread(chi, mask, (0.46875, 0.46875, 1.0))
    print(spread)
    assert math.isfinite(spread.iqr_ppm) and spread.iqr_ppm > 0.005
    assert "phase_sign_suspect" not in _qc_flags(run)
    # the crop lies inside the brain: the mask keeps its whole FOV (was 89 %)
    assert mask.mean() >= 0.95
