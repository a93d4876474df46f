"""``init_field_wf``: from a run's raw files to its brain mask, total field and R2*."""

from __future__ import annotations

from pathlib import Path

from nipype.interfaces.utility import IdentityInterface
from nipype.pipeline import engine as pe

from qsmbids.interfaces.recon import BrainMask, EstimateField, LoadGre, Relaxometry
from qsmbids.runs import GreRun
from qsmbids.workflows.common import run_spec
from qsmbids.workflows.settings import Settings

#: what :func:`init_field_wf` gives its ``outputnode``
FIELD_OUTPUTS = ("magnitude", "brain_mask", "field", "field_mask", "field_noise", "r2star",
                 "t2star", "prov_load", "prov_mask", "prov_field", "prov_relax")


def init_field_wf(settings: Settings, run: GreRun, mem: dict[str, float], *,
                  user_mask: Path | None = None, threads: int | None = None,
                  name: str = "field_wf") -> pe.Workflow:
    """Load the run, make its brain mask and estimate its total field (ppm); R2*/T2*
    when it has two echoes or more.

    A run of wrapped phase is scaled, offset-corrected, unwrapped and fitted over the
    echoes (:class:`~qsmbids.interfaces.recon.EstimateField`); a run that brings its
    field map (``run.field_map``) has that map converted instead.

    Parameters
    ----------
    settings
        Methods and threads.
    run
        The discovered run (its files are given to the load node).
    mem
        GB per node (:func:`qsmbids.workflows.common.memory_estimates`).
    user_mask
        A brain mask to use instead of the automatic one (also settable later as
        ``inputnode.user_mask``).
    threads
        Threads of its heavy nodes (None: ``settings.omp_nthreads``; the run's
        workflow gives :func:`~qsmbids.workflows.common.side_by_side_threads`).
    name
        Workflow name.

    Returns
    -------
    nipype.pipeline.engine.Workflow
        ``outputnode`` fields :data:`FIELD_OUTPUTS`: ``magnitude`` (x, y, z, echo),
        ``brain_mask``, ``field`` (ppm), ``field_mask`` (the mask without the edge
        voxels whose field is unreliable), ``field_noise`` (ppm; runs of wrapped phase
        only), ``r2star`` (1/s) and ``t2star`` (s) with two echoes or more, and the
        steps' provenance records.
    """
    wf = pe.Workflow(name=name)
    inputnode = pe.Node(IdentityInterface(fields=["user_mask"]), name="inputnode")
    outputnode = pe.Node(IdentityInterface(fields=list(FIELD_OUTPUTS)), name="outputnode")
    if user_mask is not None:
        inputnode.inputs.user_mask = str(user_mask)
    mask = pe.Node(BrainMask(), name="mask", mem_gb=mem["mask"])
    wf.connect([(inputnode, mask, [("user_mask", "user_mask")])])
    if run.field_map is not None:
        load, field = _field_map_nodes(run, mem)
    else:
        load, field = _phase_nodes(settings, run, mem, threads or settings.omp_nthreads)
        wf.connect([
            (load, field, [("magnitude", "magnitude"), ("phase", "phase")]),
            (field, outputnode, [("field_noise", "field_noise")]),
        ])
    wf.connect([
        (load, mask, [("magnitude", "magnitude")]),
        (mask, field, [("mask", "mask")]),
        (load, outputnode, [("magnitude", "magnitude"), ("provenance", "prov_load")]),
        (mask, outputnode, [("mask", "brain_mask"), ("provenance", "prov_mask")]),
        (field, outputnode, [("field", "field"), ("mask", "field_mask"),
                             ("provenance", "prov_field")]),
    ])
    if run.n_echoes >= 2:  # R2*/T2* need two echoes or more
        relax = pe.Node(Relaxometry(echo_times=list(run.echo_times)), name="relaxometry",
                        mem_gb=mem["relax"])
        wf.connect([
            (load, relax, [("magnitude", "magnitude")]),
            (mask, relax, [("mask", "mask")]),
            (relax, outputnode, [("r2star", "r2star"), ("t2star", "t2star"),
                                 ("provenance", "prov_relax")]),
        ])
    return wf


def _phase_nodes(settings: Settings, run: GreRun, mem: dict[str, float], threads: int
                 ) -> tuple[pe.Node, pe.Node]:
    """A run of wrapped phase: load and scale the parts, estimate the field (``threads``)."""
    # the first node, alone at the start: it reads the echo files with all the threads
    load = pe.Node(LoadGre(run_spec=run_spec(run), num_threads=settings.omp_nthreads),
                   name="load", mem_gb=mem["load"], n_procs=settings.omp_nthreads)
    if settings.phase_units is not None:
        load.inputs.phase_units = settings.phase_units
    load.inputs.phase_sign = settings.phase_sign
    field = pe.Node(EstimateField(echo_times=list(run.echo_times),
                                  field_strength=run.field_strength,
                                  unwrapping=settings.unwrapping, num_threads=threads),
                    name="field", mem_gb=mem["field"], n_procs=threads)
    return load, field


def _field_map_nodes(run: GreRun, mem: dict[str, float]) -> tuple[pe.Node, pe.Node]:
    """A run that brings its field map: load the magnitude, convert the map."""
    from qsmbids.interfaces.field_map import FieldFromMap, LoadMagnitude

    load = pe.Node(LoadMagnitude(run_spec=run_spec(run)), name="load", mem_gb=mem["load"])
    field = pe.Node(FieldFromMap(field_map=str(run.field_map), units=run.field_map_units,
                                 field_strength=run.field_strength,
                                 echo_time=run.field_map_echo_time or 0.0),
                    name="field", mem_gb=mem["field"])
    return load, field
