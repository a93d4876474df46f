"""SWI, slab projections, the vein mask, venous susceptibility and OEF against truth.

The truths are analytic (OEF constants, a field's scale, brute-force projections) or
exact partial volumes: tubes of known diameter are rasterised by supersampling each
voxel, so a voxel's susceptibility is its blood fraction times the blood's value.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.ndimage as ndi
from vein_helpers import BLOOD_PPM, TISSUE_PPM, tubes

from qsmbids.recon import swi, veins


def test_oef_constants_and_round_trip():
    assert veins.DELTA_CHI_DO_PPM == pytest.approx(4 * np.pi * 0.27, abs=0.005)
    assert BLOOD_PPM == pytest.approx(0.42 * 3.39 * 0.35)
    assert veins.oef_from_venous_chi(BLOOD_PPM, 0.42) == pytest.approx(0.35)
    assert veins.oef_from_venous_chi(0.3, 0.40) == pytest.approx(0.3 / (3.39 * 0.40))
    with pytest.raises(ValueError, match="hematocrit"):
        veins.oef_from_venous_chi(0.3, 1.4)
    with pytest.raises(ValueError, match="oef"):
        veins.venous_chi_from_oef(-0.1)


@pytest.fixture(scope="module")
def vein_phantom():
    """A 64^3 1 mm volume: white-matter-like background with noise, veins of 1.5, 2,
    3 and 4 mm along z and along x, a bright nucleus (excluded, as the atlas's
    nuclei are) and a bright sphere (a microbleed: round, not a vein)."""
    rng = np.random.default_rng(0)
    shape = (64, 64, 64)
    along = [(2, (14.3, 14.2), 1.5), (2, (14.3, 30.2), 2.0), (2, (30.3, 14.2), 3.0),
             (2, (30.3, 30.2), 4.0)]
    across = [(0, (48.3, 16.2), 1.5), (0, (48.3, 26.2), 2.0), (0, (48.3, 36.2), 3.0),
              (0, (48.3, 47.2), 4.0)]
    fractions = [tubes(shape, [t]) for t in along + across]
    blood = np.max(fractions, axis=0)
    chi = TISSUE_PPM + blood * (BLOOD_PPM - TISSUE_PPM)
    grid = np.indices(shape)
    nucleus = ((grid[0] - 45) / 6.0) ** 2 + ((grid[1] - 45) / 4.0) ** 2 \
        + ((grid[2] - 20) / 4.0) ** 2 <= 1
    sphere = ((grid[0] - 46) ** 2 + (grid[1] - 20) ** 2 + (grid[2] - 20) ** 2) <= 2.5**2
    chi[nucleus] = 0.18
    chi[sphere] = 0.6
    chi += rng.normal(0, 0.005, shape).astype(np.float32)
    brain = np.zeros(shape, bool)
    brain[2:-2, 2:-2, 2:-2] = True
    diameters = [t[2] for t in along + across]
    return chi.astype(np.float32), brain, nucleus, sphere, fractions, diameters


def test_vein_mask_finds_the_veins_and_not_the_nucleus_or_a_microbleed(vein_phantom):
    chi, brain, nucleus, sphere, fractions, diameters = vein_phantom
    found = veins.vein_mask(chi, brain, (1, 1, 1), exclude=nucleus, edge_margin_mm=1.0)
    for fraction, diameter in zip(fractions, diameters, strict=True):
        truth = fraction >= 0.5
        near = np.zeros_like(truth)
        near[tuple(slice(max(s.start - 3, 0), s.stop + 3) for s in
                   __import__("scipy.ndimage").ndimage.find_objects(
                       (fraction > 0).astype(np.uint8))[0])] = True
        dice = 2 * (found & near & truth).sum() / ((found & near).sum() + truth.sum())
        assert dice >= 0.7, f"{diameter} mm vein: Dice {dice:.2f}"
    assert not (found & nucleus).any()
    assert (found & sphere).sum() <= 0.2 * sphere.sum()


def test_the_vesselness_computed_first_gives_the_same_vein_mask(vein_phantom):
    """The vein workflow computes the vesselness before the atlas gives the nuclei; the
    mask made from it is the one made in one go."""
    chi, brain, nucleus, _, _, _ = vein_phantom
    early = veins.candidate_vesselness(chi, brain, (1, 1, 1), edge_margin_mm=1.0)
    direct = veins.vein_mask(chi, brain, (1, 1, 1), exclude=nucleus, edge_margin_mm=1.0)
    later = veins.vein_mask(chi, brain, (1, 1, 1), exclude=nucleus, edge_margin_mm=1.0,
                            vesselness_map=early)
    assert direct.sum() > 100
    assert np.array_equal(direct, later)
    # the vein node computes the brain's depth once for the mask and the measure
    from qsmbids.recon.masking import distance_to_outside

    depth = distance_to_outside(brain, (1, 1, 1))
    assert np.array_equal(direct, veins.vein_mask(chi, brain, (1, 1, 1), exclude=nucleus,
                                                  edge_margin_mm=1.0, depth_mm=depth))
    # ... and the images node filters boxes and scales on several threads, as float32
    threaded = veins.candidate_vesselness(chi, brain, (1, 1, 1), edge_margin_mm=1.0,
                                          depth_mm=depth.astype(np.float32), workers=3)
    assert np.array_equal(early, threaded)


def test_venous_susceptibility_and_oef_of_the_large_veins(vein_phantom):
    chi, brain, nucleus, _, _, _ = vein_phantom
    found = veins.vein_mask(chi, brain, (1, 1, 1), exclude=nucleus, edge_margin_mm=1.0)
    measure = veins.venous_measure(chi, found, (1, 1, 1), hematocrit=0.42,
                                   min_diameter_mm=3.0)
    assert measure.n_voxels >= 40
    # partial volumes lower only the rims; the centre lines carry the blood's value
    assert measure.chi_ppm == pytest.approx(BLOOD_PPM, abs=0.02)
    assert measure.oef == pytest.approx(0.35, abs=0.02)
    none = veins.venous_measure(chi, found, (1, 1, 1), min_diameter_mm=20.0)
    assert none.n_voxels == 0 and np.isnan(none.chi_ppm) and np.isnan(none.oef)


def test_phase_mask_is_bounded_monotonic_and_scale_free():
    field = np.linspace(-2.0, 2.0, 64, dtype=np.float32).reshape(4, 4, 4)
    mask = np.ones(field.shape, bool)
    mask[0] = False
    weights = swi.phase_mask(field, mask)
    assert weights.min() >= 0 and weights.max() <= 1
    assert np.all(weights[~mask] == 1)
    inside = np.argsort(field[mask])
    assert np.all(np.diff(weights[mask][inside]) <= 1e-7)   # darker as the field rises
    assert np.allclose(swi.phase_mask(7.5 * field, mask), weights, atol=1e-6)  # Hz or ppm
    assert np.allclose(swi.phase_mask(-np.abs(field), mask)[mask] >= 0.88, True)


def test_swi_darkens_a_paramagnetic_vein_along_b0():
    """A vein along B0 shifts the field inside it by chi/3 (Lorentz-corrected
    infinite cylinder) and not outside: the SWI there is darker than the tissue, and
    the SNR-weighted magnitude is the root sum of squares over echoes."""
    shape = (24, 24, 24)
    inside = tubes(shape, [(2, (12.0, 12.0), 4.0)]) >= 0.5
    field = np.where(inside, BLOOD_PPM / 3, 0.0).astype(np.float32)
    field += np.random.default_rng(1).normal(0, 0.01, shape).astype(np.float32)
    magnitude = np.stack([np.full(shape, m, np.float32) for m in (1.0, 0.8, 0.6)], axis=-1)
    image = swi.susceptibility_weighted_image(magnitude, field, np.ones(shape, bool))
    assert np.allclose(swi.combine_echo_magnitudes(magnitude), np.sqrt(2.0))
    assert image[inside].mean() < 0.5 * image[~inside].mean()


def test_slab_projections_match_a_brute_force_window():
    rng = np.random.default_rng(2)
    volume = rng.normal(size=(6, 7, 12)).astype(np.float32)
    mask = rng.random(volume.shape) > 0.3
    for kind, pick in (("min", np.min), ("max", np.max)):
        out = swi.slab_projection(volume, mask, (1.0, 1.0, 2.0), kind, axis=2, slab_mm=6.0)
        for z in range(volume.shape[2]):          # 6 mm at 2 mm: 3 slices, centred
            window = slice(max(z - 1, 0), z + 2)
            values = np.where(mask[:, :, window], volume[:, :, window], np.nan)
            has = mask[:, :, window].any(axis=2)
            expected = np.where(has, pick(np.where(np.isnan(values), np.inf if kind == "min"
                                                   else -np.inf, values), axis=2), 0.0)
            np.testing.assert_allclose(out[:, :, z], expected, rtol=1e-6)


def test_the_projection_axis_follows_the_head_not_the_array():
    axial = np.diag([1.0, 1.0, 1.0, 1.0])
    sagittal = np.array([[0, 0, 1, 0], [0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1]], float)
    tilt = np.deg2rad(25)
    oblique = np.eye(4)
    oblique[1:3, 1:3] = [[np.cos(tilt), -np.sin(tilt)], [np.sin(tilt), np.cos(tilt)]]
    assert swi.superior_axis(axial) == 2
    assert swi.superior_axis(sagittal) == 0
    assert swi.superior_axis(oblique @ np.diag([0.9, 0.9, 2.0, 1.0])) == 2


def test_probe_veins_of_the_simulator_have_their_diameter_and_blood():
    from qsmbids.sim.phantom import phantom_grid
    from qsmbids.sim.veins import (
        PROBE_VEIN_DIAMETERS_MM,
        VenousBlood,
        probe_vein_labels,
        probe_veins,
    )

    assert VenousBlood(0.35, 0.42).chi_ppm == pytest.approx(BLOOD_PPM)
    probes = probe_veins()
    assert sorted({p.diameter_mm for p in probes}) == list(PROBE_VEIN_DIAMETERS_MM)
    assert {p.orientation for p in probes} == {"along", "across"}
    shape, affine = phantom_grid(1.0)
    labels = probe_vein_labels(shape, affine, probes)
    for k, probe in enumerate(probes, start=1):
        if probe.diameter_mm < 3:
            continue
        length = 28.0
        per_mm = (labels == k).sum() / length      # voxels per 1 mm slice
        area = np.pi * probe.diameter_mm**2 / 4
        assert per_mm == pytest.approx(area, rel=0.2), probe.name


def test_probe_veins_move_with_their_shift_and_the_vein_head_records_it():
    """A shift puts the probe veins elsewhere against the grid (their truth with them), and
    the vein head's case carries it, so a moved head is simulated apart."""
    from qsmbids.sim.phantom import phantom_grid
    from qsmbids.sim.veins import probe_vein_labels, probe_veins
    from qsmbids.validation.vein_head import vein_head_case

    shift = (0.3, 0.5, 0.3)
    for moved, still in zip(probe_veins(shift), probe_veins(), strict=True):
        assert moved.name == still.name
        np.testing.assert_allclose(np.subtract(moved.shape.points, still.shape.points),
                                   [shift, shift])
    shape, affine = phantom_grid(1.0)
    # moved onto a voxel edge in x, the 1.5 mm vein along B0 (28 mm long) fills two
    # voxels per slice at least half; unmoved, one
    filled = [int((probe_vein_labels(shape, affine, tuple(
        p for p in probes if p.name == "vein-1.5mm-along")) > 0).sum())
        for probes in (probe_veins(shift), probe_veins())]
    assert filled[0] >= 2 * 26 and filled[1] == 29
    assert vein_head_case(probe_shift_mm=shift).probe_shift_mm == shift
    assert vein_head_case() != vein_head_case(probe_shift_mm=shift)


def test_veins_of_known_blood_are_painted_by_their_partial_volume():
    """With a known blood, the phantom's veins hold blood in proportion to how much of
    each voxel they fill: the voxels at least half way from white matter to blood are
    those the sharp tube fills at least half (counted independently by
    probe_vein_labels), a cross-section holds the tube's area, and the centre of a
    1.5 mm vein holds nearly all the blood (with the soft edge used elsewhere it held
    70 %, and its neighbours 40 %)."""
    from qsmbids.sim.phantom import evaluate_head, grid_coordinates, phantom_grid
    from qsmbids.sim.tissues import LABELS
    from qsmbids.sim.veins import VenousBlood, probe_vein_labels, probe_veins

    shape, affine = phantom_grid(1.0)
    start = np.rint(np.linalg.inv(affine) @ [-46.0, -45.0, 20.0, 1.0])[:3].astype(int)
    stop = np.rint(np.linalg.inv(affine) @ [34.0, 26.0, 60.0, 1.0])[:3].astype(int)
    coords = grid_coordinates(shape, affine)[:, start[0]:stop[0], start[1]:stop[1],
                                             start[2]:stop[2]]
    blood = VenousBlood(0.35, 0.42)
    filled = evaluate_head(coords, edge_sigma_mm=0.7, spacing_mm=1.0, venous_blood=blood)
    sub = affine.copy()
    sub[:3, 3] = affine[:3, :3] @ start + affine[:3, 3]
    probes = probe_veins()
    labels = probe_vein_labels(filled.chi.shape, sub, probes)
    white_matter = float(np.median(filled.chi[filled.labels == LABELS["WhiteMatter"]]))
    fraction = np.clip((filled.chi - white_matter) / (blood.chi_ppm - white_matter), 0, 1)
    for k, probe in enumerate(probes, start=1):
        if probe.diameter_mm < 1.5:
            continue
        truth = labels == k
        half = (fraction >= 0.5) & ndi.binary_dilation(truth, iterations=2)
        dice = 2 * (half & truth).sum() / (half.sum() + truth.sum())
        assert dice >= 0.95, probe.name
        # a 10 mm stretch in the middle of the vein, clear of its rounded ends
        axis = 2 if probe.orientation == "along" else 0
        centre = np.argwhere(truth).mean(0).round().astype(int)
        stretch = [slice(max(c - 6, 0), c + 7) for c in centre]
        stretch[axis] = slice(centre[axis] - 5, centre[axis] + 5)
        area = fraction[tuple(stretch)].sum() / 10.0
        assert area == pytest.approx(np.pi * probe.diameter_mm**2 / 4, rel=0.02), probe.name
        if probe.diameter_mm == 1.5:
            assert fraction[truth].max() > 0.85


def test_the_vein_workflow_writes_its_images_and_the_oef_table(vein_phantom, tmp_path):
    """init_vein_wf alone on the 1 mm vein phantom: SWI, minIP, venogram and vein mask
    on the input grid, and a one-row table whose OEF is the phantom's (no atlas: the
    venous susceptibility is relative to the map's own zero, here water)."""
    import nibabel as nib

    from qsmbids.stats.tables import read_tsv
    from qsmbids.workflows.common import memory_estimates
    from qsmbids.workflows.settings import Settings
    from qsmbids.workflows.veins import init_vein_wf

    chi, brain, _, _, fractions, _ = vein_phantom
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    field = np.where(np.max(fractions, axis=0) > 0.5, BLOOD_PPM / 3, 0).astype(np.float32)
    magnitude = np.stack([np.full(chi.shape, m, np.float32) for m in (1.0, 0.7)], axis=-1)
    paths = {}
    for name, data in (("chi", chi), ("local_field", field), ("magnitude", magnitude),
                       ("mask", brain.astype(np.uint8))):
        paths[name] = str(tmp_path / f"{name}.nii.gz")
        nib.save(nib.Nifti1Image(data, affine), paths[name])
    settings = Settings(bids_dir=tmp_path, output_dir=tmp_path / "out", work_dir=tmp_path)
    wf = init_vein_wf(settings, memory_estimates(chi.shape, 2), hematocrit=0.42,
                      hematocrit_source="test")
    wf.base_dir = str(tmp_path / "work")
    for name, path in paths.items():
        setattr(wf.inputs.inputnode, name, path)
    result = wf.run()
    nodes = {n.name: n.result.outputs for n in result.nodes()}
    outputs, images = nodes["veins"], nodes["venous_images"]
    for kind in ("swi", "minip", "venogram"):
        assert nib.load(getattr(images, kind)).shape == chi.shape
    assert nib.load(outputs.veins).shape == chi.shape
    provenance = json.loads(Path(outputs.provenance).read_text())
    assert provenance["Parameters"]["SlabThickness_mm"] == settings.slab_mm
    row = read_tsv(outputs.veins_table)[0]
    assert row["reference"] == "map" and row["hematocrit_source"] == "test"
    assert row["n_voxels"] > 0 and row["oef"] == pytest.approx(0.35, abs=0.03)
    assert row["n_boxes"] == 0  # no inversion given to solve again: the map's own values
    venogram = np.asarray(nib.load(images.venogram).dataobj)
    assert venogram.max() == pytest.approx(chi[brain].max(), abs=1e-5)


@pytest.mark.parametrize(("venous", "flagged"), [
    ((0.35, 120), False), ((0.08, 380), True), ((0.75, 50), True),
    ((float("nan"), 0), True), (None, False)])
def test_an_implausible_or_missing_oef_is_a_qc_flag(venous, flagged):
    from qsmbids.report.qc_metrics import CRITICAL_CODES, compute_run_qc, qc_warnings

    mask = np.zeros((20, 20, 20), bool)
    mask[4:16, 4:16, 4:16] = True
    qc = compute_run_qc(mask, (1.0, 1.0, 1.0), venous=venous)
    codes = [w.code for w in qc_warnings(qc)]
    assert ("venous_oef" in codes) == flagged
    assert "venous_oef" in CRITICAL_CODES
    # at 2 mm the OEF is not measured (the table says why): never a QC finding
    coarse = compute_run_qc(mask, (2.0, 2.0, 2.0), venous=venous)
    assert "venous_oef" not in [w.code for w in qc_warnings(coarse)]


def test_hematocrit_from_participants_tsv(tmp_path):
    from qsmbids.bids.participants import read_hematocrits

    (tmp_path / "participants.tsv").write_text(
        "participant_id\tage\tHct\nsub-01\t30\t0.44\nsub-02\t40\t41\nsub-03\t50\tn/a\n"
        "sub-04\t60\t4.1\n")
    values, problems = read_hematocrits(tmp_path)
    assert values == {"01": pytest.approx(0.44), "02": pytest.approx(0.41)}
    assert len(problems) == 1 and "sub-04" in problems[0] and "4.1" in problems[0]
    assert read_hematocrits(tmp_path / "nowhere") == ({}, [])


def test_the_cohort_venous_table_joins_participants(tmp_path):
    from qsmbids.stats.tables import read_tsv, write_cohort_veins_table

    out = tmp_path / "out"
    for label, oef in (("01", 0.31), ("02", 0.38)):
        folder = out / f"sub-{label}" / "anat"
        folder.mkdir(parents=True)
        table = folder / f"sub-{label}_space-orig_desc-veins_stats.tsv"
        table.write_text("venous_chi\tn_voxels\thematocrit\toef\n"
                         f"{oef * 3.39 * 0.42:.4f}\t50\t0.42\t{oef}\n")
        table.with_suffix(".json").write_text(
            '{"Measure": "Veins", "oef": {"Description": "OEF"}}')
    participants = tmp_path / "participants.tsv"
    participants.write_text("participant_id\tage\thematocrit\nsub-01\t30\t45\nsub-02\t70\tn/a\n")
    path = write_cohort_veins_table(out, participants_tsv=participants)
    rows = read_tsv(path)
    assert [r["participant_id"] for r in rows] == ["sub-01", "sub-02"]
    assert [r["oef"] for r in rows] == [0.31, 0.38] and rows[1]["age"] == 70
    header = path.read_text().splitlines()[0].split("\t")
    assert header.count("hematocrit") == 1 and rows[0]["hematocrit"] == 0.42
    assert write_cohort_veins_table(tmp_path / "empty") is None


def test_the_cohort_report_shows_the_oef_and_names_the_runs_to_check(tmp_path):
    import base64

    from qsmbids.report.cohort_veins import venous_section

    table = tmp_path / "group_veins.tsv"
    table.write_text(
        "participant_id\trun\tage\tvenous_chi\tn_voxels\thematocrit\toef\tnote\n"
        "sub-01\t1\t25\t0.50\t80\t0.42\t0.35\tn/a\n"
        "sub-02\t1\t60\t0.52\t70\t0.42\t0.37\tn/a\n"
        "sub-03\t1\t70\t0.10\t12\t0.42\t0.07\tn/a\n"
        "sub-04\t1\t40\tn/a\t0\t0.42\tn/a\tvoxels of 2.0 mm: the veins' susceptibility is "
        "measured at 1.5 mm or finer\n")
    made = []

    def png(plot):
        path = plot(tmp_path / f"figure{len(made)}.png")
        made.append(path)
        return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()

    html = "\n".join(venous_section(table, png))
    assert "3 of 4 run(s) with a venous OEF" in html and "data:image/png" in html
    assert "sub-03_run-1: OEF 0.07 outside 0.15-0.6" in html
    assert "sub-04_run-1: no OEF (voxels of 2.0 mm" in html
    assert "sub-01_run-1" not in html.split("Runs to check")[1]
    assert venous_section(tmp_path / "absent.tsv", png) == []
