"""The simulated dataset is valid BIDS (schema rules for MEGRE), indexes in pybids with
its echo metadata, carries a derivative ground-truth dataset, and breaks runs on demand."""

import json

import bids
import nibabel as nib
import pytest
from bidsschematools.validator import validate_bids

from qsmbids.bids.discovery import discover_runs
from qsmbids.cli.exit_codes import ExitCode
from qsmbids.cli.main import main
from qsmbids.sim.bids_writer import BrokenRun, SimulationSettings, simulate_dataset

TES = (0.004, 0.009, 0.015)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """2 subjects x 2 sessions x 2 runs at 4 mm, Siemens phase, with two broken runs."""
    root = tmp_path_factory.mktemp("cohort") / "bids"
    settings = SimulationSettings(
        n_subjects=2, sessions=("1", "2"), runs=2, voxel_size_mm=4.0, echo_times_s=TES,
        phase_units="siemens", oblique_deg=10.0, ages=(23.0, 71.0), sexes=("F", "M"),
        broken=(BrokenRun("02", "missing-echo", session="2", run=2),
                BrokenRun("02", "missing-echotime", session="1", run=1),
                BrokenRun("01", "corrupt-nifti", session="2", run=1)), compress=False)
    return simulate_dataset(root, settings)


def _schema_report(root):
    return validate_bids(str(root))


def test_every_file_matches_the_bids_schema(cohort):
    report = _schema_report(cohort.root)
    assert report["path_tracking"] == []  # no file left unmatched by a schema rule
    matched = [m["path"] for m in report["match_listing"]]
    megre = [p for p in matched if p.endswith("_MEGRE.nii")]
    assert len(megre) == 8 * 3 * 2 - 2  # runs x echoes x parts, minus the deleted echo
    for name in ("dataset_description.json", "participants.tsv", "participants.json", "README"):
        assert any(p.endswith("/" + name) for p in matched), name


def test_schema_check_catches_a_bad_name(cohort, tmp_path):
    """The validation above is not vacuous: a misnamed MEGRE file is reported."""
    bad = cohort.root / "sub-01" / "ses-1" / "anat" / "sub-01_ses-1_part-mag_echo-1_MEGRE.nii"
    bad.write_bytes(b"")
    try:
        report = _schema_report(cohort.root)
        assert any(p.endswith(bad.name) for p in report["path_tracking"])
    finally:
        bad.unlink()


def test_dataset_files(cohort):
    desc = json.loads((cohort.root / "dataset_description.json").read_text())
    assert desc["DatasetType"] == "raw" and desc["BIDSVersion"]
    rows = [line.split("\t") for line in
            (cohort.root / "participants.tsv").read_text().splitlines()]
    assert rows == [["participant_id", "age", "sex"], ["sub-01", "23.0", "F"],
                    ["sub-02", "71.0", "M"]]
    side = json.loads((cohort.root / "participants.json").read_text())
    assert side["age"]["Units"] == "year"
    gt = json.loads((cohort.groundtruth / "dataset_description.json").read_text())
    assert gt["DatasetType"] == "derivative" and gt["GeneratedBy"][0]["Name"]


def test_pybids_indexes_echoes_parts_and_metadata(cohort):
    layout = bids.BIDSLayout(cohort.root, derivatives=True)
    assert layout.get_subjects() == ["01", "02"]
    assert layout.get_sessions() == ["1", "2"]
    assert layout.get_runs() == [1, 2]
    files = layout.get(subject="01", session="1", run=2, suffix="MEGRE", extension=".nii")
    assert sorted((f.entities["echo"], f.entities["part"]) for f in files) == sorted(
        (str(e), p) for e in (1, 2, 3) for p in ("mag", "phase"))
    for f in files:
        meta = f.get_metadata()
        assert meta["EchoTime"] == TES[int(f.entities["echo"]) - 1]
        assert meta["MagneticFieldStrength"] == 3.0
        if f.entities["part"] == "phase":
            assert meta["Units"] == "arbitrary"  # Siemens integers
    # the ground truth indexes as a derivative dataset
    chimaps = layout.get(scope="derivatives", suffix="Chimap", extension=".nii")
    assert len(chimaps) == 8
    assert chimaps[0].get_metadata()["Units"] == "ppm"
    assert chimaps[0].entities["space"] == "orig"
    masks = layout.get(scope="derivatives", suffix="mask", desc="brain", extension=".nii")
    assert len(masks) == 8


def test_broken_runs_are_broken_as_asked(cohort):
    by_key = {(r.subject, r.session, r.run): r for r in cohort.runs}
    assert sum(r.broken is not None for r in cohort.runs) == 3
    missing = by_key[("02", "2", 2)]
    assert not (cohort.root / missing.magnitude[1]).exists()
    assert (cohort.root / missing.magnitude[2]).exists()
    no_te = by_key[("02", "1", 1)]
    side = json.loads((cohort.root / no_te.phase[0].replace(".nii", ".json")).read_text())
    assert "EchoTime" not in side
    corrupt = by_key[("01", "2", 1)]
    with pytest.raises(Exception):  # noqa: B017 - nibabel raises several kinds here
        nib.load(cohort.root / corrupt.phase[0]).get_fdata()
    # the project's discovery sets the two name/sidecar problems aside, keeps the rest
    found = discover_runs(cohort.root)
    assert len(found.runs) + len(found.problems) == 8
    assert len(found.problems) >= 2


def test_settings_are_checked():
    with pytest.raises(ValueError, match="phase_units"):
        SimulationSettings(phase_units="degrees")
    with pytest.raises(ValueError, match="echo times"):
        SimulationSettings(echo_times_s=(4.0, 9.0))
    with pytest.raises(ValueError, match="ages"):
        SimulationSettings(n_subjects=2, ages=(30.0,))
    with pytest.raises(ValueError, match="broken"):
        SimulationSettings(broken=(BrokenRun("01", "exploded"),))


def test_simulate_command(tmp_path, capsys):
    out = tmp_path / "sim"
    code = main(["simulate", str(out), "--subjects", "1", "--resolution", "4",
                 "--echo-times", "0.005", "0.011", "--phase-units", "arbitrary",
                 "--field-strength", "1.5", "--snr", "none", "--oblique-deg", "8",
                 "--uncompressed", "--no-groundtruth"])
    assert code == 0
    printed = capsys.readouterr().out
    assert str(out) in printed and "1.5 T" in printed and "'arbitrary'" in printed
    names = sorted(p.name for p in (out / "sub-01" / "anat").iterdir())
    assert names == sorted(f"sub-01_echo-{e}_part-{p}_MEGRE.{x}" for e in (1, 2)
                           for p in ("mag", "phase") for x in ("json", "nii"))
    side = json.loads((out / "sub-01" / "anat" / "sub-01_echo-2_part-phase_MEGRE.json")
                      .read_text())
    assert side["EchoTime"] == 0.011 and side["MagneticFieldStrength"] == 1.5
    assert side["Units"] == "arbitrary"
    assert not (out / "derivatives").exists()
    # a second run refuses to mix datasets; bad values are usage errors
    assert main(["simulate", str(out)]) == ExitCode.CANT_CREATE
    assert main(["simulate", str(tmp_path / "x"), "--subjects", "2", "--ages", "30"]) == 64
    with pytest.raises(SystemExit) as exc:
        main(["simulate", str(tmp_path / "y"), "--echo-times", "4", "9"])
    assert exc.value.code == 64
    assert "milliseconds" in capsys.readouterr().err


def test_cohort_truth_follows_age(cohort):
    """Older participants carry more iron in the truth tables (GP plateau, putamen rising)."""
    def tissue_chi(subject, region):
        path = next((cohort.groundtruth / f"sub-{subject}").rglob("*_desc-truth_regions.tsv"))
        lines = [line.split("\t") for line in path.read_text().splitlines()]
        rows = {row[1]: dict(zip(lines[0], row, strict=True)) for row in lines[1:]}
        return float(rows[region]["chi_tissue_ppm"])

    for region in ("Putamen_L", "SubstantiaNigra_R", "Dentate_L"):
        assert tissue_chi("02", region) > tissue_chi("01", region) + 0.01  # 71 vs 23 years
    assert tissue_chi("02", "GlobusPallidus_L") == pytest.approx(
        tissue_chi("01", "GlobusPallidus_L"), abs=0.01)  # plateau after 30
