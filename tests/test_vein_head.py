"""The vein targets of issue 19 on a head qsmbids did not simulate (slow: about 3 minutes).

The vein head of :mod:`qsmbids.validation.vein_head` (veins of known oxygenation, probe
veins 0.5-4 mm along and across B0) is forward-simulated at 1 mm by qsm-forward and
reconstructed by the whole participant pipeline; its vein mask, venous susceptibility
and OEF are scored against the truth, with the issue's targets (measured 2026-12-07:
Dice 0.80-1.00, venous susceptibility 0.004-0.008 ppm low; ``benchmarks/bench_veins.py``
prints the whole table). The probe veins lie where the benchmark puts them by default;
moved against the grid (``--probe-shift``) the 1.5 mm vein along B0 misses the Dice
target (0.25-0.67, README Known limits), so this test holds the default position only.
"""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from qsmbids.recon import veins
from qsmbids.recon.masking import distance_to_outside
from qsmbids.recon.vein_boxes import solve_from_provenance
from qsmbids.sim.phantom import phantom_grid
from qsmbids.validation import vein_head as vh
from qsmbids.validation.peer_heads import simulate_peer_head
from qsmbids.validation.realdata import run_participant

pytestmark = pytest.mark.slow
pytest.importorskip("qsm_forward", reason="needs the 'validation' extra (qsm-forward)")


def _load(folder, pattern):
    return np.asarray(nib.load(str(next(folder.rglob(pattern)))).dataobj, np.float32)


def test_the_vein_head_meets_the_vein_targets(tmp_path):
    head = simulate_peer_head(vh.vein_head_case(1.0, 80.0), tmp_path)
    out = tmp_path / "out"
    run = run_participant(head.bids_dir, out, tmp_path / "work", ["--atlas", "none"])
    assert run.returncode == 0, run.log[-3000:]
    chi = _load(out, "*_desc-wholebrain_Chimap.nii.gz")
    mask = _load(out, "*_desc-brain_mask.nii.gz") > 0.5
    field = _load(out, "*_desc-localfield_fieldmap.nii.gz")
    _, _, seg = head.load_truth()
    voxel = (1.0, 1.0, 1.0)
    _, affine = phantom_grid(1.0)

    # the pipeline's own vein mask is scored on the probe veins; the whole mask is
    # measured with the true nuclei kept out, as the atlas's would be
    written = _load(out, "*_desc-veins_mask.nii.gz") > 0
    scores = vh.score_probe_masks(written, affine)
    assert vh.dice_target_met(scores), [(s.name, round(s.dice, 2)) for s in scores]
    selections = vh.measured_selections(written, affine)
    selections["whole vein mask"] = veins.vein_mask(chi, mask, voxel,
                                                    exclude=np.isin(seg, vh.NUCLEI_SEG))

    csf_chi, _ = vh.csf_level(chi, mask, seg)
    sidecar = json.loads(next(out.rglob("*_desc-wholebrain_Chimap.json")).read_text())
    step = next(s for s in sidecar["ProcessingSteps"] if s["Step"] == "dipole inversion")
    depth = distance_to_outside(mask, voxel)
    solve = solve_from_provenance(step, field, mask, voxel, depth_mm=depth)
    assert solve is not None  # the default inversion is TV: the cubes are solved
    for name, selection in selections.items():
        measure = veins.venous_measure(chi - csf_chi, selection, voxel, depth_mm=depth,
                                       hematocrit=vh.BLOOD.hematocrit, solve=solve)
        error, oef_error, met = vh.venous_errors(measure)
        assert measure.n_voxels > 0 and measure.coverage == 1.0, name
        assert met, f"{name}: {error:+.3f} ppm, OEF {oef_error:+.3f}"
