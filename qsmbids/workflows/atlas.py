"""Atlas workflows: ``init_atlas_registration_wf`` places the atlas on the run from its
anatomy; ``init_regional_wf`` refines the nuclei on the susceptibility map, warps the
map into template space and computes the regional table.

The two are separate so that the anatomical registration can run beside the
reconstruction (and feed ``--reference csf``) while the parts that need the map wait
for it.
"""

from __future__ import annotations

from pathlib import Path

from nipype.interfaces.utility import IdentityInterface
from nipype.pipeline import engine as pe

from qsmbids.interfaces.registration import (
    RefineOnSusceptibility,
    RegionalStats,
    RegisterAtlas,
    WarpToTemplate,
)
from qsmbids.workflows.settings import Settings

#: fields of :func:`init_atlas_registration_wf`'s nodes
REGISTRATION_INPUTS = ("magnitude", "mask")
REGISTRATION_OUTPUTS = ("dseg", "dseg_tsv", "xfm_files", "inverse_xfm_files",
                        "inverse_invert", "magnitude", "anatomy", "metric", "provenance")
#: fields of :func:`init_regional_wf`'s nodes
REGIONAL_INPUTS = ("chi", "mask", "dseg", "dseg_tsv", "xfm_files", "inverse_xfm_files",
                   "inverse_invert", "anatomy", "metric")
REGIONAL_OUTPUTS = ("dseg", "dseg_tsv", "xfm_files", "inverse_xfm_files", "chi_template",
                    "regions", "prov_refine", "prov_stats")


def init_atlas_registration_wf(settings: Settings, atlas_dir: Path, mem: dict[str, float],
                               *, t1w: Path | None = None, refined: bool = False,
                               refinement_skipped: str | None = None,
                               threads: int | None = None,
                               name: str = "atlas_registration_wf") -> pe.Workflow:
    """Register the atlas template to the run (ANTs; through the T1w when given) and warp
    its labels onto the run.

    Parameters
    ----------
    settings
        Preset, determinism and threads.
    atlas_dir
        The atlas folder.
    mem
        GB per node.
    t1w
        The session's T1w, or None.
    refined
        A susceptibility refinement follows (the SyN stops one level early).
    refinement_skipped
        Why a refinement asked for does not run (recorded in the provenance).
    threads
        Threads of its heavy nodes (None: ``settings.omp_nthreads``; the run's
        workflow gives :func:`~qsmbids.workflows.common.side_by_side_threads`).
    name
        Workflow name.

    Returns
    -------
    nipype.pipeline.engine.Workflow
        ``inputnode``: ``magnitude`` (x, y, z, echo), ``mask``; ``outputnode``
        :data:`REGISTRATION_OUTPUTS`: the labels on the run's grid and their table,
        both transform chains, the registration target, the anatomy it matched and the
        SyN metric, and the provenance record.
    """
    threads = threads or settings.omp_nthreads
    wf = pe.Workflow(name=name)
    inputnode = pe.Node(IdentityInterface(fields=list(REGISTRATION_INPUTS)),
                        name="inputnode")
    outputnode = pe.Node(IdentityInterface(fields=list(REGISTRATION_OUTPUTS)),
                         name="outputnode")
    reg = pe.Node(RegisterAtlas(atlas_dir=str(atlas_dir), preset=settings.registration,
                                deterministic=settings.deterministic, refined=refined,
                                num_threads=threads), name="register",
                  mem_gb=mem["reg"], n_procs=threads)
    if refinement_skipped:
        reg.inputs.refinement_skipped = refinement_skipped
    if t1w is not None:
        reg.inputs.t1w = str(t1w)
    wf.connect([
        (inputnode, reg, [("magnitude", "magnitude"), ("mask", "mask")]),
        (reg, outputnode, [(field, field) for field in REGISTRATION_OUTPUTS]),
    ])
    return wf


def init_regional_wf(settings: Settings, atlas_dir: Path, mem: dict[str, float], *,
                     refine: bool = False, name: str = "regional_wf") -> pe.Workflow:
    """The parts of the atlas work that need the susceptibility map: the refinement of
    the nuclei on it (``refine``), its warp into template space and the regional table.

    Parameters
    ----------
    settings
        Determinism and threads.
    atlas_dir
        The atlas folder.
    mem
        GB per node.
    refine
        Refine the anatomical registration on the map
        (:class:`~qsmbids.interfaces.registration.RefineOnSusceptibility`); otherwise
        the anatomical labels and chains are used as they are.
    name
        Workflow name.

    Returns
    -------
    nipype.pipeline.engine.Workflow
        ``inputnode`` :data:`REGIONAL_INPUTS`: the map (ppm) and its mask, and the
        anatomical registration's outputs; ``outputnode`` :data:`REGIONAL_OUTPUTS`: the
        labels and chains used (refined or not), the map in template space, the
        regional table and the provenance records (``prov_refine`` only when refined).
    """
    threads = settings.omp_nthreads
    atlas = str(atlas_dir)
    wf = pe.Workflow(name=name)
    inputnode = pe.Node(IdentityInterface(fields=list(REGIONAL_INPUTS)), name="inputnode")
    outputnode = pe.Node(IdentityInterface(fields=list(REGIONAL_OUTPUTS)), name="outputnode")
    # one thread: a 1-2 s resampling that then fits beside the vein images instead of
    # waiting for two free slots at the end of the run (2.2 s saved at 1 mm, 2 x 2)
    warp = pe.Node(WarpToTemplate(atlas_dir=atlas, num_threads=1),
                   name="warp_to_template", mem_gb=mem["warp"])
    stats = pe.Node(RegionalStats(atlas_dir=atlas), name="regional_stats",
                    mem_gb=mem["stats"])
    if refine:
        labels = pe.Node(RefineOnSusceptibility(atlas_dir=atlas,
                                                deterministic=settings.deterministic,
                                                num_threads=threads),
                         name="refine_on_chi", mem_gb=mem["reg"], n_procs=threads)
        wf.connect([
            (inputnode, labels, [(f, f) for f in ("chi", "mask", "xfm_files",
                                                  "inverse_xfm_files", "inverse_invert",
                                                  "anatomy", "metric")]
             + [("dseg", "anatomical_dseg")]),
            (labels, outputnode, [("provenance", "prov_refine")]),
        ])
    else:
        labels = inputnode
    wf.connect([
        (inputnode, warp, [("chi", "in_file")]),
        (labels, warp, [("inverse_xfm_files", "xfm_files"), ("inverse_invert", "invert")]),
        (inputnode, stats, [("chi", "chi"), ("mask", "mask")]),
        (labels, stats, [("dseg", "dseg")]),
        (labels, outputnode, [(f, f) for f in ("dseg", "dseg_tsv", "xfm_files",
                                               "inverse_xfm_files")]),
        (warp, outputnode, [("out_file", "chi_template")]),
        (stats, outputnode, [("table", "regions"), ("provenance", "prov_stats")]),
    ])
    return wf
