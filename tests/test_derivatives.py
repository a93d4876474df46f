"""Derivative names, sidecars, atomic writes, locks and run completeness."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from qsmbids.atomic import atomic_write, atomic_write_json, output_lock, remove_stale_temporaries
from qsmbids.derivatives.dataset import dataset_description, init_output_dir
from qsmbids.derivatives.naming import OUTPUT_KINDS, NameContext, derivative_name
from qsmbids.derivatives.run_outputs import run_state, write_run_outputs
from qsmbids.derivatives.sidecars import image_sidecar

RUN = {"sub": "01", "ses": "pre", "acq": "fast", "run": "2"}


def test_names_follow_bids_entity_order():
    ctx = NameContext(ref="csf", atlas="phantom", template="Phantom")
    assert derivative_name(RUN, "chi", ctx) == (
        "sub-01_ses-pre_acq-fast_run-2_space-orig_desc-csf_Chimap.nii.gz")
    assert derivative_name(RUN, "chi_template", ctx) == (
        "sub-01_ses-pre_acq-fast_run-2_space-Phantom_desc-csf_Chimap.nii.gz")
    assert derivative_name({"sub": "01"}, "xfm_affine", ctx) == (
        "sub-01_from-Phantom_to-orig_mode-image_desc-affine_xfm.mat")
    assert derivative_name({"sub": "01"}, "regions", ctx) == (
        "sub-01_space-orig_atlas-phantom_desc-csf_stats.tsv")
    assert derivative_name({"sub": "01"}, "r2star") == "sub-01_space-orig_R2starmap.nii.gz"


def test_every_output_name_is_indexed_by_pybids_as_a_derivative(tmp_path):
    from bids import BIDSLayout

    out = tmp_path / "out"
    init_output_dir(out, tmp_path / "raw")
    work = tmp_path / "work"
    work.mkdir()
    files, sidecars = {}, {}
    for kind, spec in OUTPUT_KINDS.items():
        src = work / f"{kind}{spec.extension}"
        src.write_bytes(b"x")
        files[kind] = src
        if spec.extension != ".tsv":
            sidecars[kind] = image_sidecar(kind=kind, sources=["bids:raw:sub-01/anat/x"],
                                           steps=[])
    written = write_run_outputs(out, RUN, files, sidecars, context=NameContext(),
                                settings_hash="abc")
    layout = BIDSLayout(str(out), validate=False, is_derivative=True)
    indexed = {Path(f.path) for f in layout.get()}
    for kind, path in written.items():
        assert path in indexed, kind
        ent = layout.get_file(str(path)).get_entities()
        assert ent["subject"] == "01" and ent["session"] == "pre" and ent["run"] == 2
        assert ent["suffix"] == OUTPUT_KINDS[kind].suffix
        assert "space" in ent or "desc" in ent or "from" in ent  # never a raw-like name
    chi = layout.get(suffix="Chimap", space="orig", desc="wholebrain", extension=".nii.gz")
    assert len(chi) == 1
    assert layout.get_metadata(chi[0].path)["Units"] == "ppm"
    assert json.loads((out / "dataset_description.json").read_text())["DatasetType"] == (
        "derivative")


def test_sidecar_content():
    side = image_sidecar(
        kind="chi", sources=["bids:raw:sub-01/anat/sub-01_echo-1_part-phase_MEGRE.nii.gz"],
        steps=[{"Step": "unwrapping", "Algorithm": "romeo", "Parameters": {}},
               {"Step": "inversion", "Algorithm": "tv-admm", "Parameters": {"lambda": 1e-3}}],
        reference={"Region": "wholebrain", "Value": 0.01},
        extra={"MagneticFieldStrength": 3.0})
    assert side["Units"] == "ppm" and side["SkullStripped"] is True
    assert side["EstimationAlgorithm"] == "tv-admm"
    assert side["Reference"]["Region"] == "wholebrain"
    assert side["Sources"][0].startswith("bids:raw:")
    assert side["MagneticFieldStrength"] == 3.0


def test_dataset_description_has_generated_by_and_links(tmp_path, monkeypatch):
    monkeypatch.setenv("QSMBIDS_CONTAINER_TYPE", "docker")
    monkeypatch.setenv("QSMBIDS_CONTAINER_TAG", "qsmbids/qsmbids:0.1.0")
    desc = dataset_description(tmp_path / "raw", version="9.9")
    assert desc["DatasetType"] == "derivative"
    assert desc["GeneratedBy"][0] == {
        "Name": "qsmbids", "Version": "9.9", "CodeURL": desc["GeneratedBy"][0]["CodeURL"],
        "Container": {"Type": "docker", "Tag": "qsmbids/qsmbids:0.1.0"}}
    assert desc["DatasetLinks"]["raw"].startswith("file://")


def test_init_output_dir_keeps_other_versions_and_writes_citation(tmp_path):
    init_output_dir(tmp_path, None, citation="A", version="1.0")
    init_output_dir(tmp_path, None, citation="B", version="2.0")
    init_output_dir(tmp_path, None, citation="B", version="2.0")
    desc = json.loads((tmp_path / "dataset_description.json").read_text())
    assert [g["Version"] for g in desc["GeneratedBy"]] == ["1.0", "2.0"]
    assert (tmp_path / "CITATION.md").read_text() == "B"
    assert "sub-*/log/" in (tmp_path / ".bidsignore").read_text()


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "a.nii.gz"
    target.write_bytes(b"old")

    def boom(tmp):
        tmp.write_bytes(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(target, boom)
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.nii.gz"]
    img = nib.Nifti1Image(np.ones((2, 2, 2), np.float32), np.eye(4))
    atomic_write(target, lambda tmp: nib.save(img, str(tmp)))
    assert nib.load(str(target)).shape == (2, 2, 2)
    assert target.read_bytes()[:2] == b"\x1f\x8b"  # gzip: the temp name kept .nii.gz


def test_stale_temporaries_of_dead_processes_are_removed(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead_pid = int(dead.stdout)
    stale = tmp_path / f".x.nii.gz.qsmbids-tmp-{dead_pid}-abcd.nii.gz"
    live = tmp_path / f".y.json.qsmbids-tmp-{os.getpid()}-abcd.json"
    stale.write_bytes(b"")
    live.write_bytes(b"")
    assert remove_stale_temporaries(tmp_path) == [stale]
    assert live.exists() and not stale.exists()


def _increment(args):
    out, n = args
    for _ in range(n):
        with output_lock(out):
            path = Path(out) / "counter.json"
            value = json.loads(path.read_text())["n"] if path.exists() else 0
            atomic_write_json(path, {"n": value + 1})
        init_output_dir(Path(out), None, citation="same")
    return True


def test_lock_serialises_concurrent_processes(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(4) as pool:
        assert all(pool.map(_increment, [(str(tmp_path), 25)] * 4))
    assert json.loads((tmp_path / "counter.json").read_text())["n"] == 100
    json.loads((tmp_path / "dataset_description.json").read_text())
    assert not list(tmp_path.glob(".*qsmbids-tmp*"))


def test_run_state_tracks_manifest_settings_and_files(tmp_path):
    src = tmp_path / "chi.nii.gz"
    src.write_bytes(b"data")
    out = tmp_path / "out"
    assert run_state(out, RUN, "h1").reason == "no manifest"
    written = write_run_outputs(out, RUN, {"chi": src}, {"chi": {"Units": "ppm"}},
                                context=NameContext(), settings_hash="h1")
    assert run_state(out, RUN, "h1").complete
    assert "settings differ" in run_state(out, RUN, "h2").reason
    written["chi"].write_bytes(b"truncated!")
    assert run_state(out, RUN, "h1").reason.startswith("size of")
    written["chi"].unlink()
    assert run_state(out, RUN, "h1").reason.startswith("missing")


def test_masked_outputs_say_skull_stripped_and_labels_do_not():
    # the registration target is zero outside the reconstruction mask
    # (registration.targets.prepare_target); the warped labels are not masked
    for kind, stripped in (("magnitude", True), ("chi", True), ("dseg", False)):
        side = image_sidecar(kind=kind, sources=[], steps=[])
        assert side["SkullStripped"] is stripped, kind


def test_bidsignore_lists_the_proposed_suffixes_and_keeps_the_users_lines(tmp_path):
    """The SWI and minIP suffixes are only proposed for BIDS: .bidsignore lists them,
    also in an output folder made by an earlier version, without losing lines a user
    added."""
    (tmp_path / ".bidsignore").write_text("sub-*/log/\nmy_notes/\n")
    init_output_dir(tmp_path, None)
    lines = (tmp_path / ".bidsignore").read_text().splitlines()
    assert lines[:2] == ["sub-*/log/", "my_notes/"]
    assert {"*_swi.nii.gz", "*_minIP.nii.gz", "logs/"} <= set(lines)
    init_output_dir(tmp_path, None)
    assert (tmp_path / ".bidsignore").read_text().splitlines() == lines
