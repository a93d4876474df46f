"""The vein workflow: SWI, its minIP, the QSM venogram, the vein mask and OEF."""

from __future__ import annotations

from nipype.interfaces.utility import IdentityInterface
from nipype.pipeline import engine as pe

from qsmbids.interfaces.veins import VeinOutputs, VenousImages
from qsmbids.workflows.settings import Settings

#: the ``inputnode`` and ``outputnode`` fields of :func:`init_vein_wf`
VEIN_INPUTS = ("magnitude", "local_field", "chi", "mask", "dseg", "inversion_provenance")
VEIN_OUTPUTS = ("swi", "minip", "venogram", "veins", "veins_table", "prov_veins")


def init_vein_wf(settings: Settings, mem: dict[str, float], *,
                 hematocrit: float, hematocrit_source: str,
                 with_dseg: bool = False, nucleus_labels: tuple[int, ...] = (),
                 csf_labels: tuple[int, ...] = (), name: str = "vein_wf") -> pe.Workflow:
    """Vein outputs of one run.

    Parameters
    ----------
    settings
        Gives the projection slab thickness (``slab_mm``).
    mem
        Memory per node, GB (:func:`qsmbids.workflows.common.memory_estimates`).
    hematocrit, hematocrit_source
        The participant's haematocrit (fraction) and where it came from
        (``participants.tsv`` or ``default``).
    with_dseg
        Whether ``inputnode.dseg`` will be connected (atlas labels on the run's grid).
    nucleus_labels, csf_labels
        Atlas labels of the deep nuclei (kept out of the vein mask) and of CSF (the
        water level the venous susceptibility is measured from), used with ``dseg``.

    Returns
    -------
    nipype.pipeline.engine.Workflow
        ``inputnode`` fields :data:`VEIN_INPUTS`: ``magnitude`` (x, y, z, echo),
        ``local_field`` (ppm), ``chi`` (ppm), ``mask``, ``dseg`` (optional),
        ``inversion_provenance`` (the TV that the venous value is solved again with);
        ``outputnode`` fields :data:`VEIN_OUTPUTS`.
    """
    wf = pe.Workflow(name=name)
    inputnode = pe.Node(IdentityInterface(fields=list(VEIN_INPUTS)), name="inputnode")
    outputnode = pe.Node(IdentityInterface(fields=list(VEIN_OUTPUTS)), name="outputnode")
    # two nodes: the images and the vesselness need no atlas; only the mask's
    # exclusions and the CSF level wait for it. The images node filters its boxes and
    # scales on all the threads (4.0 s on one, 3.0-3.8 s on two at 1 mm), so it does not hold
    # one slot while the atlas refinement, which needs two, waits
    images = pe.Node(VenousImages(slab_mm=settings.slab_mm, num_threads=settings.omp_nthreads),
                     name="venous_images", mem_gb=mem["veins"], n_procs=settings.omp_nthreads)
    # all the threads: the cubes' TV solves (recon.vein_boxes) run side by side, one
    # per thread (48 cubes of 21 mm: 2.6-3.0 s on two threads at 1 mm, twice that on one)
    node = pe.Node(VeinOutputs(hematocrit=hematocrit, hematocrit_source=hematocrit_source,
                               nucleus_labels=list(nucleus_labels),
                               csf_labels=list(csf_labels),
                               num_threads=settings.omp_nthreads),
                   name="veins", mem_gb=mem["veins"], n_procs=settings.omp_nthreads)
    wf.connect([
        (inputnode, images, [(f, f) for f in ("magnitude", "local_field", "chi", "mask")]),
        (inputnode, node, [(f, f) for f in ("chi", "mask", "local_field",
                                            "inversion_provenance")
                           + (("dseg",) if with_dseg else ())]),
        (images, node, [("vesselness", "vesselness"), ("depth", "depth"),
                        ("provenance", "images_provenance")]),
        (images, outputnode, [(f, f) for f in ("swi", "minip", "venogram")]),
        (node, outputnode, [(f, f) for f in ("veins", "veins_table")]
         + [("provenance", "prov_veins")]),
    ])
    return wf
