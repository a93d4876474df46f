"""End to end on the simulator's realistic phantom cohort (slow: opt in with ``-m slow``).

Three subjects of different ages at 3 mm, oblique slices (10 degrees) and phase in
Siemens integer units; one run deliberately broken. The participant level must
finish the good runs, set the broken one aside, write valid derivatives and
regional tables; the group level must write the cohort table; the regional means
must follow the simulator's truth.

Tolerance: QSM is only defined up to a constant, and the whole-brain reference of
the estimate and of the truth differ by a near-constant offset (background-field
removal also removes the local field's lowest frequencies). So the test compares
the nuclei after removing the median error over all regions and runs. It allows
0.03 ppm for the large nuclei (caudate, putamen, globus pallidus, thalamus) and
0.05 ppm for the small ones (substantia nigra, red nucleus, dentate): at 3 mm with
the template registered to a warped subject (Dice about 0.8-0.9 for the large
nuclei, 0.5-0.7 for the small ones, which are 2-4 voxels thick), partial volume and
label misplacement add to the 0.015 ppm the inversion reaches from the true field
with true labels at 1 mm (issue 4). Measured on this cohort when written: large
nuclei within 0.027 ppm, and the small nuclei of one subject failed (registration
Dice 0.12 for the substantia nigra at 3 mm, with a single-echo template contrast
and MI). Since the phantom template has the target's echo-combined contrast and
the SyN stage uses CC (2026-12-01), the small nuclei pass too.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from qsmbids.sim.template import PHANTOM_SPACE

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

LARGE = ("Caudate", "Putamen", "GlobusPallidus", "Thalamus")
SMALL = ("SubstantiaNigra", "RedNucleus", "Dentate")
TOLERANCE_PPM = {"Caudate": 0.03, "Putamen": 0.03, "GlobusPallidus": 0.03, "Thalamus": 0.03,
                 "SubstantiaNigra": 0.05, "RedNucleus": 0.05, "Dentate": 0.05}


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    from qsmbids.cli.demo import compare_to_truth, write_phantom_atlas
    from qsmbids.cli.group import run_group
    from qsmbids.cli.run import run_participant
    from qsmbids.sim.bids_writer import BrokenRun, SimulationSettings, simulate_dataset
    from qsmbids.workflows.settings import Settings

    base = tmp_path_factory.mktemp("e2e")
    bids = base / "bids"
    simulate_dataset(bids, SimulationSettings(
        n_subjects=3, ages=(25.0, 50.0, 75.0), voxel_size_mm=3.0, oblique_deg=10.0,
        phase_units="siemens", echo_times_s=(0.004, 0.010, 0.016),
        broken=(BrokenRun("03", "missing-echo"),)))
    atlas = write_phantom_atlas(base / "atlas", 3.0)
    settings = Settings.from_preset("accurate", bids_dir=bids, output_dir=base / "out",
                                    work_dir=base / "work", atlas_dir=atlas, nprocs=2)
    code = run_participant(settings, None)
    group_code = run_group(settings, None)
    return settings, code, group_code, compare_to_truth(bids, settings.output_dir)


def test_good_runs_complete_and_broken_run_is_set_aside(demo_run):
    settings, code, group_code, _ = demo_run
    assert code == 1  # sub-03 is broken
    out = settings.output_dir
    for sub in ("01", "02"):
        assert list((out / f"sub-{sub}" / "anat").glob("*_desc-wholebrain_Chimap.nii.gz"))
        assert list((out / f"sub-{sub}" / "anat").glob("*_stats.tsv"))
        assert (out / f"sub-{sub}.html").is_file()
    assert not (out / "sub-03" / "anat").exists()
    assert group_code == 0
    long_table = (out / "group_Chimap_regions.tsv").read_text().splitlines()
    assert {line.split("\t")[0] for line in long_table[1:]} == {"sub-01", "sub-02"}


def test_outputs_index_as_derivatives(demo_run):
    from bids import BIDSLayout

    settings = demo_run[0]
    layout = BIDSLayout(str(settings.output_dir), validate=False, is_derivative=True)
    # per good run: the map and its venogram (a maximum-intensity projection of it)
    maps = layout.get(suffix="Chimap", space="orig", extension=".nii.gz")
    assert sorted(m.entities["desc"] for m in maps) == ["venogram"] * 2 + ["wholebrain"] * 2
    assert len(layout.get(suffix="Chimap", space=PHANTOM_SPACE, extension=".nii.gz")) == 2
    assert len(layout.get(suffix="dseg", extension=".nii.gz")) == 2
    chi = layout.get(suffix="Chimap", space="orig", desc="wholebrain", extension=".nii.gz")[0]
    side = layout.get_metadata(chi.path)
    steps = [s["Step"] for s in side["ProcessingSteps"]]
    assert steps[:1] == ["phase scaling"] and "siemens" in side["ProcessingSteps"][0][
        "Algorithm"]
    assert abs(json.loads(json.dumps(side["MagneticFieldStrength"])) - 3.0) < 1e-9
    # 3 mm voxels: the susceptibility refinement asked for is skipped, and both the dseg
    # sidecar and the report say why
    dseg = layout.get(suffix="dseg", extension=".nii.gz")[0]
    registration = next(s for s in layout.get_metadata(dseg.path)["ProcessingSteps"]
                        if s["Step"] == "registration")
    assert registration["Parameters"]["SusceptibilityRefinement"].startswith(
        "skipped: voxels of 3 x 3 x 3 mm")
    # what a rerun needs to repeat it: no random sampling, and the seed
    assert registration["Parameters"]["LinearMetric"] == "Mattes MI, every voxel"
    assert isinstance(registration["Parameters"]["RandomSeed"], int)
    report = (settings.output_dir / f"sub-{dseg.entities['subject']}.html").read_text()
    assert "Susceptibility refinement skipped: voxels of 3 x 3 x 3 mm" in report


def _deviations(rows, regions):
    errors = np.array([r["error"] for r in rows])
    offset = np.median(errors)
    return [(r["run"], r["region"], abs(r["error"] - offset)) for r in rows
            if r["region"] in regions]


def test_large_nuclei_follow_the_truth(demo_run):
    rows = demo_run[3]
    assert len(rows) == 2 * 7
    for run, region, deviation in _deviations(rows, LARGE):
        assert deviation <= TOLERANCE_PPM[region], (run, region, deviation)
    # the simulator's age trend survives: putamen iron rises from 25 to 50 years
    by = {(r["run"], r["region"]): r for r in rows}
    assert by[("sub-02", "Putamen")]["true"] > by[("sub-01", "Putamen")]["true"]
    assert by[("sub-02", "Putamen")]["estimated"] > by[("sub-01", "Putamen")]["estimated"]


def test_small_nuclei_follow_the_truth(demo_run):
    for run, region, deviation in _deviations(demo_run[3], SMALL):
        assert deviation <= TOLERANCE_PPM[region], (run, region, deviation)
