"""Each ``init_*_wf`` sub-workflow run alone on a small case (issue 17): the field, the
QSM and the two atlas workflows, fed through their ``inputnode`` and read from their
``outputnode``, give what the recon and registration functions give when called
directly (the interfaces only move data) or what the truth says."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from gre_dataset import new_dataset, write_run

from qsmbids.bids.discovery import discover_runs
from qsmbids.workflows.common import memory_estimates
from qsmbids.workflows.settings import Settings

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _settings(tmp_path: Path, **chosen) -> Settings:
    return Settings.from_preset("fast", bids_dir=tmp_path, output_dir=tmp_path / "out",
                                work_dir=tmp_path / "work", nprocs=1, **chosen)


def _outputs(wf, base_dir: Path) -> dict:
    """Run ``wf`` alone and return what reaches its ``outputnode`` (nipype drops the
    identity nodes from the executed graph, so each field is read from the node that
    feeds it, or from ``inputnode`` for a field passed straight through)."""
    wf.base_dir = str(base_dir)
    executed = {node.name: node for node in wf.run().nodes()}
    out = {}
    for source, target, data in wf._graph.edges(data=True):
        if target.name != "outputnode":
            continue
        for source_field, field in data["connect"]:
            if source.name == "inputnode":
                out[field] = getattr(wf.inputs.inputnode, source_field)
            else:
                out[field] = getattr(executed[source.name].result.outputs, source_field)
    return out


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("subwf")
    bids = new_dataset(root / "bids")
    truth = write_run(bids, "sub-01/anat/sub-01", seed=1)
    mask = root / "brain.nii.gz"
    nib.save(nib.Nifti1Image(truth["brain"].astype(np.uint8), truth["affine"]), mask)
    run = discover_runs(bids).runs[0]
    return root, run, truth, mask


def test_field_wf_alone_gives_the_recon_field(small_run, tmp_path):
    from qsmbids.recon.field_estimation import FieldEstimationSettings, estimate_field
    from qsmbids.recon.unwrap import UnwrapSettings
    from qsmbids.workflows.field import init_field_wf

    _, run, truth, mask = small_run
    settings = _settings(tmp_path, unwrapping="romeo")
    mem = memory_estimates((32, 32, 28), run.n_echoes)
    out = _outputs(init_field_wf(settings, run, mem, user_mask=mask), tmp_path)
    magnitude = np.stack([np.asarray(nib.load(p).dataobj, np.float32)
                          for p in run.magnitude], -1)
    phase = np.stack([np.asarray(nib.load(p).dataobj, np.float32) for p in run.phase], -1)
    direct = estimate_field(magnitude, phase, run.echo_times, 3.0, truth["brain"], (3.0,) * 3,
                            FieldEstimationSettings(unwrap=UnwrapSettings("region-growing")))
    np.testing.assert_allclose(nib.load(out["field"]).get_fdata(), direct.field.field_ppm,
                               atol=1e-6)
    assert np.array_equal(np.asarray(nib.load(out["brain_mask"]).dataobj) > 0, truth["brain"])
    assert nib.load(out["r2star"]).shape == (32, 32, 28)
    assert all(Path(out[k]).is_file() for k in ("prov_load", "prov_mask", "prov_field",
                                                "prov_relax", "field_noise", "field_mask"))


def test_qsm_wf_alone_gives_the_recon_map(small_run, tmp_path):
    from qsmbids.recon.methods import background_method, inversion_method
    from qsmbids.workflows.qsm import init_qsm_wf

    root, _, truth, mask = small_run
    rng = np.random.default_rng(0)
    field = np.where(truth["brain"], rng.normal(0, 0.01, truth["brain"].shape), 0.0)
    path = root / "field.nii.gz"
    nib.save(nib.Nifti1Image(field.astype(np.float32), truth["affine"]), path)
    settings = _settings(tmp_path)  # fast: V-SHARP, TKD, whole-brain reference
    wf = init_qsm_wf(settings, memory_estimates((32, 32, 28), 1), field_noise=False)
    wf.inputs.inputnode.field = str(path)
    wf.inputs.inputnode.mask = str(mask)
    out = _outputs(wf, tmp_path)
    b0 = (0.0, 0.0, 1.0)
    local = background_method("vsharp")(field.astype(np.float32), truth["brain"], (3.0,) * 3,
                                        b0, workers=1)
    np.testing.assert_allclose(nib.load(out["local_field"]).get_fdata(), local.local_field,
                               atol=1e-6)
    chi = inversion_method("tkd")(local.local_field, local.mask, (3.0,) * 3, b0, workers=1)
    inside = local.mask
    expected = chi.chi - chi.chi[inside].mean()  # whole-brain reference: mean 0
    got = nib.load(out["chi"]).get_fdata()
    np.testing.assert_allclose(got[inside], expected[inside], atol=1e-5)
    assert out["reference"]["Region"] == "wholebrain"


def test_atlas_workflows_alone_place_the_phantom_atlas(tmp_path):
    """The anatomical registration, then the regional workflow (no refinement at 3 mm),
    on a phantom head from the simulator with known labels."""
    from qsmbids.sim.bids_writer import SimulationSettings, simulate_dataset
    from qsmbids.sim.template import write_phantom_atlas
    from qsmbids.workflows.atlas import init_atlas_registration_wf, init_regional_wf

    atlas = write_phantom_atlas(tmp_path / "atlas", 3.0)
    bids = tmp_path / "bids"
    simulate_dataset(bids, SimulationSettings(n_subjects=1, voxel_size_mm=3.0,
                                              echo_times_s=(0.004, 0.010, 0.016)))
    run = discover_runs(bids).runs[0]
    magnitude = tmp_path / "magnitude.nii.gz"
    first = nib.load(run.magnitude[0])
    data = np.stack([np.asarray(nib.load(p).dataobj, np.float32) for p in run.magnitude], -1)
    nib.save(nib.Nifti1Image(data, first.affine), magnitude)
    truth_dir = bids / "derivatives" / "groundtruth" / "sub-01" / "anat"
    truth_labels = next(truth_dir.glob("*_dseg.nii.gz"))
    truth_chi = next(truth_dir.glob("*_Chimap.nii.gz"))
    labels = np.asarray(nib.load(truth_labels).dataobj)
    brain = tmp_path / "brain.nii.gz"
    nib.save(nib.Nifti1Image((labels > 0).astype(np.uint8), first.affine), brain)
    settings = _settings(tmp_path, omp_nthreads=2)
    mem = memory_estimates(first.shape[:3], 3)
    registration = init_atlas_registration_wf(settings, atlas.root, mem)
    registration.inputs.inputnode.magnitude = str(magnitude)
    registration.inputs.inputnode.mask = str(brain)
    anatomical = _outputs(registration, tmp_path / "reg")
    from qsmbids.registration.core import TransformChain, warp_labels_to_subject
    from qsmbids.validation.warps import region_dice

    chain = TransformChain(tuple(Path(f) for f in anatomical["xfm_files"]),
                           (False,) * len(anatomical["xfm_files"]))
    placed = np.asarray(nib.load(anatomical["dseg"]).dataobj)
    # the node's labels are the atlas's through the chain it reports (it only moves data)
    assert np.array_equal(placed, np.asarray(
        warp_labels_to_subject(atlas.labels, nib.load(brain), chain, n_threads=2).dataobj))
    dice = region_dice(labels, placed, dict(atlas.regions))
    # placed, not failed (a failed registration gives ~0 for these large nuclei)
    assert min(dice[r] for r in ("Putamen", "Thalamus", "Caudate")) > 0.5, dice
    regional = init_regional_wf(settings, atlas.root, mem)
    for field in ("dseg", "dseg_tsv", "xfm_files", "inverse_xfm_files", "inverse_invert",
                  "anatomy", "metric"):
        setattr(regional.inputs.inputnode, field, anatomical[field])
    regional.inputs.inputnode.chi = str(truth_chi)
    regional.inputs.inputnode.mask = str(brain)
    out = _outputs(regional, tmp_path / "regional")
    assert out["dseg"] == anatomical["dseg"]  # not refined: the anatomical labels
    table = Path(out["regions"]).read_text().splitlines()
    assert table[0].split("\t")[0] == "region" and len(table) > 10
    assert nib.load(out["chi_template"]).shape == nib.load(atlas.template).shape
