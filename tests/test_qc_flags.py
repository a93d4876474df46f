"""QC flags that make a wrong result loud: flat maps, guessed phase units, implausible
masks and inverted nuclei, from small arrays up to the sidecars, logs, report and
``group_qc.tsv`` of a pipeline run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from gre_dataset import new_dataset, write_run

from qsmbids.derivatives.naming import NameContext
from qsmbids.derivatives.run_outputs import (
    run_state,
    sidecar_path,
    update_run_sidecar,
    write_run_outputs,
)
from qsmbids.report.qc_metrics import CRITICAL_CODES, compute_run_qc, qc_warnings
from qsmbids.report.qc_tables import (
    QC_COLUMNS,
    qc_row,
    read_qc_tsv,
    write_cohort_qc_tsv,
    write_qc_tsv,
)

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

VOXEL = (4.0, 4.0, 4.0)  # a 30^3 grid at 4 mm: a ball of radius 12 voxels is ~460 ml


def _ball(shape=(30, 30, 30), radius=12.0, centre=None) -> np.ndarray:
    centre = (np.array(shape) - 1) / 2 if centre is None else np.asarray(centre)
    grid = np.indices(shape) - centre[:, None, None, None]
    return (grid ** 2).sum(axis=0) <= radius ** 2


def _codes(qc) -> set[str]:
    return {w.code for w in qc_warnings(qc)}


def _plausible_chi(mask: np.ndarray, seed: int = 0) -> np.ndarray:
    return np.where(mask, np.random.default_rng(seed).normal(0.0, 0.03, mask.shape), 0.0)


# ------------------------------------------------------------------ flat map


def test_flat_or_zero_map_is_flagged_with_what_to_try():
    mask = _ball()
    good = compute_run_qc(mask, (5.0,) * 3, qsm=_plausible_chi(mask))
    assert good.chi_iqr == pytest.approx(0.04, rel=0.1) and good.chi_zero_fraction == 0
    assert "chi_flat" not in _codes(good)
    # arbitrary-unit phase read as radians: the map is flat to a few 1e-4 ppm
    flat = compute_run_qc(mask, (5.0,) * 3, qsm=_plausible_chi(mask) * 0.01)
    found = {w.code: w.message for w in qc_warnings(flat)}
    assert "chi_flat" in found and "--phase-units" in found["chi_flat"]
    # a map that is exactly zero (or NaN) in a large part of the mask
    holes = _plausible_chi(mask)
    holes[mask & (np.indices(mask.shape)[0] < 10)] = 0.0
    assert compute_run_qc(mask, (5.0,) * 3, qsm=holes).chi_zero_fraction > 0.05
    assert "chi_flat" in _codes(compute_run_qc(mask, (5.0,) * 3, qsm=holes))
    nan = np.full(mask.shape, np.nan)
    assert "chi_flat" in _codes(compute_run_qc(mask, (5.0,) * 3, qsm=nan))


# ------------------------------------------------------------------ phase units


def test_guessed_and_doubtful_phase_units_are_flagged():
    mask = _ball()
    assert not {"phase_units_guessed", "phase_units_doubtful"} & _codes(
        compute_run_qc(mask, VOXEL, phase_units_guessed=False))
    qc = compute_run_qc(mask, VOXEL, phase_units_guessed=True,
                        phase_units_warning="float phase spans 0.1")
    found = {w.code: w.message for w in qc_warnings(qc)}
    assert "--phase-units rad|siemens|arbitrary" in found["phase_units_guessed"]
    assert "float phase spans 0.1" in found["phase_units_doubtful"]
    assert {"phase_units_guessed", "phase_units_doubtful"} <= set(CRITICAL_CODES)


def test_a_refinement_that_lowers_the_template_match_is_flagged():
    mask = _ball()
    better = compute_run_qc(mask, VOXEL, refinement_correlation=(0.75, 0.93))
    assert better.chi_refinement_r_after == pytest.approx(0.93)
    assert "chi_refinement" not in _codes(better)
    found = {w.code: w.message for w in qc_warnings(
        compute_run_qc(mask, VOXEL, refinement_correlation=(0.8, 0.6)))}
    assert "--registration-contrast anatomy" in found["chi_refinement"]


# ------------------------------------------------------------------ mask


def test_mask_volume_is_judged_only_when_the_mask_does_not_touch_the_edge():
    small = _ball(radius=6.0)  # ~58 ml at 4 mm: far too small for a whole brain
    assert "mask_volume" in _codes(compute_run_qc(small, VOXEL))
    # a partial-FOV crop (like the 7 T crop: all brain, cut on every face)
    crop = np.ones((30, 30, 30), bool)
    codes = _codes(compute_run_qc(crop, (0.47, 0.47, 1.0)))
    assert "mask_edge" in codes and not {"mask_volume", "mask_box"} & codes
    # ... but a cut field of view cannot make a mask larger: scalp and background
    # included (the Philips head's automatic mask: 3053 ml, touching z- and z+)
    codes = _codes(compute_run_qc(crop, (5.0, 5.0, 5.0)))  # 3375 ml
    assert {"mask_edge", "mask_volume"} <= codes
    brain = _ball(radius=15.0, shape=(40, 40, 40))  # ~900 ml, not touching
    assert not {"mask_volume", "mask_edge", "mask_box", "mask_fragmented"} & _codes(
        compute_run_qc(brain, VOXEL))


def test_fragmented_and_box_like_masks_are_flagged():
    shape = (40, 40, 40)
    brain = _ball(radius=15.0, shape=shape)
    specks = np.zeros(shape, bool)
    specks[2:38:3, 2:38:3, 2] = True  # 144 separate noise voxels, 1 % of the mask
    qc = compute_run_qc(brain | specks, VOXEL)
    assert qc.mask_components == 145 and qc.mask_largest_fraction > 0.95
    assert "mask_fragmented" not in _codes(qc)
    blobs = _ball(radius=15.0, shape=shape, centre=(12, 19.5, 19.5)) & ~(
        np.abs(np.indices(shape)[0] - 12) <= 1)  # cut in two halves
    qc = compute_run_qc(blobs, VOXEL)
    assert qc.mask_components == 2 and "mask_fragmented" in _codes(qc)
    box = np.zeros(shape, bool)
    box[3:37, 3:37, 5:35] = True  # background included: fills its bounding box
    qc = compute_run_qc(box, (3.0, 3.0, 3.0))
    assert qc.mask_box_fill == 1.0 and "mask_box" in _codes(qc)
    assert compute_run_qc(brain, VOXEL).mask_box_fill == pytest.approx(np.pi / 6, abs=0.03)


# ------------------------------------------------------------------ nuclei


def _atlas_head():
    mask = _ball(radius=13.0)
    dseg = np.zeros(mask.shape, np.int16)
    dseg[mask] = 20  # white matter
    dseg[8:12, 10:14, 12:16] = 5   # GlobusPallidus_L
    dseg[18:22, 10:14, 12:16] = 6  # GlobusPallidus_R
    dseg[13:16, 16:18, 10:12] = 9  # SubstantiaNigra_L
    dseg[13:16, 18:20, 13:15] = 11  # RedNucleus_L
    regions = {"GlobusPallidus_L": (5,), "GlobusPallidus_R": (6,),
               "SubstantiaNigra_L": (9,), "RedNucleus_L": (11,), "Thalamus_L": (7,)}
    return mask, dseg, regions, {"WhiteMatter": (20,)}


@pytest.mark.parametrize(("sign", "inverted"), [(1.0, False), (-1.0, True)])
def test_inverted_nuclei_point_at_the_phase_sign(sign, inverted):
    mask, dseg, regions, references = _atlas_head()
    chi = _plausible_chi(mask) * 0.3 - 0.02 * (dseg == 20)
    chi = chi + sign * 0.15 * np.isin(dseg, (5, 6, 9, 11))
    qc = compute_run_qc(mask, VOXEL, qsm=chi, dseg=dseg, region_labels=regions,
                        reference_labels=references)
    assert qc.sign_check_reference == "WhiteMatter"
    # white matter sits at -0.02 ppm
    assert qc.iron_nuclei_minus_reference_ppm == pytest.approx(sign * 0.15 + 0.02, abs=0.01)
    found = {w.code: w.message for w in qc_warnings(qc)}
    assert ("nuclei_inverted" in found) is inverted
    if inverted:
        assert "phase sign may be inverted" in found["nuclei_inverted"]
        assert "--phase-sign" in found["nuclei_inverted"]
        assert "nuclei_contrast" not in found  # one finding, the specific one
    # without a white-matter reference the brain median stands in
    qc = compute_run_qc(mask, VOXEL, qsm=chi, dseg=dseg, region_labels=regions)
    assert qc.sign_check_reference == "brain median"
    assert ("nuclei_inverted" in _codes(qc)) is inverted


@pytest.mark.parametrize(("sign", "suspect"), [(1.0, False), (-1.0, True)])
def test_a_map_leaning_negative_is_flagged_without_an_atlas(sign, suspect):
    """Veins and iron-rich nuclei give a brain map a heavy positive tail; a flipped
    phase sign turns it into a negative one, which the map alone shows."""
    mask = _ball((40, 40, 40), 16.0)
    rng = np.random.default_rng(4)
    chi = np.where(mask, rng.normal(0.0, 0.02, mask.shape), 0.0)
    veins = mask & (rng.random(mask.shape) < 0.03)
    chi[veins] += rng.uniform(0.1, 0.4, int(veins.sum()))
    qc = compute_run_qc(mask, VOXEL, qsm=sign * chi)
    assert (qc.chi_tail_ratio < 0.5) is suspect
    found = {w.code: w.message for w in qc_warnings(qc)}
    assert ("phase_sign_suspect" in found) is suspect
    if suspect:
        assert "--phase-sign -1" in found["phase_sign_suspect"]
        assert "phase_sign_suspect" in CRITICAL_CODES
    # a symmetric map (a crop of white and grey matter) is not judged inverted
    symmetric = compute_run_qc(mask, VOXEL, qsm=np.where(mask, rng.normal(0, 0.02, mask.shape),
                                                         0.0))
    assert "phase_sign_suspect" not in _codes(symmetric)


def test_report_shows_inverted_nuclei_of_a_sign_flipped_map(tmp_path):
    """The report's QC uses the atlas labels: a QSM of the opposite sign (a phase-sign
    error) is flagged ``nuclei_inverted`` in the HTML and the QC table."""
    import dataclasses

    import nibabel as nib
    from report_inputs import synthetic_run

    from qsmbids.report.participant import write_participant_report

    run = synthetic_run(tmp_path / "in", "sub-01", with_tsv=False, voxel_mm=4.0)
    qsm = nib.load(run.qsm)
    flipped = nib.Nifti1Image(-np.asanyarray(qsm.dataobj), qsm.affine)
    report = write_participant_report(tmp_path / "out", [dataclasses.replace(
        run, qsm=flipped, template=None, phase_units_rule="values fill [-pi, pi)")])
    found = {w.code: w.message for w in report.runs[0].warnings}
    assert "nuclei_inverted" in found and "phase sign may be inverted" in found[
        "nuclei_inverted"]
    assert "nuclei_inverted" in report.runs[0].qc_row["qc_flags"].split(",")
    html = report.html.read_text()
    assert "[nuclei_inverted]" in html and "Phase scaling: values fill" in html


# ------------------------------------------------------------------ tables and sidecars


def test_qc_flags_column_and_older_tables(tmp_path):
    mask = _ball()
    qc = compute_run_qc(mask, (5.0,) * 3, qsm=_plausible_chi(mask) * 0.01,
                        phase_units_guessed=True, phase_units_warning="a\ttab\nand a line")
    row = qc_row("sub-01", None, "sub-01", qc, qc_warnings(qc))
    assert row["qc_flags"].split(",") == ["chi_flat", "phase_units_guessed",
                                          "phase_units_doubtful"]
    assert row["phase_units_warning"] == "a tab and a line"  # one TSV cell
    new = write_qc_tsv([row], tmp_path / "sub-01_qc.tsv")
    old = tmp_path / "sub-00_qc.tsv"  # written before the new columns existed
    old_columns = [c for c in QC_COLUMNS if c not in ("chi_iqr", "qc_flags")]
    old.write_text("\t".join(old_columns) + "\n" + "\t".join(
        "sub-00" if c in ("participant_id", "run_id") else "" for c in old_columns) + "\n")
    cohort = read_qc_tsv(write_cohort_qc_tsv([new, old], tmp_path / "group_qc.tsv"))
    assert [r["qc_flags"] for r in cohort] == ["n/a", row["qc_flags"]]


def test_sidecar_update_keeps_the_run_complete(tmp_path):
    entities = {"sub": "01"}
    chi = tmp_path / "chi.nii"
    chi.write_bytes(b"\0" * 352)
    write_run_outputs(tmp_path / "out", entities, {"chi": chi}, {"chi": {"Units": "ppm"}},
                      context=NameContext(), settings_hash="abc")
    side = update_run_sidecar(tmp_path / "out", entities, "chi",
                              {"QCFlags": ["chi_flat"], "Units": "ppm"})
    assert side == sidecar_path(tmp_path / "out", entities, "chi")
    assert json.loads(side.read_text())["QCFlags"] == ["chi_flat"]
    assert run_state(tmp_path / "out", entities, "abc").complete
    update_run_sidecar(tmp_path / "out", entities, "chi", {"QCFlags": None})
    assert "QCFlags" not in json.loads(side.read_text())
    assert run_state(tmp_path / "out", entities, "abc").complete
    assert update_run_sidecar(tmp_path / "out", entities, "r2star", {"QCFlags": []}) is None


# ------------------------------------------------------------------ the pipeline


@pytest.fixture(scope="module")
def arbitrary_runs(tmp_path_factory):
    """Phase in arbitrary float units (+-0.0037 per period, no sidecar Units), processed
    automatically (units guessed) and with --phase-units rad (the old reading: flat map)."""
    import contextlib
    import io

    from qsmbids.cli.main import main

    root = tmp_path_factory.mktemp("arbitrary")
    bids = new_dataset(root / "bids")
    write_run(bids, "sub-01/anat/sub-01", seed=1, phase_units="arbitrary")
    outputs = {}
    for name, extra in (("auto", []), ("rad", ["--phase-units", "rad"])):
        out = root / name
        said = io.StringIO()
        with contextlib.redirect_stderr(said):
            code = main([str(bids), str(out), "participant", "--atlas", "none", "--preset",
                         "fast", "--nprocs", "1", "-w", str(root / f"work-{name}"),
                         "--no-progress", *extra])
            # without an atlas there are no regional tables, so the group level stops
            # with an error after it has written group_qc.tsv (the part checked here)
            main([str(bids), str(out), "group"])
        assert code == 0
        outputs[name] = out
        outputs[f"{name}-output"] = said.getvalue()
    return outputs


def _chimap_sidecar(out: Path) -> dict:
    return json.loads((out / "sub-01/anat/sub-01_space-orig_desc-wholebrain_Chimap.json")
                      .read_text())


def test_guessed_units_and_flat_map_reach_sidecar_log_report_and_group_qc(arbitrary_runs):
    auto, rad = arbitrary_runs["auto"], arbitrary_runs["rad"]
    # automatic: rescaled (a real map), but the guess is flagged everywhere
    side = _chimap_sidecar(auto)
    assert "phase_units_guessed" in side["QCFlags"] and "chi_flat" not in side["QCFlags"]
    assert side["ProcessingSteps"][0]["Info"]["PhaseUnitsGuessed"] is True
    assert "QC FLAG sub-01 [phase_units_guessed]" in arbitrary_runs["auto-output"]
    assert "1 of 1 run(s) QC-flagged" in arbitrary_runs["auto-output"]
    log = (auto / "sub-01/log/sub-01.log").read_text()
    assert "QC FLAG sub-01 [phase_units_guessed]" in log
    assert "phase scaling: units guessed" in log
    html = (auto / "sub-01.html").read_text()
    assert "[phase_units_guessed]" in html and "Phase scaling: units guessed" in html
    group = read_qc_tsv(auto / "group_qc.tsv")
    assert group[0]["run_id"] == "sub-01" and group[0]["phase_units_guessed"] == "True"
    assert "phase_units_guessed" in group[0]["qc_flags"].split(",")
    # read as radians (what the old rule did): the map is flat and says what to try
    side = _chimap_sidecar(rad)
    assert "chi_flat" in side["QCFlags"] and "phase_units_guessed" not in side["QCFlags"]
    assert any("--phase-units" in w for w in side["QCWarnings"] if "[chi_flat]" in w)
    assert "QC FLAG sub-01 [chi_flat]" in (rad / "sub-01/log/sub-01.log").read_text()
    assert "QC FLAG sub-01 [chi_flat]" in arbitrary_runs["rad-output"]
    assert "[chi_flat]" in (rad / "sub-01.html").read_text()
    row = read_qc_tsv(rad / "group_qc.tsv")[0]
    assert "chi_flat" in row["qc_flags"].split(",") and float(row["chi_iqr"]) < 0.005
    # the flags kept the manifest exact: a rerun skips the finished run
    assert run_state(rad, {"sub": "01"}, json.loads(
        (rad / "sub-01/log/sub-01_manifest.json").read_text())["SettingsHash"]).complete


def test_phase_filling_half_of_minus_pi_to_pi_is_flagged_doubtful_on_a_run(tmp_path):
    """Phase within [-pi/2, pi/2] and no sidecar Units (radians with little variation,
    or arbitrary units?): the run completes, rescaled, and flags the doubt where a user
    looks (the Chimap sidecar, the run log and the QC table) with what to pass."""
    import contextlib
    import io

    import nibabel as nib

    from qsmbids.cli.main import main

    bids = new_dataset(tmp_path / "bids")
    write_run(bids, "sub-01/anat/sub-01", seed=4)
    for phase in (bids / "sub-01" / "anat").glob("*_part-phase_MEGRE.nii.gz"):
        img = nib.load(phase)
        nib.save(nib.Nifti1Image(np.asarray(img.dataobj, np.float32) / 2, img.affine), phase)
    for sidecar in (bids / "sub-01" / "anat").glob("*_MEGRE.json"):
        meta = json.loads(sidecar.read_text())
        meta.pop("Units", None)
        sidecar.write_text(json.dumps(meta))
    out = tmp_path / "out"
    with contextlib.redirect_stderr(io.StringIO()):
        assert main([str(bids), str(out), "participant", "--atlas", "none", "--preset",
                     "fast", "--nprocs", "1", "-w", str(tmp_path / "work"),
                     "--no-progress"]) == 0
    side = _chimap_sidecar(out)
    assert "phase_units_doubtful" in side["QCFlags"]
    assert any("--phase-units" in w for w in side["QCWarnings"]
               if "[phase_units_doubtful]" in w)
    assert "QC FLAG sub-01 [phase_units_doubtful]" in (out / "sub-01/log/sub-01.log"
                                                        ).read_text()
    row = read_qc_tsv(out / "sub-01" / "figures" / "sub-01_qc.tsv")[0]
    assert "phase_units_doubtful" in row["qc_flags"].split(",")


# ------------------------------------------------------------------ real 7 T data

_CROP = Path(__file__).resolve().parents[1] / ".." / "shared" / "realdata" / \
    "mriresearchtools-7t-crop"


@pytest.mark.slow
@pytest.mark.skipif(not (_CROP / "Phase.nii.gz").is_file(),
                    reason=f"real 7 T crop not found at {_CROP} (the shared realdata folder "
                           "is not part of the repository)")
def test_real_7t_crop_gives_a_real_map_and_the_old_reading_is_flagged(tmp_path):
    """The 7 T in-vivo crop (float phase in arbitrary units, no sidecar Units), through
    the whole pipeline: automatic scaling gives an in-vivo spread, flagged only for the
    guessed units, the cut field of view and its veins too thin for an OEF; reading the
    phase as radians (the old rule) gives a flat map that is flagged ``chi_flat``."""
    import nibabel as nib

    from qsmbids.cli.main import main

    anat = tmp_path / "bids" / "sub-7t" / "anat"
    anat.mkdir(parents=True)
    new_dataset(tmp_path / "bids")
    for part, name in (("mag", "Mag"), ("phase", "Phase")):
        img = nib.load(_CROP / f"{name}.nii.gz")
        data = np.asarray(img.dataobj, dtype=np.float32)
        for echo, te in enumerate((0.004, 0.008, 0.012), start=1):
            stem = anat / f"sub-7t_echo-{echo}_part-{part}_MEGRE"
            nib.save(nib.Nifti1Image(data[..., echo - 1], img.affine, img.header),
                     f"{stem}.nii.gz")
            Path(f"{stem}.json").write_text(json.dumps(
                {"EchoTime": te, "MagneticFieldStrength": 7.0}))
    flags = {}
    for name, extra in (("auto", []), ("rad", ["--phase-units", "rad"])):
        out = tmp_path / name
        assert main([str(tmp_path / "bids"), str(out), "participant", "--atlas", "none",
                     "--nprocs", "1", "-w", str(tmp_path / f"w-{name}"), "--no-progress",
                     *extra]) == 0
        row = read_qc_tsv(out / "sub-7t" / "figures" / "sub-7t_qc.tsv")[0]
        flags[name] = (set(row["qc_flags"].split(",")), float(row["chi_iqr"]))
    # venous_oef: the crop's veins are all under the 2 mm the OEF is measured on
    assert flags["auto"][0] == {"mask_edge", "phase_units_guessed", "venous_oef"}
    assert 0.01 < flags["auto"][1] < 0.08  # in-vivo spread (measured 0.022 ppm)
    assert "chi_flat" in flags["rad"][0] and flags["rad"][1] < 0.001


# ------------------------------------------------ checks fed by the workflow's nodes


@pytest.fixture(scope="module")
def tripped_runs(tmp_path_factory):
    """Seven phantom heads at 3 mm through the pipeline (phantom atlas, ROMEO): a clean
    one; one at SNR 1.5 (the phase no longer follows the echo times: echo-fit
    residual); one whose field winds once around a line through the brain, as a failed
    coil combination leaves it (no unwrapping can remove it: a 2 pi step is left); one
    given as its ``--mask`` a box over the upper brain plus one over the front of the
    lower head, apart (the template's brain covers little of it, the mask is box-like
    and in two parts, the dentate lies outside it); one whose phase sign is flipped
    (the converter's handedness); two whose sidecars give the wrong field strength,
    0.3 T and 30 T for a 3 T scan (susceptibility ten times too strong or too weak)."""
    import contextlib
    import io

    import nibabel as nib

    from qsmbids.cli.main import main
    from qsmbids.sim.bids_writer import SimulationSettings, simulate_dataset
    from qsmbids.sim.template import write_phantom_atlas

    root = tmp_path_factory.mktemp("tripped")
    atlas = write_phantom_atlas(root / "atlas", 3.0)
    bids = root / "bids"
    simulate_dataset(bids, SimulationSettings(n_subjects=7, voxel_size_mm=3.0,
                                              echo_times_s=(0.004, 0.010, 0.016),
                                              groundtruth=False))
    rng = np.random.default_rng(0)

    def rewrite(subject: str, change) -> None:
        """Apply ``change(complex signal (x, y, z, echo), echo times)`` to a run."""
        anat = bids / subject / "anat"
        mags = sorted(anat.glob("*_part-mag_MEGRE.nii.gz"))
        phases = sorted(anat.glob("*_part-phase_MEGRE.nii.gz"))
        images = [nib.load(p) for p in mags + phases]
        n = len(mags)
        signal = np.stack([np.asarray(images[k].dataobj, np.float32)
                           * np.exp(1j * np.asarray(images[n + k].dataobj, np.float32))
                           for k in range(n)], axis=-1)
        signal = change(signal)
        for k in range(n):
            for image, path, data in ((images[k], mags[k], np.abs(signal[..., k])),
                                      (images[n + k], phases[k], np.angle(signal[..., k]))):
                nib.save(nib.Nifti1Image(data.astype(np.float32), image.affine,
                                         image.header), path)

    def noisy(signal):
        sigma = np.percentile(np.abs(signal[..., 0]), 90) / 1.5  # the head's, not the air's
        noise = rng.normal(0, sigma, signal.shape) + 1j * rng.normal(0, sigma, signal.shape)
        return signal + noise

    def vortex(signal):
        nx, ny = signal.shape[:2]
        x, y = np.meshgrid(np.arange(nx) - nx / 2 + 0.5, np.arange(ny) - ny / 2 + 0.5,
                           indexing="ij")
        echo = np.arange(1, signal.shape[3] + 1)
        return signal * np.exp(1j * np.arctan2(y, x)[..., None, None] * echo)

    def field_strength(subject: str, tesla: float) -> None:
        for sidecar in (bids / subject / "anat").glob("*_MEGRE.json"):
            meta = json.loads(sidecar.read_text())
            sidecar.write_text(json.dumps({**meta, "MagneticFieldStrength": tesla}))

    rewrite("sub-02", noisy)
    rewrite("sub-03", vortex)
    rewrite("sub-05", np.conj)
    field_strength("sub-06", 0.3)
    field_strength("sub-07", 30.0)
    first = nib.load(sorted((bids / "sub-04" / "anat").glob("*_MEGRE.nii.gz"))[0])
    box = np.zeros(first.shape[:3], np.uint8)
    nz = box.shape[2]
    ny = box.shape[1]
    box[2:-2, 2:-2, nz // 2:-2] = 1  # the upper half: the cerebellum is left out
    # and the front of the lower half, apart from it (the reliability trimming of the
    # field removes pure air from a mask, so this part holds tissue)
    front = slice(ny // 2, -2) if nib.aff2axcodes(first.affine)[1] == "A" else slice(2, ny // 2)
    box[2:-2, front, 2:nz // 2 - 2] = 1
    nib.save(nib.Nifti1Image(box, first.affine), root / "box_mask.nii.gz")
    common = ["--atlas-dir", str(atlas.root), "--preset", "fast", "--unwrapping", "romeo",
              "--nprocs", "2", "-w", str(root / "work"), "--no-progress"]
    with contextlib.redirect_stderr(io.StringIO()):
        main([str(bids), str(root / "out"), "participant", "--participant-label", "01",
              "02", "03", "05", "06", "07", *common])
        main([str(bids), str(root / "out"), "participant", "--participant-label", "04",
              "--mask", str(root / "box_mask.nii.gz"), *common])
    main([str(bids), str(root / "out"), "group"])
    return {row["run_id"]: row for row in read_qc_tsv(root / "out" / "group_qc.tsv")}


def test_checks_fed_by_the_nodes_fire_on_runs_built_to_trip_them(tripped_runs):
    runs = {name: tripped_runs[f"sub-0{k}"]
            for k, name in enumerate(("clean", "noisy", "vortex", "boxed"), start=1)}
    print({k: {c: r[c] for c in ("echo_fit_residual_median", "unwrap_residual_wraps",
                                 "unwrap_residual_wrap_fraction", "template_dice",
                                 "template_nmi", "warnings")}
           for k, r in runs.items()})
    for row in runs.values():  # the values reach group_qc.tsv on every run
        for column in ("echo_fit_residual_median", "unwrap_residual_wraps", "template_dice"):
            assert row[column] not in ("", "n/a"), column
    flags = {name: set(row["qc_flags"].split(",")) for name, row in runs.items()}
    checks = {"echo_fit", "unwrapping", "registration"}
    assert not checks & flags["clean"]
    assert "echo_fit" in flags["noisy"]
    assert "unwrapping" in flags["vortex"]
    assert "registration" in flags["boxed"]


def _flags(row: dict[str, str]) -> set[str]:
    """Every warning code of a run (the critical ones are also in ``qc_flags``)."""
    return set(row["warnings"].split(",")) - {""}


def test_a_clean_run_raises_no_flag(tripped_runs):
    assert _flags(tripped_runs["sub-01"]) == set(), tripped_runs["sub-01"]["warnings"]


def test_a_box_mask_in_two_parts_is_flagged_box_like_and_missing_regions(tripped_runs):
    """The box-like mask, its two parts and the regions outside it are flagged: the
    field's reliability trimming keeps every part of a given mask (it used to keep the
    largest only, dropping the smaller block without a word), and the box fill is that
    of the largest part."""
    row = tripped_runs["sub-04"]
    print({c: row[c] for c in ("mask_components", "mask_largest_fraction", "mask_box_fill",
                               "regions_missing", "mask_volume_ml")})
    assert {"mask_box", "regions_missing"} <= _flags(row)
    assert "Dentate_L" in row["regions_missing"] and "Dentate_R" in row["regions_missing"]
    assert row["mask_components"] == "2" and "mask_fragmented" in _flags(row)
    assert float(row["mask_box_fill"]) > 0.95


def test_a_flipped_phase_sign_inverts_the_nuclei_and_the_tails(tripped_runs):
    row = tripped_runs["sub-05"]
    print({c: row[c] for c in ("iron_nuclei_minus_reference_ppm", "chi_tail_ratio")})
    assert {"nuclei_inverted", "phase_sign_suspect"} <= _flags(row)
    assert float(row["iron_nuclei_minus_reference_ppm"]) < -0.03


def test_a_wrong_field_strength_gives_extreme_or_faint_susceptibility(tripped_runs):
    strong, faint = tripped_runs["sub-06"], tripped_runs["sub-07"]  # 0.3 T and 30 T
    print({c: (strong[c], faint[c]) for c in ("chi_p01", "chi_p99", "nuclei_contrast_ppm",
                                               "fraction_chi_outside_range")})
    assert "chi_extreme" in _flags(strong) and "chi_extreme" not in _flags(faint)
    assert "nuclei_contrast" in _flags(faint) and "nuclei_contrast" not in _flags(strong)
    assert float(faint["nuclei_contrast_ppm"]) < 0.03 < float(strong["nuclei_contrast_ppm"])
