"""Discovery and validation of multi-echo GRE runs on tiny hand-made BIDS trees."""

from __future__ import annotations

import gzip
import json
import os
import stat
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from qsmbids.bids.discovery import (
    DiscoveryError,
    GreRun,
    bids_uri,
    discover_runs,
    load_bids_filters,
    validate_run,
)

SHAPE = (8, 8, 8)


def _write_nifti(path: Path, data: np.ndarray, affine: np.ndarray | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, np.eye(4) if affine is None else affine), str(path))


def write_megre(root: Path, stem: str, echo_times=(0.004, 0.008, 0.012), *, parts=("mag", "phase"),
                four_d=False, field_strength: float | None = 3.0, skip_echo=None,
                drop_te_echo=None, shape=SHAPE, rng=0) -> list[Path]:
    """Write one run ``stem`` (e.g. 'sub-01/ses-1/anat/sub-01_ses-1_run-1') into ``root``."""
    rng = np.random.default_rng(rng)
    written = []
    for part in parts:
        if four_d:
            data = rng.uniform(-3, 3, (*shape, len(echo_times))).astype(np.float32)
            path = root / f"{stem}_part-{part}_MEGRE.nii.gz"
            _write_nifti(path, data)
            meta = {"EchoTime": list(echo_times)}
            if field_strength is not None:
                meta["MagneticFieldStrength"] = field_strength
            path.with_name(path.name.replace(".nii.gz", ".json")).write_text(json.dumps(meta))
            written.append(path)
            continue
        for n, te in enumerate(echo_times, start=1):
            if skip_echo == (part, n):
                continue
            path = root / f"{stem}_echo-{n}_part-{part}_MEGRE.nii.gz"
            _write_nifti(path, rng.uniform(-3, 3, shape).astype(np.float32))
            meta = {} if drop_te_echo == n else {"EchoTime": te}
            if field_strength is not None:
                meta["MagneticFieldStrength"] = field_strength
            if part == "phase":
                meta["Units"] = "rad"
            path.with_name(path.name.replace(".nii.gz", ".json")).write_text(json.dumps(meta))
            written.append(path)
    return written


@pytest.fixture
def dataset(tmp_path) -> Path:
    root = tmp_path / "bids"
    root.mkdir()
    (root / "dataset_description.json").write_text(
        json.dumps({"Name": "t", "BIDSVersion": "1.9.0"}))
    return root


def test_finds_runs_grouped_by_entities(dataset):
    write_megre(dataset, "sub-01/ses-1/anat/sub-01_ses-1_run-1")
    write_megre(dataset, "sub-01/ses-1/anat/sub-01_ses-1_run-2")
    write_megre(dataset, "sub-01/ses-2/anat/sub-01_ses-2_acq-fast_rec-norm")
    write_megre(dataset, "sub-02/anat/sub-02", echo_times=(0.005, 0.011))
    _write_nifti(dataset / "sub-01/ses-1/anat/sub-01_ses-1_T1w.nii.gz", np.zeros(SHAPE))
    found = discover_runs(dataset)
    assert not found.problems
    names = [r.prefix for r in found.runs]
    assert names == ["sub-01_ses-1_run-1", "sub-01_ses-1_run-2",
                     "sub-01_ses-2_acq-fast_rec-norm", "sub-02"]
    run = found.runs[0]
    assert run.echo_times == (0.004, 0.008, 0.012)
    assert run.field_strength == 3.0
    assert run.phase_units == "rad"
    assert [p.name for p in run.phase] == [
        f"sub-01_ses-1_run-1_echo-{n}_part-phase_MEGRE.nii.gz" for n in (1, 2, 3)]
    assert run.t1w is not None and run.t1w.name == "sub-01_ses-1_T1w.nii.gz"
    assert found.runs[2].t1w is None  # T1w belongs to ses-1 only
    assert found.runs[3].echo_times == (0.005, 0.011)
    assert found.runs[2].entities == {"sub": "01", "ses": "2", "acq": "fast", "rec": "norm"}
    assert validate_run(run) == []


def test_filters_by_participant_session_and_filter_file(dataset, tmp_path):
    write_megre(dataset, "sub-01/ses-1/anat/sub-01_ses-1")
    write_megre(dataset, "sub-01/ses-2/anat/sub-01_ses-2_acq-fast")
    write_megre(dataset, "sub-01/ses-2/anat/sub-01_ses-2_acq-slow")
    write_megre(dataset, "sub-010/ses-1/anat/sub-010_ses-1")
    write_megre(dataset, "sub-02/ses-1/anat/sub-02_ses-1")
    names = [r.prefix for r in discover_runs(dataset, participant_label=["01"]).runs]
    assert names == ["sub-01_ses-1", "sub-01_ses-2_acq-fast", "sub-01_ses-2_acq-slow"]
    names = [r.prefix for r in discover_runs(dataset, session_label=["1"]).runs]
    assert names == ["sub-01_ses-1", "sub-010_ses-1", "sub-02_ses-1"]
    filter_file = tmp_path / "filters.json"
    filter_file.write_text(json.dumps({"megre": {"acquisition": "slow"}}))
    names = [r.prefix for r in discover_runs(
        dataset, bids_filters=load_bids_filters(filter_file)).runs]
    assert names == ["sub-01_ses-2_acq-slow"]


@pytest.mark.parametrize("content, message", [
    ("not json", "cannot read"),
    ('{"megre": 3}', "must be a JSON object"),
    ('{"bold": {}}', "unknown query"),
])
def test_bad_filter_file_is_explained(tmp_path, content, message):
    path = tmp_path / "f.json"
    path.write_text(content)
    with pytest.raises(DiscoveryError, match=message):
        load_bids_filters(path)


def test_four_d_and_real_imag_and_t2starw(dataset):
    write_megre(dataset, "sub-01/anat/sub-01_acq-fourd", four_d=True)
    write_megre(dataset, "sub-01/anat/sub-01_acq-complex", parts=("real", "imag"))
    stem = dataset / "sub-01/anat/sub-01_acq-starw"
    for n, te in enumerate((0.003, 0.006), start=1):
        for part in ("mag", "phase"):
            path = Path(f"{stem}_echo-{n}_part-{part}_T2starw.nii.gz")
            _write_nifti(path, np.ones(SHAPE, np.float32))
            path.with_name(path.name[:-7] + ".json").write_text(
                json.dumps({"EchoTime": te, "MagneticFieldStrength": 7}))
    # a single-echo T2starw magnitude without a phase is an anatomical image: skipped
    # with the reason, not set aside as a failed run
    _write_nifti(dataset / "sub-01/anat/sub-01_acq-single_T2starw.nii.gz", np.ones(SHAPE))
    found = discover_runs(dataset)
    assert not found.problems
    assert len(found.skipped) == 1
    assert "sub-01_acq-single_T2starw.nii.gz" in found.skipped[0]
    assert "without part-phase" in found.skipped[0]
    runs = {r.acquisition: r for r in found.runs}
    assert set(runs) == {"fourd", "complex", "starw"}
    assert runs["fourd"].four_d and runs["fourd"].n_echoes == 3
    assert len(runs["fourd"].phase) == 1
    assert validate_run(runs["fourd"]) == []
    assert runs["complex"].complex_parts and len(runs["complex"].real) == 3
    assert runs["complex"].magnitude == ()
    assert runs["starw"].suffix == "T2starw" and runs["starw"].field_strength == 7


def test_field_strength_override_and_missing(dataset):
    write_megre(dataset, "sub-01/anat/sub-01", field_strength=None)
    write_megre(dataset, "sub-02/anat/sub-02", field_strength=3.0)
    found = discover_runs(dataset)
    assert [p.name for p in found.problems] == ["sub-01"]
    assert "MagneticFieldStrength" in found.problems[0].message
    assert "--field-strength" in found.problems[0].message
    found = discover_runs(dataset, field_strength=7.0)
    assert not found.problems
    b0 = {r.subject: r for r in found.runs}
    assert b0["01"].field_strength == 7.0 and not b0["01"].notes
    assert b0["02"].field_strength == 7.0 and "overrides" in b0["02"].notes[0]


@pytest.mark.parametrize("kwargs, message", [
    ({"skip_echo": ("phase", 2)}, "missing echo 2 of part-phase"),
    ({"skip_echo": ("mag", 3)}, "missing echo 3 of part-mag"),
    ({"drop_te_echo": 2}, "no EchoTime in the sidecar of sub-01/anat/sub-01_echo-2_part-mag"),
    ({"parts": ("mag",)}, "no phase images"),
    ({"echo_times": (4.0, 8.0, 12.0)}, "look like milliseconds"),
    ({"echo_times": (0.008, 0.004, 0.012)}, "not increasing"),
])
def test_broken_runs_get_specific_messages_and_others_proceed(dataset, kwargs, message):
    write_megre(dataset, "sub-01/anat/sub-01", **kwargs)
    write_megre(dataset, "sub-02/anat/sub-02")
    found = discover_runs(dataset)
    assert [r.prefix for r in found.runs] == ["sub-02"]
    assert len(found.problems) == 1 and found.problems[0].name == "sub-01"
    assert message in found.problems[0].message


def test_missing_first_echo_file_is_a_gap(dataset):
    paths = write_megre(dataset, "sub-01/anat/sub-01")
    for p in paths:
        if "echo-1_" in p.name:
            p.unlink()
            Path(str(p).replace(".nii.gz", ".json")).unlink()
    found = discover_runs(dataset)
    assert "missing echo 1" in found.problems[0].message


def test_single_echo_when_two_needed(dataset):
    write_megre(dataset, "sub-01/anat/sub-01", echo_times=(0.01,))
    assert discover_runs(dataset).runs  # fine for methods that accept one echo
    found = discover_runs(dataset, min_echoes=2)
    assert "only 1 echo(es)" in found.problems[0].message
    assert "at least 2" in found.problems[0].message


def _run(dataset) -> GreRun:
    found = discover_runs(dataset)
    assert not found.problems
    return found.runs[0]


def test_validate_detects_corrupt_nifti(dataset):
    paths = write_megre(dataset, "sub-01/anat/sub-01")
    raw = gzip.decompress(paths[4].read_bytes())
    paths[4].write_bytes(gzip.compress(raw[: len(raw) // 2]))  # truncated data
    paths[1].write_bytes(b"garbage")
    problems = validate_run(_run(dataset))
    assert len(problems) == 2
    assert any(p.startswith(f"cannot read {paths[4].name}") for p in problems)
    assert any(p.startswith(f"cannot read {paths[1].name}") for p in problems)


def test_validate_detects_shape_affine_nan_and_2d(dataset):
    paths = write_megre(dataset, "sub-01/anat/sub-01")
    _write_nifti(paths[1], np.zeros((8, 8, 9), np.float32))
    shifted = np.eye(4)
    shifted[0, 3] = 5.0
    _write_nifti(paths[2], np.zeros(SHAPE, np.float32), shifted)
    nan = np.full(SHAPE, np.nan, np.float32)
    nan[1, 2, 3] = 0.0  # mostly NaN (a NaN background alone is set to 0 when loading)
    _write_nifti(paths[3], nan)
    problems = validate_run(_run(dataset))
    assert f"{paths[1].name} has shape (8, 8, 9) but {paths[0].name} has (8, 8, 8)" in problems
    assert any("different affines" in p and paths[2].name in p for p in problems)
    assert f"{paths[3].name} is NaN in 511 of its 512 voxels" in problems
    for p in paths:
        _write_nifti(p, np.zeros((8, 8, 1), np.float32))
    problems = validate_run(_run(dataset))
    assert len(problems) == 6 and all("is 2-D" in p for p in problems)


def test_validate_four_d_echo_count(dataset):
    paths = write_megre(dataset, "sub-01/anat/sub-01", four_d=True)
    _write_nifti(paths[0], np.zeros((*SHAPE, 2), np.float32))
    assert validate_run(_run(dataset)) == [
        f"{paths[0].name} holds 2 volumes but its sidecar lists 3 echo times"]


def test_read_only_dataset_is_not_written(dataset):
    write_megre(dataset, "sub-01/anat/sub-01")
    before = sorted(p for p in dataset.rglob("*"))
    modes = {}
    for p in [dataset, *before]:
        modes[p] = p.stat().st_mode
        p.chmod(p.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    try:
        found = discover_runs(dataset)
        assert len(found.runs) == 1 and validate_run(found.runs[0]) == []
        assert sorted(p for p in dataset.rglob("*")) == before
    finally:
        for p, mode in modes.items():
            os.chmod(p, mode)


def test_bids_uri(dataset):
    path = dataset / "sub-01/anat/sub-01_echo-1_part-mag_MEGRE.nii.gz"
    assert bids_uri(path, dataset) == "bids:raw:sub-01/anat/sub-01_echo-1_part-mag_MEGRE.nii.gz"


def test_single_echo_runs_are_discovered(dataset):
    """One echo, no echo entity: a T2starw or GRE pair (SWI-type series) with a scalar
    EchoTime, and a MEGRE with only echo-1, are runs of one echo."""
    for acq, suffix in (("swi", "T2starw"), ("gre", "GRE")):
        for part in ("mag", "phase"):
            path = dataset / f"sub-01/anat/sub-01_acq-{acq}_part-{part}_{suffix}.nii.gz"
            _write_nifti(path, np.ones(SHAPE, np.float32))
            path.with_name(path.name[:-7] + ".json").write_text(
                json.dumps({"EchoTime": 0.02, "MagneticFieldStrength": 3}))
    write_megre(dataset, "sub-01/anat/sub-01_acq-one", echo_times=(0.015,))
    found = discover_runs(dataset)
    assert not found.problems and not found.skipped
    runs = {r.acquisition: r for r in found.runs}
    assert set(runs) == {"swi", "gre", "one"}
    for run in runs.values():
        assert run.n_echoes == 1 and not run.four_d
        assert validate_run(run) == []
    assert runs["swi"].echo_times == (0.02,) and runs["swi"].suffix == "T2starw"


def test_a_4d_file_with_one_echo_time_is_reported(dataset):
    for part in ("mag", "phase"):
        path = dataset / f"sub-01/anat/sub-01_part-{part}_MEGRE.nii.gz"
        _write_nifti(path, np.ones((*SHAPE, 3), np.float32))
        path.with_name(path.name[:-7] + ".json").write_text(
            json.dumps({"EchoTime": 0.02, "MagneticFieldStrength": 3}))
    found = discover_runs(dataset)
    assert not found.runs
    message = found.problems[0].message
    assert "holds 3 volumes but one EchoTime" in message and "EchoTime as a list" in message
