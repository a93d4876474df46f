"""Workflow factories: one shallow nipype graph per run, all runs in one participant graph.

::

    participant_wf
      run_<sub_01_ses_1_run_1>            (init_run_wf)
        load -> mask -> field -> bg -> inversion -> reference        (init_qsm_wf)
                      \\-> relaxometry                               (init_field_wf)
        register -> warp_to_template, regional_stats                (init_registration_wf)
        sink  (always reruns: writes OUTPUT_DIR, manifest last)

Every node declares ``mem_gb`` estimated from the image size and echo count, and
``n_procs`` (threads) from ``--omp-nthreads``, so MultiProc schedules within
``--nprocs``/``--mem-gb`` and cluster plugins request fitting resources.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import nibabel as nib
from nipype.pipeline import engine as pe

from qsmbids.bids.derivatives import NameContext
from qsmbids.bids.discovery import GreRun, run_sources
from qsmbids.interfaces.derivatives import DerivativesSink
from qsmbids.interfaces.io import estimate_mem_gb
from qsmbids.interfaces.recon import (
    BrainMask,
    DipoleInversion,
    EstimateField,
    LoadGre,
    ReferenceSusceptibility,
    Relaxometry,
    RemoveBackground,
)
from qsmbids.interfaces.registration import (
    RefineOnSusceptibility,
    RegionalStats,
    RegisterAtlas,
    WarpToTemplate,
)
from qsmbids.workflows.settings import Settings

_LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunInputs:
    """What a run workflow needs besides the settings.

    Attributes
    ----------
    run
        The discovered run.
    user_mask
        A brain mask for this run (from ``--mask``) or None.
    atlas_dir
        Resolved atlas folder, or None for no registration/regional tables.
    context
        Labels for derivative names.
    """

    run: GreRun
    user_mask: Path | None
    atlas_dir: Path | None
    context: NameContext


def workflow_name(run: GreRun) -> str:
    """Valid nipype name of a run's workflow, e.g. ``run_sub_01_ses_1``."""
    return "run_" + re.sub(r"[^A-Za-z0-9]", "_", run.prefix)


def run_spec(run: GreRun) -> str:
    """JSON description of a run handed to the load and sink nodes."""
    return json.dumps({
        "entities": run.entities,
        "magnitude": [str(p) for p in run.magnitude],
        "phase": [str(p) for p in run.phase],
        "real": [str(p) for p in run.real],
        "imag": [str(p) for p in run.imag],
        "four_d": run.four_d,
        "channels": run.channels,
        "field_map": None if run.field_map is None else str(run.field_map),
        "field_map_units": run.field_map_units,
        "echo_times": list(run.echo_times),
        "field_strength": run.field_strength,
        "phase_units": run.phase_units,
        "sources": run_sources(run),
    }, sort_keys=True)


def _shape(run: GreRun) -> tuple[int, int, int]:
    header = nib.load(str(run.files[0])).header
    return tuple(int(n) for n in header.get_data_shape()[:3])  # type: ignore[return-value]


def _voxel_mm(run: GreRun) -> tuple[float, float, float]:
    """Voxel size of the run's map (its first echo's grid), mm."""
    header = nib.load(str(run.files[0])).header
    return tuple(float(v) for v in header.get_zooms()[:3])  # type: ignore[return-value]


def memory_estimates(shape: tuple[int, int, int], n_echoes: int,
                     channels: int = 1) -> dict[str, float]:
    """GB per node for an image of ``shape`` with ``n_echoes`` (measured peaks + margin);
    coil channels are combined one at a time (accumulators of 3 float32 volumes per echo
    and about 20 for the offsets), so their number does not scale the load step."""
    load = estimate_mem_gb(shape, n_echoes, 4.0)
    if channels > 1:
        load += estimate_mem_gb(shape, n_echoes, 3.0) + estimate_mem_gb(shape, 1, 20.0)
    return {
        "load": load,
        "mask": estimate_mem_gb(shape, n_echoes, 3.0),
        "field": estimate_mem_gb(shape, n_echoes, 8.0),
        "relax": estimate_mem_gb(shape, n_echoes, 4.0),
        "bg": estimate_mem_gb(shape, 1, 12.0, pad_fraction=0.5),
        "inv": estimate_mem_gb(shape, 1, 20.0, pad_fraction=0.25),
        "ref": estimate_mem_gb(shape, 1, 4.0),
        "reg": max(1.5, estimate_mem_gb(shape, n_echoes, 12.0)),
        "warp": estimate_mem_gb(shape, 1, 8.0) + 0.5,
        "stats": estimate_mem_gb(shape, 1, 6.0),
        "sink": 0.3,
    }


def init_field_wf(settings: Settings, inputs: RunInputs, mem: dict[str, float]) -> dict:
    """Nodes from the raw files to the total field and R2*: load, mask, field, and
    relaxometry when the run has two echoes or more."""
    run = inputs.run
    mask = pe.Node(BrainMask(), name="mask", mem_gb=mem["mask"])
    if inputs.user_mask is not None:
        mask.inputs.user_mask = str(inputs.user_mask)
    nodes = (_init_field_map_nodes(run, mask, mem) if run.field_map is not None
             else _init_phase_nodes(settings, run, mask, mem))
    if run.n_echoes >= 2:  # R2*/T2* need two echoes or more
        nodes["relax"] = pe.Node(Relaxometry(echo_times=list(run.echo_times)),
                                 name="relaxometry", mem_gb=mem["relax"])
    return nodes


def _init_phase_nodes(settings: Settings, run: GreRun, mask: pe.Node,
                      mem: dict[str, float]) -> dict:
    """A run of wrapped phase: load and scale the parts, mask, estimate the field."""
    threads = settings.omp_nthreads
    load = pe.Node(LoadGre(run_spec=run_spec(run)), name="load", mem_gb=mem["load"])
    if settings.phase_units is not None:
        load.inputs.phase_units = settings.phase_units
    load.inputs.phase_sign = settings.phase_sign
    field = pe.Node(EstimateField(echo_times=list(run.echo_times),
                                  field_strength=run.field_strength,
                                  unwrapping=settings.unwrapping, num_threads=threads),
                    name="field", mem_gb=mem["field"], n_procs=threads)
    return {"load": load, "mask": mask, "field": field}


def _init_field_map_nodes(run: GreRun, mask: pe.Node, mem: dict[str, float]) -> dict:
    """A run that brings its field map: load the magnitude, mask, convert the map."""
    from qsmbids.interfaces.field_map import FieldFromMap, LoadMagnitude

    load = pe.Node(LoadMagnitude(run_spec=run_spec(run)), name="load", mem_gb=mem["load"])
    field = pe.Node(FieldFromMap(field_map=str(run.field_map), units=run.field_map_units,
                                 field_strength=run.field_strength,
                                 echo_time=run.field_map_echo_time or 0.0),
                    name="field", mem_gb=mem["field"])
    return {"load": load, "mask": mask, "field": field}


def init_qsm_wf(settings: Settings, mem: dict[str, float], offset_term: bool = False) -> dict:
    """Nodes from the total field to the referenced QSM: background, inversion, reference
    (``offset_term``: the background step also removes a phase offset's r^2 part, for a
    field from one echo)."""
    threads = settings.omp_nthreads
    bg = pe.Node(RemoveBackground(method=settings.bg_removal, num_threads=threads,
                                  offset_term=offset_term),
                 name="bg_removal", mem_gb=mem["bg"], n_procs=threads)
    inv = pe.Node(DipoleInversion(method=settings.inversion, num_threads=threads),
                  name="inversion", mem_gb=mem["inv"], n_procs=threads)
    ref = pe.Node(ReferenceSusceptibility(method=settings.reference), name="reference",
                  mem_gb=mem["ref"])
    return {"bg": bg, "inv": inv, "ref": ref}


def init_registration_wf(settings: Settings, inputs: RunInputs, mem: dict[str, float]) -> dict:
    """Nodes that register the atlas and compute regional tables (empty without an atlas):
    the anatomical registration, with ``anatomy+chi`` its refinement on the
    susceptibility map (``refine``; ``labels`` is the node whose labels and transforms
    the tables and derivatives use), the warp into template space and the statistics."""
    if inputs.atlas_dir is None:
        return {}
    threads = settings.omp_nthreads
    atlas = str(inputs.atlas_dir)
    from qsmbids.registration.refine import refinement_skip_reason  # imports ANTs

    refined = settings.registration_contrast == "anatomy+chi"
    skipped = refinement_skip_reason(_voxel_mm(inputs.run)) if refined else None
    if skipped:
        refined = False
        _LOG.info("%s: susceptibility refinement skipped: %s", inputs.run.prefix, skipped)
    reg = pe.Node(RegisterAtlas(atlas_dir=atlas, preset=settings.registration,
                                deterministic=settings.deterministic, refined=refined,
                                num_threads=threads), name="register",
                  mem_gb=mem["reg"], n_procs=threads)
    if skipped:
        reg.inputs.refinement_skipped = skipped
    if inputs.run.t1w is not None:
        reg.inputs.t1w = str(inputs.run.t1w)
    nodes = {"reg": reg, "labels": reg}
    if refined:
        nodes["refine"] = nodes["labels"] = pe.Node(
            RefineOnSusceptibility(atlas_dir=atlas, deterministic=settings.deterministic,
                                   num_threads=threads),
            name="refine_on_chi", mem_gb=mem["reg"], n_procs=threads)
    nodes["warp"] = pe.Node(WarpToTemplate(atlas_dir=atlas, num_threads=threads),
                            name="warp_to_template", mem_gb=mem["warp"], n_procs=threads)
    nodes["stats"] = pe.Node(RegionalStats(atlas_dir=atlas), name="regional_stats",
                             mem_gb=mem["stats"])
    return nodes


def init_run_wf(settings: Settings, inputs: RunInputs) -> pe.Workflow:
    """The whole per-run pipeline, ending in the derivatives sink."""
    run = inputs.run
    mem = memory_estimates(_shape(run), max(1, run.n_echoes), run.channels)
    wf = pe.Workflow(name=workflow_name(run))
    f = init_field_wf(settings, inputs, mem)
    q = init_qsm_wf(settings, mem, offset_term=run.field_map is None and run.n_echoes == 1)
    r = init_registration_wf(settings, inputs, mem)
    sink = pe.Node(DerivativesSink(
        output_dir=str(settings.output_dir), run_spec=run_spec(run),
        context=asdict(inputs.context),
        settings_hash=settings.digest(), settings_record=settings.method_record()),
        name="sink", mem_gb=mem["sink"], overwrite=True)
    wf.connect([
        (f["load"], f["mask"], [("magnitude", "magnitude")]),
        (f["mask"], f["field"], [("mask", "mask")]),
        (f["field"], q["bg"], [("field", "field"), ("mask", "mask")]),
        (q["bg"], q["inv"], [("local_field", "local_field"), ("mask", "mask")]),
        (q["inv"], q["ref"], [("chi", "chi")]),
        (q["bg"], q["ref"], [("mask", "mask")]),
        (f["load"], sink, [("provenance", "prov_load")]),
        (f["mask"], sink, [("provenance", "prov_mask")]),
        (f["field"], sink, [("field", "in_totalfield"), ("provenance", "prov_field")]),
        (q["bg"], sink, [("local_field", "in_localfield"), ("mask", "in_mask"),
                         ("provenance", "prov_bg")]),
        (q["inv"], sink, [("provenance", "prov_inv")]),
        (q["ref"], sink, [("chi", "in_chi"), ("provenance", "prov_ref"),
                          ("reference", "reference")]),
    ])
    if run.field_map is None:  # estimated from wrapped phase: its noise map weights TV
        wf.connect([
            (f["load"], f["field"], [("magnitude", "magnitude"), ("phase", "phase")]),
            (f["field"], q["inv"], [("field_noise", "field_noise")]),
            (f["field"], sink, [("field_noise", "in_fieldnoise")]),
        ])
    if "relax" in f:
        wf.connect([
            (f["load"], f["relax"], [("magnitude", "magnitude")]),
            (f["mask"], f["relax"], [("mask", "mask")]),
            (f["relax"], sink, [("r2star", "in_r2star"), ("t2star", "in_t2star"),
                                ("provenance", "prov_relax")]),
        ])
    if settings.reference == "csf" and r:
        q["ref"].inputs.atlas_dir = str(inputs.atlas_dir)
        wf.connect([(r["reg"], q["ref"], [("dseg", "dseg")])])
    if r:
        labels = r["labels"]
        wf.connect([
            (f["load"], r["reg"], [("magnitude", "magnitude")]),
            (f["mask"], r["reg"], [("mask", "mask")]),
            (q["ref"], r["warp"], [("chi", "in_file")]),
            (labels, r["warp"], [("inverse_xfm_files", "xfm_files"),
                                 ("inverse_invert", "invert")]),
            (q["ref"], r["stats"], [("chi", "chi")]),
            (q["bg"], r["stats"], [("mask", "mask")]),
            (labels, r["stats"], [("dseg", "dseg")]),
            (labels, sink, [("dseg", "in_dseg"), ("dseg_tsv", "in_dseg_tsv"),
                            ("xfm_files", "xfm_files"),
                            ("inverse_xfm_files", "inverse_xfm_files")]),
            (r["reg"], sink, [("magnitude", "in_magnitude"), ("provenance", "prov_reg")]),
            (r["warp"], sink, [("out_file", "in_chi_template")]),
            (r["stats"], sink, [("table", "in_regions"), ("provenance", "prov_stats")]),
        ])
        if "refine" in r:
            wf.connect([
                (q["ref"], r["refine"], [("chi", "chi")]),
                (q["bg"], r["refine"], [("mask", "mask")]),
                (r["reg"], r["refine"], [("xfm_files", "xfm_files"),
                                         ("inverse_xfm_files", "inverse_xfm_files"),
                                         ("inverse_invert", "inverse_invert"),
                                         ("anatomy", "anatomy"), ("metric", "metric")]),
                (r["refine"], sink, [("provenance", "prov_refine")]),
            ])
    return wf


def init_participant_wf(settings: Settings, runs: list[RunInputs]) -> pe.Workflow:
    """One graph holding every selected run (runs in parallel under MultiProc/clusters)."""
    wf = pe.Workflow(name="qsmbids_wf", base_dir=str(settings.work_dir))
    for inputs in runs:
        wf.add_nodes([init_run_wf(settings, inputs)])
    return wf
