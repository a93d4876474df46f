"""The per-run workflow and the participant graph, composed of the sub-workflows.

::

    participant_wf
      run_<sub_01_ses_1_run_1>                        (init_run_wf)
        field_wf: load -> mask -> field, relaxometry   (init_field_wf)
        qsm_wf: bg_removal -> inversion -> reference   (init_qsm_wf)
        atlas_registration_wf: register                (init_atlas_registration_wf)
        regional_wf: [refine_on_chi] -> warp_to_template, regional_stats
                                                       (init_regional_wf)
        vein_wf: SWI, minIP, venogram, vein mask, OEF  (init_vein_wf)
        sink  (always reruns: writes OUTPUT_DIR, manifest last)

Every node declares ``mem_gb`` estimated from the image size and echo count, and
``n_procs`` (threads) from ``--omp-nthreads``, so MultiProc schedules within
``--nprocs``/``--mem-gb`` and cluster plugins request fitting resources. The
anatomical registration depends only on the field workflow's magnitude and mask, so
it runs beside the reconstruction (before the reference with ``--reference csf``); when
the two branches do not fit in ``--nprocs`` at full width, their nodes get half the
threads each (:func:`~qsmbids.workflows.common.side_by_side_threads`).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path

from nipype.pipeline import engine as pe

from qsmbids.derivatives.naming import NameContext
from qsmbids.interfaces.derivatives import DerivativesSink
from qsmbids.runs import GreRun
from qsmbids.workflows.atlas import init_atlas_registration_wf, init_regional_wf
from qsmbids.workflows.common import (
    image_shape,
    memory_estimates,
    refinement_plan,
    run_spec,
    side_by_side_threads,
)
from qsmbids.workflows.field import init_field_wf
from qsmbids.workflows.qsm import init_qsm_wf
from qsmbids.workflows.settings import Settings
from qsmbids.workflows.veins import init_vein_wf


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
    hematocrit
        The participant's haematocrit (fraction) and where it came from (e.g.
        ``participants.tsv``); None: the settings' default.
    """

    run: GreRun
    user_mask: Path | None
    atlas_dir: Path | None
    context: NameContext
    hematocrit: tuple[float, str] | None = None


def workflow_name(run: GreRun) -> str:
    """Valid nipype name of a run's workflow, e.g. ``run_sub_01_ses_1``."""
    return "run_" + re.sub(r"[^A-Za-z0-9]", "_", run.prefix)


def init_run_wf(settings: Settings, inputs: RunInputs) -> pe.Workflow:
    """The whole per-run pipeline: the sub-workflows, ending in the derivatives sink."""
    run = inputs.run
    mem = memory_estimates(image_shape(run), max(1, run.n_echoes), run.channels)
    wf = pe.Workflow(name=workflow_name(run))
    phase = run.field_map is None  # estimated from wrapped phase (it has a noise map)
    atlas = inputs.atlas_dir
    # the reconstruction chain and the atlas registration run side by side
    threads = side_by_side_threads(settings, atlas is not None)
    field = init_field_wf(settings, run, mem, user_mask=inputs.user_mask, threads=threads)
    qsm = init_qsm_wf(settings, mem, offset_term=phase and run.n_echoes == 1,
                      field_noise=phase, csf_atlas_dir=atlas, threads=threads)
    sink = pe.Node(DerivativesSink(
        output_dir=str(settings.output_dir), run_spec=run_spec(run),
        context=asdict(inputs.context),
        settings_hash=settings.digest(), settings_record=settings.method_record(),
        num_threads=settings.omp_nthreads),
        name="sink", mem_gb=mem["sink"], overwrite=True, n_procs=settings.omp_nthreads)
    wf.connect([
        (field, qsm, [("outputnode.field", "inputnode.field"),
                      ("outputnode.field_mask", "inputnode.mask")]),
        (field, sink, [("outputnode.prov_load", "prov_load"),
                       ("outputnode.prov_mask", "prov_mask"),
                       ("outputnode.field", "in_totalfield"),
                       ("outputnode.prov_field", "prov_field")]),
        (qsm, sink, [("outputnode.local_field", "in_localfield"),
                     ("outputnode.mask", "in_mask"), ("outputnode.prov_bg", "prov_bg"),
                     ("outputnode.prov_inv", "prov_inv"), ("outputnode.chi", "in_chi"),
                     ("outputnode.prov_ref", "prov_ref"),
                     ("outputnode.reference", "reference")]),
    ])
    if phase:
        wf.connect([
            (field, qsm, [("outputnode.field_noise", "inputnode.field_noise")]),
            (field, sink, [("outputnode.field_noise", "in_fieldnoise")]),
        ])
    if run.n_echoes >= 2:
        wf.connect([(field, sink, [("outputnode.r2star", "in_r2star"),
                                   ("outputnode.t2star", "in_t2star"),
                                   ("outputnode.prov_relax", "prov_relax")])])
    regional = None
    if atlas is not None:
        regional = _connect_atlas(wf, settings, inputs, mem, field, qsm, sink, threads)
    if settings.veins:
        _connect_veins(wf, settings, inputs, mem, field, qsm, regional, sink)
    return wf


def _connect_veins(wf: pe.Workflow, settings: Settings, inputs: RunInputs,
                   mem: dict[str, float], field: pe.Workflow, qsm: pe.Workflow,
                   regional: pe.Workflow | None, sink: pe.Node) -> None:
    """Add the vein workflow (SWI, minIP, venogram, vein mask, OEF) to a run's workflow."""
    hematocrit, source = inputs.hematocrit or (settings.hematocrit, "default")
    nuclei: tuple[int, ...] = ()
    csf: tuple[int, ...] = ()
    if regional is not None:
        from qsmbids.atlas.model import load_atlas

        atlas = load_atlas(inputs.atlas_dir, check_images=False)
        nuclei = tuple(sorted({label for labels in atlas.regions.values() for label in labels}))
        csf = tuple(atlas.references.get("CSF", ()))
    veins = init_vein_wf(settings, mem, hematocrit=hematocrit,
                         hematocrit_source=source, with_dseg=regional is not None,
                         nucleus_labels=nuclei, csf_labels=csf)
    wf.connect([
        (field, veins, [("outputnode.magnitude", "inputnode.magnitude")]),
        (qsm, veins, [("outputnode.local_field", "inputnode.local_field"),
                      ("outputnode.chi", "inputnode.chi"), ("outputnode.mask", "inputnode.mask"),
                      ("outputnode.prov_inv", "inputnode.inversion_provenance")]),
        (veins, sink, [(f"outputnode.{k}", f"in_{k}") for k in
                       ("swi", "minip", "venogram", "veins", "veins_table")]
         + [("outputnode.prov_veins", "prov_veins")]),
    ])
    if regional is not None:
        wf.connect([(regional, veins, [("outputnode.dseg", "inputnode.dseg")])])


def _connect_atlas(wf: pe.Workflow, settings: Settings, inputs: RunInputs,
                   mem: dict[str, float], field: pe.Workflow, qsm: pe.Workflow,
                   sink: pe.Node, threads: int) -> pe.Workflow:
    """Add the atlas registration (``threads`` per node) and the regional workflow to a
    run's workflow; return the regional workflow (its ``outputnode.dseg``: the labels
    on the run)."""
    refined, skipped = refinement_plan(settings, inputs.run)
    registration = init_atlas_registration_wf(settings, inputs.atlas_dir, mem,
                                              t1w=inputs.run.t1w, refined=refined,
                                              refinement_skipped=skipped, threads=threads)
    regional = init_regional_wf(settings, inputs.atlas_dir, mem, refine=refined)
    anatomical = ("dseg", "dseg_tsv", "xfm_files", "inverse_xfm_files", "inverse_invert",
                  "anatomy", "metric")
    wf.connect([
        (field, registration, [("outputnode.magnitude", "inputnode.magnitude"),
                               ("outputnode.brain_mask", "inputnode.mask")]),
        (qsm, regional, [("outputnode.chi", "inputnode.chi"),
                         ("outputnode.mask", "inputnode.mask")]),
        (registration, regional, [(f"outputnode.{f}", f"inputnode.{f}")
                                  for f in anatomical]),
        (registration, sink, [("outputnode.magnitude", "in_magnitude"),
                              ("outputnode.provenance", "prov_reg")]),
        (regional, sink, [("outputnode.dseg", "in_dseg"),
                          ("outputnode.dseg_tsv", "in_dseg_tsv"),
                          ("outputnode.xfm_files", "xfm_files"),
                          ("outputnode.inverse_xfm_files", "inverse_xfm_files"),
                          ("outputnode.chi_template", "in_chi_template"),
                          ("outputnode.regions", "in_regions"),
                          ("outputnode.prov_stats", "prov_stats")]),
    ])
    if settings.reference == "csf":
        wf.connect([(registration, qsm, [("outputnode.dseg", "inputnode.dseg")])])
    if refined:
        wf.connect([(regional, sink, [("outputnode.prov_refine", "prov_refine")])])
    return regional


def init_participant_wf(settings: Settings, runs: list[RunInputs]) -> pe.Workflow:
    """One graph holding every selected run (runs in parallel under MultiProc/clusters)."""
    wf = pe.Workflow(name="qsmbids_wf", base_dir=str(settings.work_dir))
    for inputs in runs:
        wf.add_nodes([init_run_wf(settings, inputs)])
    return wf
