"""The registration presets' schedules and the voxel sizes the susceptibility
refinement runs on (pure data: no ANTs import, so building a workflow stays quick).

Each preset (``--registration``) is one :class:`Schedule`; the command line, the
settings and the nipype traits offer :data:`PRESETS`, derived from
:data:`SCHEDULES`, so a preset is defined in this one place.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Schedule:
    """Multi-resolution schedule of one preset (ANTs ``--shrink-factors`` etc.).

    Attributes
    ----------
    working_voxel_mm
        Voxel size the registration runs at, mm (``None``: the target's own, but not
        finer than the template's). Shrink factors apply on this grid.
    linear_shrink, linear_smooth, linear_iterations
        Rigid and affine stages: shrink factors, smoothing sigmas (voxels) and
        iterations per level. They end one level above the SyN's finest (and the
        T1w-to-magnitude rigid stage there too): with every voxel sampled, the finest
        level (2 mm for ``fast``) cost 12 s at 1 mm (unrefined path 27 -> 39 s) and 9 s
        on the T1w path, and the SyN works on that level anyway.
    linear_sampling
        Fraction of the voxels the linear stages' mutual information samples (ANTs'
        jittered regular grid, drawn from the random seed); ``None``: every voxel.
    syn_shrink, syn_smooth
        SyN stage levels.
    syn_iterations
        SyN iterations per level, per metric.
    syn_convergence
        Relative change of the metric over 10 iterations below which a level stops.
    cc_radius
        Neighbourhood radius of the CC metric, voxels.
    syn_step
        SyN gradient step (``SyN[step,3,0]``).
    """

    working_voxel_mm: float | None
    linear_shrink: tuple[int, ...]
    linear_smooth: tuple[float, ...]
    linear_iterations: tuple[int, ...]
    linear_sampling: float | None
    syn_shrink: tuple[int, ...]
    syn_smooth: tuple[float, ...]
    syn_iterations: dict[str, tuple[int, ...]]
    syn_convergence: float
    cc_radius: int
    syn_step: float


#: The schedules of the presets. ``fast`` was tuned on the phantom at 1 mm and timed on
#: the MNI template at 1 mm (2 cores). Its final SyN level (2 mm, about 2 s per CC
#: iteration on a brain-sized box) dominates the cost: with gradient step 0.2 and 10
#: iterations there it takes 45 s instead of 60 s (step 0.1, 20 iterations) for the same
#: phantom Dice (SN 0.77 vs 0.78, pallidum 0.93 vs 0.93). A 2.5 mm working grid
#: would halve the time but costs the small nuclei (SN 0.73-0.75) and a 2 mm target its
#: own resolution. The linear stages' mutual information uses every voxel: with 25 %
#: jittered sampling the result hung on the random seed, and on the 3 mm Philips head
#: (benchmarks/bench_accuracy.py) four seeds moved the nigra-minus-putamen margin
#: between -0.0001 and +0.0066 ppm and the two exports of the same head disagreed by
#: 0.005 ppm; with every voxel (and the linear levels ending at 4 mm) both exports give
#: the same order on every seed, nigra 0.097 against putamen 0.095-0.096 ppm. Every
#: voxel at 4 mm costs no more than 25 % of them down to 2 mm did (Schedule's
#: ``linear_*`` above: at 1 mm the anatomy-only path 27 -> 24 s, with a T1w 29 -> 31 s).
SCHEDULES: dict[str, Schedule] = {
    "fast": Schedule(
        working_voxel_mm=2.0,
        linear_shrink=(4, 2), linear_smooth=(2, 1), linear_iterations=(500, 250),
        linear_sampling=None,
        syn_shrink=(4, 2, 1), syn_smooth=(2, 1, 0),
        syn_iterations={"CC": (100, 50, 10), "mattes": (100, 70, 20)},
        syn_convergence=1e-5, cc_radius=1, syn_step=0.2),
    "accurate": Schedule(
        working_voxel_mm=None,
        linear_shrink=(8, 4, 2), linear_smooth=(3, 2, 1),
        linear_iterations=(1000, 500, 250), linear_sampling=None,
        syn_shrink=(8, 4, 2, 1), syn_smooth=(3, 2, 1, 0),
        syn_iterations={"CC": (100, 70, 50, 20), "mattes": (100, 70, 50, 20)},
        syn_convergence=1e-6, cc_radius=2, syn_step=0.1),
}

#: registration preset names (the keys of :data:`SCHEDULES`)
PRESETS = tuple(SCHEDULES)


#: coarsest voxel edge (mm) the refinement runs on. Measured on qsm-forward MNI subjects
#: (benchmarks/bench_nuclei_registration.py, magnitude path, two subjects): at 2 mm it
#: raises every nucleus's Dice (pallidum 0.68 -> 0.90) and lowers most regional-mean
#: errors; at 3 mm the Dice still rises, but the labels grow over the blurred nuclei
#: (red nucleus 15 -> 23 voxels against 15 true) and the error of the true regional mean
#: of the nigra rises from 0.004/0.001 to 0.012/0.021 ppm and the red nucleus's from
#: 0.006/0.004 to 0.016/0.018 ppm; on the 3 mm Philips head it put the putamen above
#: the nigra and red nucleus. Re-measured with the template painted with the subject's
#: values (:mod:`qsmbids.atlas.subject_template`) and
#: :data:`qsmbids.registration.refine.FIELD_SMOOTHING_MM2`: at 3 mm
#: the 30-year-old gains everywhere, but the 70-year-old's nigra and red nucleus are
#: still 0.010 and 0.012 ppm off (0.002 and 0.004 without the refinement)
MAX_VOXEL_MM = 2.5


def refinement_skip_reason(voxel_size_mm) -> str | None:
    """Why the refinement should not run on a map of ``voxel_size_mm`` (mm, per axis),
    or None when it should (every edge at most :data:`MAX_VOXEL_MM`)."""
    edges = np.asarray(voxel_size_mm, float)
    if np.max(edges) <= MAX_VOXEL_MM:
        return None
    size = " x ".join(f"{v:.3g}" for v in edges)
    return (f"voxels of {size} mm are coarser than the {MAX_VOXEL_MM:g} mm the "
            "susceptibility refinement is measured to help at; the anatomical registration "
            "places the atlas")
