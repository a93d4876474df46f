"""``init_qsm_wf``: from the total field to the referenced susceptibility map."""

from __future__ import annotations

from pathlib import Path

from nipype.interfaces.utility import IdentityInterface
from nipype.pipeline import engine as pe

from qsmbids.interfaces.recon import DipoleInversion, ReferenceSusceptibility, RemoveBackground
from qsmbids.workflows.settings import Settings

#: the ``inputnode`` and ``outputnode`` fields of :func:`init_qsm_wf`
QSM_INPUTS = ("field", "mask", "field_noise", "dseg")
QSM_OUTPUTS = ("local_field", "mask", "chi", "reference", "prov_bg", "prov_inv", "prov_ref")


def init_qsm_wf(settings: Settings, mem: dict[str, float], *, offset_term: bool = False,
                field_noise: bool = True, csf_atlas_dir: Path | None = None,
                threads: int | None = None, name: str = "qsm_wf") -> pe.Workflow:
    """Background-field removal, dipole inversion and referencing.

    Parameters
    ----------
    settings
        Methods (``bg_removal``, ``inversion``, ``reference``) and threads.
    mem
        GB per node (:func:`qsmbids.workflows.common.memory_estimates`).
    offset_term
        The background step also removes a phase offset's r^2 part (a field from one
        echo, whose offset could not be separated).
    field_noise
        ``inputnode.field_noise`` (ppm) weights the inversion's data term (a field
        estimated from wrapped phase); False for a field map without one.
    csf_atlas_dir
        With ``--reference csf``: the atlas whose CSF labels, warped onto the run
        (``inputnode.dseg``), give the reference.
    threads
        Threads of its heavy nodes (None: ``settings.omp_nthreads``; the run's
        workflow gives :func:`~qsmbids.workflows.common.side_by_side_threads`).
    name
        Workflow name.

    Returns
    -------
    nipype.pipeline.engine.Workflow
        ``inputnode`` fields :data:`QSM_INPUTS`: ``field`` (ppm), ``mask``,
        ``field_noise``, ``dseg``; ``outputnode`` fields :data:`QSM_OUTPUTS`:
        ``local_field`` (ppm), ``mask`` (where it is valid), ``chi`` (ppm, referenced),
        ``reference`` (region and value) and the steps' provenance records.
    """
    threads = threads or settings.omp_nthreads
    wf = pe.Workflow(name=name)
    inputnode = pe.Node(IdentityInterface(fields=list(QSM_INPUTS)), name="inputnode")
    outputnode = pe.Node(IdentityInterface(fields=list(QSM_OUTPUTS)), name="outputnode")
    bg = pe.Node(RemoveBackground(method=settings.bg_removal, num_threads=threads,
                                  offset_term=offset_term),
                 name="bg_removal", mem_gb=mem["bg"], n_procs=threads)
    inv = pe.Node(DipoleInversion(method=settings.inversion, num_threads=threads),
                  name="inversion", mem_gb=mem["inv"], n_procs=threads)
    ref = pe.Node(ReferenceSusceptibility(method=settings.reference), name="reference",
                  mem_gb=mem["ref"])
    wf.connect([
        (inputnode, bg, [("field", "field"), ("mask", "mask")]),
        (bg, inv, [("local_field", "local_field"), ("mask", "mask")]),
        (inv, ref, [("chi", "chi")]),
        (bg, ref, [("mask", "mask")]),
        (bg, outputnode, [("local_field", "local_field"), ("mask", "mask"),
                          ("provenance", "prov_bg")]),
        (inv, outputnode, [("provenance", "prov_inv")]),
        (ref, outputnode, [("chi", "chi"), ("reference", "reference"),
                           ("provenance", "prov_ref")]),
    ])
    if field_noise:
        wf.connect([(inputnode, inv, [("field_noise", "field_noise")])])
    if settings.reference == "csf" and csf_atlas_dir is not None:
        ref.inputs.atlas_dir = str(csf_atlas_dir)
        wf.connect([(inputnode, ref, [("dseg", "dseg")])])
    return wf
