"""Settings, presets, plugin arguments and the workflow graph (no execution)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from gre_dataset import new_dataset, write_run

from qsmbids.bids.discovery import discover_runs
from qsmbids.cli.bids_app import settings_from_args
from qsmbids.cli.parser import parse_args
from qsmbids.cli.run import _plugin_args
from qsmbids.derivatives.naming import NameContext
from qsmbids.sim.template import write_phantom_atlas
from qsmbids.workflows.base import RunInputs, init_participant_wf, memory_estimates
from qsmbids.workflows.settings import PRESETS, Settings


def _settings(tmp_path, **kw) -> Settings:
    paths = {"bids_dir": tmp_path / "b", "output_dir": tmp_path / "o",
             "work_dir": tmp_path / "w"}
    paths.update(kw)
    return Settings.from_preset(paths.pop("preset", "accurate"), **paths)


def test_preset_fills_unset_methods_and_explicit_choice_wins(tmp_path):
    fast = _settings(tmp_path, preset="fast")
    assert (fast.unwrapping, fast.bg_removal, fast.inversion) == tuple(
        PRESETS["fast"][k] for k in ("unwrapping", "bg_removal", "inversion"))
    chosen = _settings(tmp_path, preset="fast", inversion="tv")
    assert chosen.inversion == "tv" and chosen.bg_removal == PRESETS["fast"]["bg_removal"]
    with pytest.raises(ValueError, match="inversion must be one of"):
        _settings(tmp_path, inversion="magic")


def test_digest_ignores_resources_but_not_methods(tmp_path):
    base = _settings(tmp_path, nprocs=2, mem_gb=4)
    assert base.digest() == _settings(tmp_path, nprocs=16, mem_gb=64, plugin="SLURM").digest()
    assert base.digest() != _settings(tmp_path, inversion="tkd").digest()
    assert base.digest() != _settings(tmp_path, field_strength=7.0).digest()


def test_digest_follows_the_atlas_and_mask_content_not_their_location(tmp_path):
    import shutil

    atlas = write_phantom_atlas(tmp_path / "atlas", 4.0)
    mask = tmp_path / "mask.nii.gz"
    mask.write_bytes(b"mask v1")
    first = _settings(tmp_path, atlas_dir=atlas.root, mask=mask).digest()
    moved_atlas = shutil.move(str(atlas.root), str(tmp_path / "elsewhere" / "atlas"))
    moved_mask = shutil.move(str(mask), str(tmp_path / "elsewhere" / "mask.nii.gz"))
    assert _settings(tmp_path, atlas_dir=Path(moved_atlas),
                     mask=Path(moved_mask)).digest() == first
    (Path(moved_atlas) / "atlas.json").write_text(
        (Path(moved_atlas) / "atlas.json").read_text().replace("}", ', "Edited": 1}', 1))
    assert _settings(tmp_path, atlas_dir=Path(moved_atlas),
                     mask=Path(moved_mask)).digest() != first
    before = _settings(tmp_path, mask=Path(moved_mask)).digest()
    Path(moved_mask).write_bytes(b"mask v2")
    assert _settings(tmp_path, mask=Path(moved_mask)).digest() != before


def test_incompatible_options_exit_64_before_anything_runs(tmp_path, capsys):
    from qsmbids.cli.bids_app import run_bids_app

    bids = new_dataset(tmp_path / "bids")
    write_run(bids, "sub-01/anat/sub-01", seed=1)
    out = tmp_path / "out"
    for extra, said in ((["--reference", "csf", "--atlas", "none"], "reference 'csf' needs"),
                        (["--field-map-units", "Hz"], "without a field map")):
        args = parse_args([str(bids), str(out), "participant", *extra])
        assert run_bids_app(args) == 64
        assert said in capsys.readouterr().err
    assert not out.exists()


def test_cli_arguments_become_settings(tmp_path):
    args = parse_args([str(tmp_path / "b"), str(tmp_path / "o"), "participant", "--preset",
                       "fast", "--bg-removal", "pdf", "--nprocs", "3", "--mem-gb", "5",
                       "--plugin", "SLURMGraph", "--plugin-args", '{"sbatch_args": "-p q"}',
                       "--field-strength", "7", "--atlas", "none", "--omp-nthreads", "2"])
    settings = settings_from_args(args)
    assert settings.preset == "fast" and settings.bg_removal == "pdf"
    assert settings.inversion == PRESETS["fast"]["inversion"]
    assert (settings.nprocs, settings.mem_gb, settings.omp_nthreads) == (3, 5.0, 2)
    assert settings.plugin_arguments == {"sbatch_args": "-p q"} and settings.graph_plugin
    assert settings.field_strength == 7.0
    assert settings.work_dir == (tmp_path / "qsmbids_work").absolute()
    assert settings.deterministic is False
    again = settings_from_args(parse_args([str(tmp_path / "b"), str(tmp_path / "o"),
                                           "participant", "--deterministic"]))
    assert again.deterministic is True
    assert settings.registration == PRESETS["fast"]["registration"]
    accurate = settings_from_args(parse_args([str(tmp_path / "b"), str(tmp_path / "o"),
                                              "participant", "--registration", "accurate"]))
    assert accurate.registration == "accurate"
    default = settings_from_args(parse_args([str(tmp_path / "b"), str(tmp_path / "o"),
                                             "participant"]))
    assert accurate.digest() != default.digest()  # another registration: other numbers
    assert again.digest() != settings_from_args(parse_args(
        [str(tmp_path / "b"), str(tmp_path / "o"), "participant"])).digest()


def test_relative_atlas_mask_and_field_map_paths_become_absolute(tmp_path, monkeypatch):
    # the nodes run in their own folders: 'qsmbids ... --atlas-dir atlas' once failed in
    # the registration node with 'atlas folder <work>/.../register/atlas does not exist'
    monkeypatch.chdir(tmp_path)
    settings = settings_from_args(parse_args(
        ["b", "o", "participant", "--atlas-dir", "atlas", "--mask", "masks",
         "--field-map", "maps/f.nii.gz"]))
    assert settings.atlas_dir == tmp_path / "atlas"
    assert Path(settings.mask) == tmp_path / "masks"
    assert Path(settings.field_map) == tmp_path / "maps/f.nii.gz"
    assert settings_from_args(parse_args(["b", "o", "participant"])).atlas_dir is None


def test_plugin_arguments(tmp_path):
    def callback(node, status):
        return None

    multiproc = _plugin_args(_settings(tmp_path, nprocs=3, mem_gb=5.5), callback)
    assert multiproc["n_procs"] == 3 and multiproc["memory_gb"] == 5.5
    assert multiproc["status_callback"] is callback
    slurm = _plugin_args(_settings(tmp_path, plugin="SLURMGraph",
                                   plugin_args=json.dumps({"dont_resubmit_completed_jobs":
                                                           True})), callback)
    assert slurm == {"dont_resubmit_completed_jobs": True}  # Graph plugins take no callback
    assert "status_callback" in _plugin_args(_settings(tmp_path, plugin="SGE"), callback)


def test_memory_estimates_grow_with_the_image():
    small = memory_estimates((64, 64, 48), 3)
    large = memory_estimates((224, 224, 160), 4)
    assert all(large[k] > small[k] for k in small if k not in ("sink",))
    assert large["inv"] < 6 and large["field"] < 6  # fits the 6 GiB target per node


def test_participant_graph_has_one_branch_per_run_with_resources(tmp_path):
    bids = new_dataset(tmp_path / "bids")
    write_run(bids, "sub-01/anat/sub-01_run-1", seed=1)
    write_run(bids, "sub-01/anat/sub-01_run-2", seed=2)
    settings = _settings(tmp_path, bids_dir=bids, omp_nthreads=2, nprocs=2)
    runs = discover_runs(bids).runs
    wf = init_participant_wf(settings, [RunInputs(r, None, None, NameContext())
                                        for r in runs])
    graph = wf._create_flat_graph()
    names = {n.fullname for n in graph.nodes()}
    for run in ("run_sub_01_run_1", "run_sub_01_run_2"):  # each run: its sub-workflows
        for step in ("field_wf.load", "field_wf.mask", "field_wf.field",
                     "field_wf.relaxometry", "qsm_wf.bg_removal", "qsm_wf.inversion",
                     "qsm_wf.reference", "sink"):
            assert f"qsmbids_wf.{run}.{step}" in names
    nodes = {n.fullname: n for n in graph.nodes()}
    assert nodes["qsmbids_wf.run_sub_01_run_1.qsm_wf.inversion"].n_procs == 2
    assert nodes["qsmbids_wf.run_sub_01_run_1.field_wf.field"].mem_gb > 0.1
    assert nodes["qsmbids_wf.run_sub_01_run_1.sink"].overwrite is True
    assert Path(wf.base_dir) == settings.work_dir


def test_registration_node_gets_determinism_and_threads(tmp_path):
    bids = new_dataset(tmp_path / "bids")
    write_run(bids, "sub-01/anat/sub-01", seed=1)
    atlas = write_phantom_atlas(tmp_path / "atlas", 4.0, contrast="magnitude")
    run = discover_runs(bids).runs[0]
    for deterministic in (False, True):
        settings = _settings(tmp_path, bids_dir=bids, omp_nthreads=2, nprocs=2,
                             deterministic=deterministic)
        wf = init_participant_wf(settings, [RunInputs(run, None, atlas.root, NameContext())])
        reg = next(n for n in wf._create_flat_graph().nodes() if n.name == "register")
        assert reg.inputs.deterministic is deterministic
        assert reg.inputs.preset == "fast"
    # the registration and the reconstruction chain run side by side: when both do not
    # fit in --nprocs at --omp-nthreads, each gets half; what follows both, all (but the
    # short warp to the template, which takes one slot to fit beside the vein images)
    for nprocs, side, after in ((2, 1, 2), (4, 2, 2), (3, 1, 2)):
        settings = _settings(tmp_path, bids_dir=bids, omp_nthreads=2, nprocs=nprocs)
        wf = init_participant_wf(settings, [RunInputs(run, None, atlas.root, NameContext())])
        nodes = {n.name: n for n in wf._create_flat_graph().nodes()}
        for name in ("register", "field", "bg_removal", "inversion"):
            assert nodes[name].n_procs == side, (nprocs, name)
            assert nodes[name].inputs.num_threads == side, (nprocs, name)
        assert nodes["regional_stats"].n_procs == 1 and nodes["sink"].n_procs == after
        assert nodes["warp_to_template"].n_procs == 1
        assert nodes["warp_to_template"].inputs.num_threads == 1
    settings = _settings(tmp_path, bids_dir=bids, registration="accurate")
    wf = init_participant_wf(settings, [RunInputs(run, None, atlas.root, NameContext())])
    reg = next(n for n in wf._create_flat_graph().nodes() if n.name == "register")
    assert reg.inputs.preset == "accurate"


def test_mask_and_atlas_resolution(tmp_path, monkeypatch):
    from qsmbids.cli.run import SetupError, resolve_atlas, resolve_user_mask

    bids = new_dataset(tmp_path / "bids")
    write_run(bids, "sub-01/anat/sub-01_run-1", seed=1)
    run = discover_runs(bids).runs[0]
    masks = tmp_path / "masks" / "sub-01" / "anat"
    masks.mkdir(parents=True)
    mask = masks / "sub-01_run-1_space-orig_desc-brain_mask.nii.gz"
    mask.write_bytes(b"")
    assert resolve_user_mask(_settings(tmp_path, mask=tmp_path / "masks"), run) == mask
    assert resolve_user_mask(_settings(tmp_path, mask=mask), run) == mask
    assert resolve_user_mask(_settings(tmp_path), run) is None
    (tmp_path / "empty").mkdir()
    with pytest.raises(SetupError, match="no mask for sub-01_run-1"):
        resolve_user_mask(_settings(tmp_path, mask=tmp_path / "empty"), run)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("QSMBIDS_ATLAS_DIR", raising=False)
    with pytest.raises(SetupError, match="qsmbids atlas fetch"):
        resolve_atlas(_settings(tmp_path, atlas="other"))
    assert resolve_atlas(_settings(tmp_path, atlas="none")) is None
    with pytest.raises(SetupError, match=r"no atlas\.json"):
        resolve_atlas(_settings(tmp_path, atlas_dir=tmp_path / "empty"))


def test_phase_units_override_reaches_load_gre(tmp_path, monkeypatch):
    from qsmbids.interfaces.recon import LoadGre

    bids = new_dataset(tmp_path / "bids")
    write_run(bids, "sub-01/anat/sub-01", seed=1, phase_units="arbitrary")
    argv = [str(bids), str(tmp_path / "o"), "participant"]
    auto = settings_from_args(parse_args(argv))
    forced = settings_from_args(parse_args([*argv, "--phase-units", "arbitrary"]))
    assert auto.phase_units is None and forced.phase_units == "arbitrary"
    assert auto.digest() != forced.digest()
    with pytest.raises(SystemExit):
        parse_args([*argv, "--phase-units", "degrees"])
    run = discover_runs(bids).runs[0]
    wf = init_participant_wf(forced, [RunInputs(run, None, None, NameContext())])
    load = next(n for n in wf._create_flat_graph().nodes() if n.name == "load")
    assert load.inputs.phase_units == "arbitrary"
    # the interface hands the override to the scaling and records it for the sidecars
    monkeypatch.chdir(tmp_path)
    for override, guessed in ((None, True), ("arbitrary", False)):
        interface = LoadGre(run_spec=load.inputs.run_spec)
        if override:
            interface.inputs.phase_units = override
        result = interface.run()
        record = json.loads(Path(result.outputs.provenance).read_text())
        assert record["Parameters"]["Override"] == override
        assert record["Info"]["PhaseUnitsGuessed"] is guessed
        assert record["Algorithm"].startswith("--phase-units arbitrary" if override
                                              else "units guessed")


def test_phase_sign_reaches_load_gre_and_negates_the_phase(tmp_path, monkeypatch):
    import nibabel as nib

    from qsmbids.interfaces.recon import LoadGre

    bids = new_dataset(tmp_path / "bids")
    write_run(bids, "sub-01/anat/sub-01", seed=1)
    argv = [str(bids), str(tmp_path / "o"), "participant"]
    plain = settings_from_args(parse_args(argv))
    flipped = settings_from_args(parse_args([*argv, "--phase-sign", "-1"]))
    assert plain.phase_sign == 1 and flipped.phase_sign == -1
    assert plain.digest() != flipped.digest()
    with pytest.raises(SystemExit):
        parse_args([*argv, "--phase-sign", "2"])
    run = discover_runs(bids).runs[0]
    wf = init_participant_wf(flipped, [RunInputs(run, None, None, NameContext())])
    load = next(n for n in wf._create_flat_graph().nodes() if n.name == "load")
    assert load.inputs.phase_sign == -1
    monkeypatch.chdir(tmp_path)
    phases = {}
    for sign in (1, -1):
        result = LoadGre(run_spec=load.inputs.run_spec, phase_sign=sign).run()
        phases[sign] = nib.load(result.outputs.phase).get_fdata()  # a copy: same file name
        record = json.loads(Path(result.outputs.provenance).read_text())
        assert record["Parameters"]["PhaseSign"] == sign
    diff = np.angle(np.exp(1j * (phases[-1] + phases[1])))
    assert np.abs(diff).max() < 1e-5  # -phase, up to the wrap at +-pi


def test_refinement_runs_on_fine_voxels_and_is_skipped_on_coarse_ones(tmp_path):
    # 3 mm: the measured regional-mean error of the nigra and red nucleus rises with the
    # refinement (registration/schedules.MAX_VOXEL_MM), so the anatomical path places them
    from nipype.interfaces.base import isdefined

    from qsmbids.registration.schedules import refinement_skip_reason

    assert refinement_skip_reason((1.0, 1.0, 1.0)) is None
    assert refinement_skip_reason((0.5, 0.5, 2.0)) is None
    assert "3 x 3 x 3 mm" in refinement_skip_reason((3.0, 3.0, 3.0))
    atlas = write_phantom_atlas(tmp_path / "atlas", 4.0, contrast="magnitude")
    settings = _settings(tmp_path, registration_contrast="anatomy+chi")
    for voxel, refined in ((3.0, False), (2.0, True)):
        bids = new_dataset(tmp_path / f"bids{voxel:g}")
        write_run(bids, "sub-01/anat/sub-01", seed=1, voxel=voxel)
        run = discover_runs(bids).runs[0]
        wf = init_participant_wf(settings, [RunInputs(run, None, atlas.root, NameContext())])
        nodes = {n.name: n for n in wf._create_flat_graph().nodes()}
        assert ("refine_on_chi" in nodes) is refined
        assert nodes["register"].inputs.refined is refined
        skipped = nodes["register"].inputs.refinement_skipped
        if refined:
            assert not isdefined(skipped)
        else:
            assert skipped == refinement_skip_reason((voxel,) * 3)
