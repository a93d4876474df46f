"""QC metrics, figures and the participant/cohort HTML reports."""

from __future__ import annotations

import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import matplotlib.image as mpimg
import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from report_inputs import synthetic_run

from qsmbids.report import cohort_figures as cf
from qsmbids.report import figures as fg
from qsmbids.report.group import write_group_report
from qsmbids.report.participant import RunReportInputs, write_participant_report
from qsmbids.report.qc_metrics import (
    compute_run_qc,
    dice,
    mask_edge_contact,
    mask_volume_ml,
    normalized_mutual_information,
    qc_warnings,
    robust_z,
)
from qsmbids.report.qc_tables import (
    QC_COLUMNS,
    qc_row,
    read_qc_tsv,
    write_cohort_qc_tsv,
    write_qc_tsv,
)
from qsmbids.report.qc_thresholds import QCThresholds


class _Images(HTMLParser):
    def __init__(self):
        super().__init__()
        self.sources: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.sources.append(dict(attrs)["src"])


def image_sources(html_path: Path) -> list[str]:
    parser = _Images()
    parser.feed(html_path.read_text(encoding="utf-8"))
    return parser.sources


# ------------------------------------------------------------------------ QC metrics


def test_mask_volume_and_edge_contact():
    mask = np.zeros((20, 20, 20), bool)
    mask[5:15, 5:15, 5:15] = True
    assert mask_volume_ml(mask, (2.0, 2.0, 2.0)) == pytest.approx(8.0)
    assert mask_edge_contact(mask) == (0.0, "")
    mask[0:15, 5:15, 5:15] = True  # now reaches the x- face: 10x10 of 1500 voxels
    fraction, faces = mask_edge_contact(mask)
    assert faces == "x-"
    assert fraction == pytest.approx(100 / 1500)
    warnings = qc_warnings(compute_run_qc(mask, (1.0, 1.0, 1.0)))
    assert "mask_edge" in [w.code for w in warnings]


def test_dice_and_nmi_reference_values():
    a = np.zeros((10, 10, 10), bool)
    b = np.zeros_like(a)
    a[:5], b[:6] = True, True
    assert dice(a, b) == pytest.approx(2 * 500 / (500 + 600))
    rng = np.random.default_rng(1)
    image = rng.normal(size=(30, 30, 30))
    # an image determines itself (NMI 2) and is independent of fresh noise (NMI ~ 1)
    assert normalized_mutual_information(image, image) == pytest.approx(2.0)
    assert normalized_mutual_information(image, -3 * image + 1) == pytest.approx(2.0)
    assert normalized_mutual_information(image, rng.normal(size=image.shape)) < 1.05


def test_robust_z_median_mad():
    z = robust_z([1.0, 2.0, 3.0, 4.0, 100.0, np.nan])
    # median 3, MAD 1: z = 0.6745 (x - 3)
    np.testing.assert_allclose(z[:5], 0.6745 * (np.array([1, 2, 3, 4, 100]) - 3.0))
    assert np.isnan(z[5])
    assert np.all(robust_z([2.0, 2.0, 2.0]) == 0)


def _ball(shape=(30, 30, 30), radius=12.0):
    grid = np.indices(shape) - (np.array(shape) - 1)[:, None, None, None] / 2
    return (grid ** 2).sum(axis=0) <= radius ** 2


def test_extreme_values_and_pipeline_counts_warn():
    mask = _ball()
    chi = np.where(mask, 0.02 + np.random.default_rng(0).normal(0, 0.03, mask.shape), 0.0)
    chi = np.clip(chi, -0.25, 0.45)
    quiet = compute_run_qc(mask, (5.0, 5.0, 5.0), qsm=chi, unwrap_residual_wraps=10)
    assert quiet.fraction_chi_outside_range == 0.0
    assert qc_warnings(quiet) == []
    streaks = mask & (np.indices(mask.shape)[2] < 9)  # streaking-like extreme voxels
    chi[streaks] = 1.5
    loud = compute_run_qc(mask, (5.0, 5.0, 5.0), qsm=chi, unwrap_residual_wraps=4000,
                          echo_fit_residual=np.where(mask, 0.6, 0.0))
    assert loud.fraction_chi_outside_range == pytest.approx(streaks.sum() / mask.sum())
    codes = {w.code for w in qc_warnings(loud)}
    assert {"chi_extreme", "unwrapping", "echo_fit"} <= codes
    strict = QCThresholds(max_echo_fit_residual_rad=1.0)
    assert "echo_fit" not in {w.code for w in qc_warnings(loud, strict)}


def test_qc_tsv_columns_and_cohort_table(tmp_path):
    mask = np.ones((8, 8, 8), bool)
    qc = compute_run_qc(mask, (1.0, 1.0, 1.0))
    found = qc_warnings(qc)
    rows = [qc_row("sub-02", None, "sub-02_run-1", qc, found),
            qc_row("sub-01", "ses-1", "sub-01_ses-1_run-1", qc, found)]
    first = write_qc_tsv(rows[:1], tmp_path / "a_qc.tsv")
    second = write_qc_tsv(rows[1:], tmp_path / "b_qc.tsv")
    header = first.read_text().splitlines()[0].split("\t")
    assert tuple(header) == QC_COLUMNS
    cohort = read_qc_tsv(write_cohort_qc_tsv([first, second], tmp_path / "group_qc.tsv"))
    assert [r["participant_id"] for r in cohort] == ["sub-01", "sub-02"]
    assert cohort[1]["session_id"] == "n/a"
    assert cohort[0]["warnings"] == ",".join(w.code for w in found)
    # a mask filling the whole grid touches the edge: a partial field of view, so its
    # volume (0.5 ml) and box-like shape are not judged
    assert "mask_edge" in cohort[0]["warnings"].split(",")
    assert not {"mask_volume", "mask_box"} & set(cohort[0]["warnings"].split(","))


# ------------------------------------------------------------------------ figures


def test_mosaic_orientation_left_is_left(tmp_path):
    """A blob in the subject's left hemisphere (x < centre) appears left in the axial
    panels (neurological convention)."""
    volume = np.zeros((20, 24, 16), np.float32)
    volume[2:8, 8:16, 4:12] = 1.0
    path = fg.plot_mosaic(volume, (2.0, 2.0, 2.0), tmp_path / "m.png", title="t",
                          window=(0.0, 1.0), units="a.u.", views=("axial",), n_cols=1,
                          extent_mask=np.ones(volume.shape, bool))
    image = mpimg.imread(path)[..., :3].mean(axis=2)
    # the crop's largest side (y, 48 mm) is 170 px: the panel is 142 x 170 px at the
    # bottom left of the figure (6 px margin); the blob is 57 px tall
    panel = image[-176:-6, :142]
    bright_columns = np.flatnonzero((panel > 0.9).sum(axis=0) > 20)
    assert bright_columns.size and bright_columns.max() < 142 / 2
    assert bright_columns.min() >= 2 * 170 / 48 - 2  # starts at x = 2 voxels = 4 mm


# ------------------------------------------------------------------------ participant


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """Four participants across ages, and one whose template was moved 30 mm and
    rotated 20 degrees (a failed registration); participant and group reports."""
    root = tmp_path_factory.mktemp("cohort")
    inputs = root / "inputs"
    output = root / "out"
    ages = {"sub-01": 24.0, "sub-02": 45.0, "sub-03": 63.0, "sub-04": 82.0, "sub-05": 50.0}
    runs = {sub: synthetic_run(inputs, sub, age=age, seed=k,
                               shift_mm=30.0 if sub == "sub-05" else 0.0,
                               rotation_deg=20.0 if sub == "sub-05" else 0.0)
            for k, (sub, age) in enumerate(ages.items())}
    reports = {sub: write_participant_report(
        output, [runs[sub]], methods_text="QSM by TV-ADMM [1].\n[1] Bilgic et al. 2014")
        for sub in ("sub-04", "sub-05")}
    return {"output": output, "runs": runs, "reports": reports, "ages": ages, "root": root}


def test_participant_report_images_exist(cohort):
    report = cohort["reports"]["sub-04"]
    html = report.html
    assert html == cohort["output"] / "sub-04.html"
    sources = image_sources(html)
    assert len(sources) == len(report.figures) == 9
    for src in sources:
        assert not src.startswith(("/", "http", "file:"))
        target = html.parent / src
        assert target.is_file() and target.stat().st_size > 5000, src
        assert target.parent == cohort["output"] / "sub-04" / "figures"
    text = html.read_text()
    assert "-0.15 to 0.25 ppm" in text
    assert "Bilgic et al. 2014" in text
    assert "GlobusPallidus_L" in text  # the regional table


def test_failed_registration_is_flagged(cohort):
    good = cohort["reports"]["sub-04"].runs[0]
    bad = cohort["reports"]["sub-05"].runs[0]
    assert good.qc.template_dice > 0.95
    assert "registration" not in [w.code for w in good.warnings]
    assert bad.qc.template_dice < 0.8
    assert bad.qc.template_nmi < good.qc.template_nmi
    # without the template (the pipeline may not pass it), the QSM still tells: the
    # atlas's iron-rich nuclei are not brighter than the brain
    assert good.qc.nuclei_contrast_ppm > 0.08
    assert bad.qc.nuclei_contrast_ppm < 0.03
    assert [w.code for w in bad.warnings] == ["registration", "nuclei_contrast"]
    text = cohort["reports"]["sub-05"].html.read_text()
    assert "registration has probably failed" in text
    rows = read_qc_tsv(cohort["output"] / "sub-05" / "figures" / "sub-05_qc.tsv")
    assert rows[0]["warnings"] == "registration,nuclei_contrast"


def test_grid_mismatch_names_the_file(tmp_path, cohort):
    run = cohort["runs"]["sub-01"]
    odd = tmp_path / "odd_Chimap.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((10, 10, 10), np.float32), np.eye(4)), odd)
    with pytest.raises(ValueError, match="odd_Chimap"):
        write_participant_report(tmp_path / "out", [RunReportInputs(
            participant_id="sub-01", run_id=run.run_id, mask=run.mask, qsm=odd)])


# ------------------------------------------------------------------------ cohort


def _regional_table(cohort, outlier: str) -> pd.DataFrame:
    frames = []
    for sub, run in cohort["runs"].items():
        frame = pd.read_csv(run.regional_tsv, sep="\t", na_values="n/a")
        frame.insert(0, "participant_id", sub)
        frame.insert(1, "run", "1")
        if sub == outlier:
            frame.loc[frame["region"] == "Putamen_L", "mean"] = 0.6
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def test_group_report_lists_everyone_and_flags_outliers(cohort):
    output = cohort["output"]
    table = _regional_table(cohort, outlier="sub-02")
    participants = cohort["root"] / "participants.tsv"
    people = [f"{sub}\t{age:g}" for sub, age in cohort["ages"].items()] + ["sub-06\t30"]
    participants.write_text("participant_id\tage\n" + "\n".join(people) + "\n")
    report = write_group_report(output, regional_table=table, participants_tsv=participants)
    assert report.html == output / "group.html"
    text = report.html.read_text()
    assert report.participants == ("sub-01", "sub-02", "sub-03", "sub-04", "sub-05", "sub-06")
    for sub in report.participants:
        assert re.search(rf"<td class=\"text\">{sub}</td>", text), sub
    # sub-06 has no data; sub-04 and sub-05 have reports
    assert 'sub-04.html' in text and "(no report)" in text
    flagged = list(zip(report.outliers["run"], report.outliers["region"], strict=True))
    # the injected value is flagged, no other good run in that region; the failed
    # registration (its atlas labels miss the nuclei) stands out somewhere too
    assert {run for run, region in flagged if region == "Putamen_L"} - {"sub-05_run-1"} == {
        "sub-02_run-1"}
    assert "sub-05_run-1" in {run for run, _ in flagged}
    assert "sub-02_run-1: Putamen_L = 0.6000 ppm" in text
    sources = image_sources(report.html)
    # montage of the basal ganglia thumbnails (the two runs with reports), distributions,
    # against age; all embedded
    assert len(sources) == 3 and all(s.startswith("data:image/png;base64,") for s in sources)
    assert "Order: sub-05_run-1 · 50 y · QC!; sub-04_run-1 · 82 y." in text
    assert "sub-05_run-1" in text and "registration" in text  # the QC table
    qc_rows = read_qc_tsv(output / "group_qc.tsv")
    assert [r["participant_id"] for r in qc_rows] == ["sub-04", "sub-05"]


def test_oldest_has_brightest_basal_ganglia(cohort):
    """The simulated iron rises with age; the cohort figures' values follow it."""
    table = _regional_table(cohort, outlier="none")
    table = table[table["participant_id"] != "sub-05"]  # the failed registration
    for region in ("Putamen_L", "Putamen_R", "Caudate_L", "Caudate_R"):
        values = table[table["region"] == region].set_index("participant_id")["mean"]
        fit = cf.linear_fit(np.array([cohort["ages"][s] for s in values.index]),
                            values.to_numpy())
        assert values.idxmax() == "sub-04" and fit[0] > 0, region


# ------------------------------------------------------------------------ rendering

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _render_dom(html: Path, profile: Path) -> dict[str, str]:
    """Load ``html`` from its file:// URL in headless Chromium; return the <body>
    attributes the page's own image check sets after the load event."""
    result = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={profile}", "--virtual-time-budget=10000",
         "--dump-dom", html.as_uri()],
        capture_output=True, text=True, timeout=120, check=False)
    body = re.search(r"<body([^>]*)>", result.stdout)
    assert body, f"chromium gave no DOM (rc {result.returncode}): {result.stderr[-2000:]}"
    return dict(re.findall(r'([\w-]+)="([^"]*)"', body.group(1)))


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (scripts/dev.sh test "
                    "installs Debian's chromium with apt-get when run as root)")
def test_participant_report_renders_in_headless_chromium(cohort, tmp_path):
    report = cohort["reports"]["sub-05"]
    attrs = _render_dom(report.html, tmp_path / "profile")
    assert attrs.get("data-images-total") == str(len(report.figures))
    assert attrs.get("data-images-broken") == "0"
    # control: the same page away from its figures folder reports every image broken
    moved = tmp_path / "elsewhere" / report.html.name
    moved.parent.mkdir()
    shutil.copy(report.html, moved)
    attrs = _render_dom(moved, tmp_path / "profile")
    assert attrs.get("data-images-broken") == str(len(report.figures))


def test_group_report_finds_tables_in_output(cohort, tmp_path):
    """Called as the group level does: (OUTPUT_DIR, BIDS_DIR); tables are discovered."""
    output, bids = tmp_path / "out", tmp_path / "bids"
    bids.mkdir()
    (bids / "participants.tsv").write_text("participant_id\tage\n" + "".join(
        f"{sub}\t{age:g}\n" for sub, age in cohort["ages"].items()))
    for sub, run in cohort["runs"].items():
        anat = output / sub / "anat"
        anat.mkdir(parents=True)
        for table in (run.regional_tsv, run.regional_tsv.with_suffix(".json")):
            shutil.copy(table, anat / table.name)
    report = write_group_report(output, bids)
    assert report.participants == tuple(cohort["ages"])
    text = report.html.read_text()
    assert "5 participant(s); 5 run(s)" in text
    assert "No QC table was given" in text
    assert len(image_sources(report.html)) == 2  # distributions and against age


def test_run_inputs_from_pipeline_outputs(cohort, tmp_path):
    """The pipeline's output kinds map onto the report's inputs; units come from the
    sidecars."""
    run = cohort["runs"]["sub-01"]
    field = tmp_path / "sub-01_run-1_space-orig_desc-totalfield_fieldmap.nii.gz"
    shutil.copy(run.field, field)
    field.with_name(field.name.replace(".nii.gz", ".json")).write_text('{"Units": "Hz"}')
    outputs = {"magnitude": run.magnitude, "mask": run.mask, "totalfield": field,
               "localfield": run.local_field, "chi": run.qsm, "r2star": run.r2star,
               "dseg": run.dseg, "regions": run.regional_tsv, "xfm_affine": "ignored.mat"}
    inputs = RunReportInputs.from_outputs("sub-01", "sub-01_run-1", outputs,
                                          template=run.template, unwrap_residual_wraps=3)
    assert (inputs.field, inputs.field_units, inputs.local_field_units) == (field, "Hz", "ppm")
    assert (inputs.qsm, inputs.regional_tsv, inputs.template) == (run.qsm, run.regional_tsv,
                                                                   run.template)
    assert inputs.unwrap_residual_wraps == 3 and inputs.echo_fit_residual is None


def test_report_with_few_inputs_says_what_is_missing(cohort, tmp_path):
    run = cohort["runs"]["sub-02"]
    report = write_participant_report(tmp_path, [RunReportInputs(
        participant_id="sub-02", run_id=run.run_id, mask=run.mask, qsm=run.qsm,
        magnitude=run.magnitude, dseg=run.dseg)],
        warnings=["run sub-02_run-2 was skipped: missing EchoTime"])
    # without a warped template the atlas regions over the magnitude show the registration
    assert [p.name.split("_desc-")[1] for p in report.figures] == [
        "magmask_qc.png", "qsm_qc.png", "atlas_qc.png", "zoomBasalGanglia_qc.png",
        "zoomMidbrain_qc.png", "zoomDentate_qc.png"]
    assert all((tmp_path / src).is_file() for src in image_sources(report.html))
    text = report.html.read_text()
    assert ("Not available for this run: field map, local field, R2*, registered template, "
            "regional table") in text
    assert "missing EchoTime" in text and "No methods text was provided" in text
