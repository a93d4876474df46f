"""The participant level end to end on tiny datasets (3 mm, 3 echoes, about 32^3 voxels).

Checks the product behaviour: broken runs are set aside with specific reasons
while the others complete, outputs are valid BIDS derivatives, the input is never
written, reruns skip finished runs, the workflow reproduces the recon functions
called directly, and a killed run resumes without redoing finished steps.
"""

from __future__ import annotations

import gzip
import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from gre_dataset import new_dataset, write_run

from qsmbids.cli.main import main

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _make_read_only(root: Path) -> None:
    for path in [root, *root.rglob("*")]:
        path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def _restore(root: Path) -> None:
    for path in [root, *root.rglob("*")]:
        path.chmod(path.stat().st_mode | stat.S_IWUSR)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """Good runs (sessions, two runs in one session, Siemens phase, oblique) and broken runs."""
    root = new_dataset(tmp_path_factory.mktemp("cohort") / "bids")
    write_run(root, "sub-01/ses-1/anat/sub-01_ses-1_run-1", seed=1)
    write_run(root, "sub-01/ses-1/anat/sub-01_ses-1_run-2", seed=2, oblique_deg=15.0)
    write_run(root, "sub-01/ses-2/anat/sub-01_ses-2", seed=3, phase_units="siemens")
    write_run(root, "sub-02/anat/sub-02", seed=4)
    (root / "sub-02/anat/sub-02_echo-2_part-phase_MEGRE.nii.gz").unlink()
    write_run(root, "sub-03/anat/sub-03", seed=5)
    corrupt = root / "sub-03/anat/sub-03_echo-1_part-mag_MEGRE.nii.gz"
    raw = gzip.decompress(corrupt.read_bytes())
    corrupt.write_bytes(gzip.compress(raw[: len(raw) // 3]))
    write_run(root, "sub-04/anat/sub-04", seed=6)
    sidecar = root / "sub-04/anat/sub-04_echo-3_part-phase_MEGRE.json"
    sidecar.write_text(json.dumps({"MagneticFieldStrength": 3.0, "Units": "rad"}))
    _make_read_only(root)
    yield root
    _restore(root)


@pytest.fixture(scope="module")
def processed(cohort, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    before = {p: p.stat().st_mtime_ns for p in cohort.rglob("*")}
    code = main([str(cohort), str(out / "deriv"), "participant", "--atlas", "none",
                 "--nprocs", "2", "-w", str(out / "work"), "--no-progress"])
    assert {p: p.stat().st_mtime_ns for p in cohort.rglob("*")} == before
    return out / "deriv", code


GOOD = ("sub-01_ses-1_run-1", "sub-01_ses-1_run-2", "sub-01_ses-2")


def test_broken_runs_are_reported_and_the_others_complete(processed, capsys):
    out, code = processed
    assert code == 1
    for name in GOOD:
        sub = name.split("_")[0]
        ses = [p for p in name.split("_") if p.startswith("ses-")]
        folder = out / sub / (ses[0] if ses else "") / "anat"
        chi = folder / f"{name}_space-orig_desc-wholebrain_Chimap.nii.gz"
        assert chi.is_file(), name
        side = json.loads(chi.with_name(chi.name.replace(".nii.gz", ".json")).read_text())
        assert side["Units"] == "ppm" and side["Reference"]["Region"] == "wholebrain"
        assert all(s.startswith("bids:raw:sub-") for s in side["Sources"])
        assert (out / sub / "log" / f"{name}.log").is_file()
    assert not (out / "sub-02" / "anat").exists()
    assert not (out / "sub-04" / "anat").exists()


def test_summary_names_each_broken_run(cohort, tmp_path, capsys):
    code = main([str(cohort), str(tmp_path / "o"), "participant", "--atlas", "none",
                 "--participant-label", "02", "03", "04", "-w", str(tmp_path / "w")])
    assert code == 1
    err = capsys.readouterr().err
    assert "FAILED sub-02: missing echo 2 of part-phase" in err
    assert "FAILED sub-03: cannot read sub-03_echo-1_part-mag_MEGRE.nii.gz" in err
    assert "FAILED sub-04: no EchoTime in the sidecar of " in err
    assert "0 done, 3 failed" in err


def test_outputs_are_a_valid_derivative_dataset(processed):
    from bids import BIDSLayout

    out, _ = processed
    layout = BIDSLayout(str(out), validate=False, is_derivative=True)
    chi = layout.get(suffix="Chimap", extension=".nii.gz", desc="wholebrain")
    assert sorted((f.entities["subject"], f.entities.get("session"), f.entities.get("run"))
                  for f in chi) == [("01", "1", 1), ("01", "1", 2), ("01", "2", None)]
    for kind in ("mask", "R2starmap", "T2starmap", "fieldmap"):
        assert len(layout.get(suffix=kind, extension=".nii.gz")) >= 3
    desc = json.loads((out / "dataset_description.json").read_text())
    assert desc["DatasetType"] == "derivative" and desc["GeneratedBy"][0]["Name"] == "qsmbids"
    assert "V-SHARP" in (out / "CITATION.md").read_text() or "PDF" in (
        out / "CITATION.md").read_text()
    assert not list(out.rglob("*qsmbids-tmp*"))


def test_workflow_matches_direct_calls_of_the_recon_functions(processed, cohort):
    """The interfaces only move data: same numbers as calling qsmbids.recon directly."""
    from qsmbids.interfaces.io import geometry
    from qsmbids.recon.field_estimation import estimate_field
    from qsmbids.recon.masking import brain_mask
    from qsmbids.recon.methods import background_method
    from qsmbids.recon.phase_scaling import scale_phase_to_radians
    from qsmbids.recon.reliability import trim_unreliable

    out, _ = processed
    stem = cohort / "sub-01/ses-1/anat/sub-01_ses-1_run-2"
    mags = [nib.load(f"{stem}_echo-{n}_part-mag_MEGRE.nii.gz") for n in (1, 2, 3)]
    mag = np.stack([np.asarray(m.dataobj, np.float32) for m in mags], -1)
    phase = np.stack([np.asarray(nib.load(f"{stem}_echo-{n}_part-phase_MEGRE.nii.gz").dataobj,
                                 np.float32) for n in (1, 2, 3)], -1)
    voxel, b0 = geometry(mags[0])
    assert abs(b0[2] - np.cos(np.deg2rad(15))) < 1e-6  # oblique: B0 from the affine
    mask = brain_mask(mag, voxel).mask
    fitted = estimate_field(mag, scale_phase_to_radians(phase, "rad").phase,
                            (0.005, 0.010, 0.015), 3.0, mask, voxel).field
    field = fitted.field_ppm
    mask, _ = trim_unreliable(mask, fitted.field_std_hz)
    folder = out / "sub-01/ses-1/anat"
    name = "sub-01_ses-1_run-2_space-orig_desc-"
    total = nib.load(folder / f"{name}totalfield_fieldmap.nii.gz")
    np.testing.assert_allclose(total.get_fdata(), field, atol=1e-6)
    assert np.allclose(total.affine, mags[0].affine)
    local = background_method("vsharp" if "vsharp" in (folder.parent.parent.parent /
                                                         "CITATION.md").read_text().lower()
                              else "pdf")(field, mask, voxel, b0, workers=1)
    out_local = nib.load(folder / f"{name}localfield_fieldmap.nii.gz").get_fdata()
    np.testing.assert_allclose(out_local, local.local_field, atol=1e-6)


def test_rerun_skips_complete_runs(cohort, processed, capsys):
    out, _ = processed
    work = out.parent / "work"
    chi = out / "sub-01/ses-2/anat/sub-01_ses-2_space-orig_desc-wholebrain_Chimap.nii.gz"
    mtime = chi.stat().st_mtime_ns
    code = main([str(cohort), str(out), "participant", "--atlas", "none",
                 "--participant-label", "01", "-w", str(work)])
    assert code == 0
    assert "3 already complete" in capsys.readouterr().err
    assert chi.stat().st_mtime_ns == mtime
    # other settings must not be mixed in silently
    code = main([str(cohort), str(out), "participant", "--atlas", "none",
                 "--participant-label", "01", "--session-label", "2", "--inversion", "tkd",
                 "-w", str(work)])
    assert code == 1
    assert "made with other settings" in capsys.readouterr().err


def _result_files(work: Path) -> dict[str, int]:
    return {str(p.relative_to(work)): p.stat().st_mtime_ns
            for p in work.rglob("result_*.pklz")}


def test_killed_run_resumes_without_redoing_finished_steps(tmp_path):
    bids = new_dataset(tmp_path / "bids")
    write_run(bids, "sub-01/anat/sub-01", seed=7)
    out, work = tmp_path / "out", tmp_path / "work"
    cmd = [sys.executable, "-m", "qsmbids", str(bids), str(out), "participant", "--atlas",
           "none", "--nprocs", "1", "-w", str(work)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    log = out / "sub-01/log/sub-01.log"
    deadline = time.time() + 120
    while time.time() < deadline:  # kill once the field step has finished
        if log.is_file() and "end field" in log.read_text():
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert "run complete" not in log.read_text()
    finished = _result_files(work)
    assert any("field" in k for k in finished)
    # what OUTPUT_DIR holds after the kill is either complete or a dot-temporary
    for path in out.rglob("*.nii.gz"):
        if "qsmbids-tmp" not in path.name:
            nib.load(str(path)).get_fdata()
    code = main([*cmd[3:], "--no-progress"])
    assert code == 0
    after = _result_files(work)
    for key, mtime in finished.items():
        assert after[key] == mtime, f"{key} was recomputed"
    assert len(after) > len(finished)
    assert not list(out.rglob("*qsmbids-tmp*"))
    assert "run complete" in log.read_text()


def test_two_participants_written_concurrently_into_one_output(tmp_path, capsys):
    """Two array-job-like processes (own work dirs) share one OUTPUT_DIR at the same time."""
    from bids import BIDSLayout

    bids = new_dataset(tmp_path / "bids")
    for seed, sub in ((11, "01"), (12, "02")):
        write_run(bids, f"sub-{sub}/anat/sub-{sub}", seed=seed)
    out = tmp_path / "out"
    procs = [subprocess.Popen(
        [sys.executable, "-m", "qsmbids", str(bids), str(out), "participant",
         "--participant-label", sub, "--atlas", "none", "--nprocs", "1", "--no-progress",
         "-w", str(tmp_path / f"work-{sub}")],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for sub in ("01", "02")]
    errors = [proc.communicate(timeout=600)[1] for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], errors
    description = json.loads((out / "dataset_description.json").read_text())
    assert description["DatasetType"] == "derivative"
    assert description["GeneratedBy"][0]["Name"] == "qsmbids"
    assert (out / "CITATION.md").read_text().strip()
    assert not list(out.rglob("*qsmbids-tmp*"))
    layout = BIDSLayout(str(out), validate=False, is_derivative=True)
    assert {f.entities["subject"] for f in layout.get(suffix="Chimap", extension=".nii.gz")} \
        == {"01", "02"}
    for sub in ("01", "02"):
        manifest = json.loads(
            (out / f"sub-{sub}" / "log" / f"sub-{sub}_manifest.json").read_text())
        assert manifest["Files"]
        for rel, size in manifest["Files"].items():  # every listed file whole
            assert (out / rel).stat().st_size == size, rel
    # each participant's rerun finds its run complete
    for sub in ("01", "02"):
        code = main([str(bids), str(out), "participant", "--participant-label", sub,
                     "--atlas", "none", "--nprocs", "1", "-w", str(tmp_path / f"work-{sub}")])
        assert code == 0
        assert "1 already complete" in capsys.readouterr().err
