"""The vein targets of issue 19 on a head qsmbids did not simulate (slow: about 2 minutes
per position).

The vein head of :mod:`qsmbids.validation.vein_head` (veins of known oxygenation, probe
veins 0.5-4 mm along and across B0) is forward-simulated at 1 mm by qsm-forward and
reconstructed by the whole participant pipeline; its vein mask, venous susceptibility
and OEF are scored against the truth, with the issue's targets
(``benchmarks/bench_veins.py`` prints the whole table). The probe veins lie where the
benchmark puts them by default, and moved against the grid to where the 1.5 mm vein
along B0 half fills two voxels per slice (the map alone, without the converged cubes,
scored it Dice 0.25 there).
"""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from qsmbids.recon import veins
from qsmbids.recon.masking import distance_to_outside
from qsmbids.recon.vein_boxes import solve_from_provenance
from qsmbids.recon.vein_refinement import find_veins
from qsmbids.sim.phantom import phantom_grid
from qsmbids.sim.veins import probe_veins
from qsmbids.validation import vein_head as vh
from qsmbids.validation.peer_heads import simulate_peer_head
from qsmbids.validation.realdata import run_participant

pytestmark = pytest.mark.slow
pytest.importorskip("qsm_forward", reason="needs the 'validation' extra (qsm-forward)")


def _load(folder, pattern):
    return np.asarray(nib.load(str(next(folder.rglob(pattern)))).dataobj, np.float32)


@pytest.mark.parametrize("shift", [(0.0, 0.0, 0.0), (0.3, 0.5, 0.3)],
                         ids=["default position", "moved against the grid"])
def test_the_vein_head_meets_the_vein_targets(tmp_path, shift):
    head = simulate_peer_head(vh.vein_head_case(1.0, 80.0, shift), tmp_path)
    out = tmp_path / "out"
    run = run_participant(head.bids_dir, out, tmp_path / "work", ["--atlas", "none"])
    assert run.returncode == 0, run.log[-3000:]
    chi = _load(out, "*_desc-wholebrain_Chimap.nii.gz")
    mask = _load(out, "*_desc-brain_mask.nii.gz") > 0.5
    field = _load(out, "*_desc-localfield_fieldmap.nii.gz")
    _, _, seg = head.load_truth()
    voxel = (1.0, 1.0, 1.0)
    _, affine = phantom_grid(1.0)
    probes = probe_veins(shift)

    # the pipeline's own vein mask is scored on the probe veins
    written = _load(out, "*_desc-veins_mask.nii.gz") > 0
    scores = vh.score_probe_masks(written, affine, probes=probes)
    assert vh.dice_target_met(scores), [(s.name, round(s.dice, 2)) for s in scores]
    table = next(out.rglob("*_desc-veins_stats.tsv")).read_text().splitlines()
    row = dict(zip(table[0].split("\t"), table[1].split("\t"), strict=True))
    assert int(row["n_boxes"]) > 0 and float(row["mask_coverage"]) > 0.9

    # the venous measure as the vein node makes it, relative to the ventricles' CSF and
    # with the true nuclei kept out, as the atlas's would be
    csf_chi, _ = vh.csf_level(chi, mask, seg)
    sidecar = json.loads(next(out.rglob("*_desc-wholebrain_Chimap.json")).read_text())
    step = next(s for s in sidecar["ProcessingSteps"] if s["Step"] == "dipole inversion")
    depth = distance_to_outside(mask, voxel)
    solve = solve_from_provenance(step, field, mask, voxel, workers=2, depth_mm=depth)
    assert solve is not None  # the default inversion is TV: the cubes are solved
    found = find_veins(chi - np.float32(csf_chi), mask, voxel, solve=solve,
                       exclude=np.isin(seg, vh.NUCLEI_SEG), depth_mm=depth)
    for name, selection in vh.measured_selections(found.mask, affine,
                                                  probes=probes).items():
        measure = veins.venous_measure(found.chi_ppm, selection, voxel, depth_mm=depth,
                                       hematocrit=vh.BLOOD.hematocrit,
                                       converged=found.cubes)
        error, oef_error, met = vh.venous_errors(measure)
        assert measure.n_voxels > 0 and measure.coverage == 1.0, name
        assert met, f"{name}: {error:+.3f} ppm, OEF {oef_error:+.3f}"
