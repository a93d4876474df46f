"""TV solved to convergence in cubes around the veins: their susceptibility and their mask.

The delivered map stops TV-ADMM early (a relative update of 0.02, about 30 iterations):
that serves the map as a whole, but the veins, the map's strongest sources, are still
swinging then (on a qsm-forward head at 1 mm with blood of a known oxygenation, at peak
SNR 30, the map read the veins along B0 0.083 ppm low and those across 0.018 high, the
converged cubes 0.013 and 0.011 low), and a vein thinner than a few voxels along B0,
whose field lies only inside it, is smoothed below half the blood's value in voxels it
half fills (a 1.5 mm vein read 0.09-0.10 ppm low, within 0.01 ppm converged).
Converging the whole map costs 25-35 s at 1 mm.
Here the same problem (same TV weight, data weight and B0 direction) is solved to
convergence only in cubes around the veins: inside each cube the data are fitted over
the brain, and the free sources of the solver's padding around it (``free_outside``: no
TV, no data; Liu et al., MRM 2017, doi:10.1002/mrm.26331) take up the field of
everything outside the cube, so the truncation does not bend the inside (a 3 or 10 mm
shell of the field around the cube changed nothing; half-edges of 10, 16 and 24 mm gave
the same veins within 0.006 ppm). Each cube's susceptibility has an arbitrary mean; it
is brought to the delivered map's level by the median difference over the cube's brain
voxels outside the veins. The cubes are independent, so they are solved side by side on
a thread pool (each solve's FFTs on one thread: two 21-voxel cubes at once take 0.06 s
per cube on two cores, one after the other 0.11 s).
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import scipy.ndimage as ndi

from qsmbids.recon.inversion.tv_admm import tv_admm

#: half the edge of a cube whose data are fitted, mm
HALF_WIDTH_MM = 10.0
#: at most this many cubes (placed where they cover the most wanted voxels first)
MAX_BOXES = 48
#: relative-update tolerance of the cube solves (0.002: converged; 0.005 left the
#: along-B0 vein 0.013 ppm further off, and for the cubes placed for the vein mask
#: alone it saved a third of the iterations on the qsm-forward vein head at 1 mm but
#: lowered the probe veins' least Dice from 0.92 to 0.78)
TOLERANCE = 2e-3
MAX_ITERATIONS = 400

Box = tuple[slice, slice, slice]


@dataclass(frozen=True)
class ConvergedCubes:
    """The delivered map with TV solved to convergence pasted into cubes.

    Attributes
    ----------
    chi_ppm
        float32, (x, y, z), ppm: the converged susceptibility in the brain voxels of the
        cubes (each voxel from the cube it lies deepest in), the delivered map elsewhere,
        on the delivered map's level.
    covered
        bool, (x, y, z): the brain voxels inside a cube.
    boxes
        The cubes, in the order they were placed.
    iterations
        TV-ADMM iterations per cube.
    """

    chi_ppm: np.ndarray
    covered: np.ndarray
    boxes: tuple[Box, ...]
    iterations: tuple[int, ...]

    @property
    def n_boxes(self) -> int:
        """Cubes solved."""
        return len(self.boxes)


def place_cubes(wanted: Sequence[np.ndarray], half_width_vox: Sequence[int],
                max_boxes: int = MAX_BOXES) -> list[tuple[Box, int]]:
    """Cubes that cover the ``wanted`` voxels, the first mask's before the next's.

    Greedy cover: each cube is centred on the wanted voxel whose cube holds the most
    wanted voxels not yet covered (ties: the first voxel in C order), until every
    wanted voxel is covered or ``max_boxes`` cubes are placed.

    Parameters
    ----------
    wanted
        Masks (bool, (x, y, z), one shape), in order of priority.
    half_width_vox
        Cube half-edge per axis, voxels (the cube is ``2 h + 1`` voxels, clipped at the
        array's edge).
    max_boxes
        The most cubes.

    Returns
    -------
    list of (tuple of slice, int)
        Each cube and the index in ``wanted`` of the mask it was placed for.
    """
    half = np.asarray(half_width_vox, int)
    size = tuple(2 * half + 1)
    boxes: list[tuple[Box, int]] = []
    union = np.logical_or.reduce([np.asarray(m, bool) for m in wanted]) if wanted else None
    found = ndi.find_objects(union.astype(np.uint8)) if union is not None else []
    if not found or found[0] is None:
        return boxes
    # every cube is centred on a wanted voxel, and outside the wanted voxels' bounding
    # box there is nothing to count: the search runs on that box
    crop = found[0]
    origin = np.asarray([s.start for s in crop])
    shape = np.asarray(union.shape)
    covered = np.zeros(union[crop].shape, bool)

    def window(lo: np.ndarray, hi: np.ndarray, limit: np.ndarray) -> Box:
        lo, hi = np.maximum(lo, 0), np.minimum(hi, limit)
        return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))

    for level, mask in enumerate(wanted):
        left = np.asarray(mask, bool)[crop] & ~covered
        # how many wanted voxels the cube centred on each voxel would cover (then only
        # recomputed near each new cube: nothing farther than a half-edge changes)
        density = ndi.uniform_filter(left.astype(np.float32), size=size, mode="constant")
        while left.any() and len(boxes) < max_boxes:
            centre = np.asarray(np.unravel_index(
                np.argmax(np.where(left, density, -1.0)), left.shape))
            boxes.append((window(centre + origin - half, centre + origin + half + 1, shape),
                          level))
            here = window(centre - half, centre + half + 1, np.asarray(left.shape))
            covered[here] = True
            left[here] = False
            lo, hi = centre - 2 * half, centre + 2 * half + 1
            near = window(lo, hi, np.asarray(left.shape))
            source = window(lo - half, hi + half, np.asarray(left.shape))
            local = ndi.uniform_filter(left[source].astype(np.float32), size=size,
                                       mode="constant")
            inner = tuple(slice(n.start - s.start, n.stop - s.start)
                          for n, s in zip(near, source, strict=True))
            density[near] = local[inner]
    return boxes


def _depth_in_box(box: Box) -> np.ndarray:
    """Voxels from each voxel of ``box`` to its nearest face (1 on the faces)."""
    edges = [np.minimum(np.arange(s.stop - s.start) + 1, np.arange(s.stop - s.start, 0, -1))
             for s in box]
    return np.minimum(np.minimum(edges[0][:, None, None], edges[1][None, :, None]),
                      edges[2][None, None, :]).astype(np.int16)


def converged_cubes(field_ppm: np.ndarray, mask: np.ndarray, map_ppm: np.ndarray,
                    veins: np.ndarray, wanted: Sequence[np.ndarray],
                    voxel_size_mm: Sequence[float], b0_direction: Sequence[float], *,
                    lam: float, weight: np.ndarray | None = None,
                    half_width_mm: float = HALF_WIDTH_MM, max_boxes: int = MAX_BOXES,
                    tol: float = TOLERANCE, max_iter: int = MAX_ITERATIONS,
                    workers: int = 1) -> ConvergedCubes:
    """Solve TV to convergence in cubes that cover ``wanted`` and paste it into the map.

    Parameters
    ----------
    field_ppm
        Local field, ppm, (x, y, z): what the delivered map was inverted from.
    mask
        Brain mask of that inversion (bool), (x, y, z).
    map_ppm
        The delivered susceptibility map, ppm, (x, y, z), on the level the result is
        wanted on (e.g. referenced to CSF).
    veins
        Vein mask (bool), (x, y, z): left out when levelling a cube to ``map_ppm``.
    wanted
        The voxels to cover, masks in order of priority (:func:`place_cubes`), e.g. the
        large veins' centre lines, then every vein voxel.
    voxel_size_mm, b0_direction
        Voxel edges (mm) and the B0 direction in the voxel frame.
    lam, weight
        The delivered inversion's TV weight and data weight (x, y, z), see
        :func:`qsmbids.recon.inversion.tv_admm.tv_admm`.
    half_width_mm, max_boxes, tol, max_iter
        Cube half-edge (mm), the most cubes, and each solver's stop.
    workers
        Cubes solved at once (each on one thread).

    Returns
    -------
    ConvergedCubes
    """
    voxel = np.asarray(voxel_size_mm, float)
    mask = np.asarray(mask, bool)
    veins = np.asarray(veins, bool)
    half = np.maximum(np.rint(half_width_mm / voxel).astype(int), 1)
    boxes = [box for box, _ in place_cubes([np.asarray(w, bool) & mask for w in wanted],
                                           half, max_boxes)]

    def solve(box: Box) -> tuple[np.ndarray, int]:
        result = tv_admm(field_ppm[box], mask[box], voxel, b0_direction, lam=lam,
                         weight=None if weight is None else weight[box], free_outside=True,
                         tol=tol, max_iter=max_iter, workers=1)
        solved = result.chi
        tissue = mask[box] & ~veins[box]
        level = float(np.median(map_ppm[box][tissue] - solved[tissue])) if tissue.any() \
            else 0.0
        return solved + np.float32(level), int(result.info.get("iterations", max_iter))

    chi = np.array(map_ppm, np.float32, copy=True)
    covered = np.zeros(mask.shape, bool)
    deepest = np.zeros(mask.shape, np.int16)
    iterations: list[int] = []
    with ThreadPoolExecutor(max(1, min(int(workers), len(boxes) or 1))) as pool:
        # taken in placement order, so the result does not depend on which ends first
        for box, (solved, n) in zip(boxes, pool.map(solve, boxes), strict=True):
            depth = _depth_in_box(box)
            take = mask[box] & (depth > deepest[box])
            chi[box][take] = solved[take]
            deepest[box][take] = depth[take]
            covered[box] |= mask[box]
            iterations.append(n)
    return ConvergedCubes(chi, covered, tuple(boxes), tuple(iterations))


@dataclass(frozen=True)
class ConvergedSolve:
    """The delivered TV inversion's data and settings, to solve again in cubes.

    Attributes
    ----------
    field_ppm, mask
        Local field (ppm) and the inversion's mask, (x, y, z).
    b0_direction
        B0 direction in the voxel frame.
    lam
        TV weight.
    weight
        Data weight (x, y, z), or None.
    workers
        Cubes solved at once.
    """

    field_ppm: np.ndarray
    mask: np.ndarray
    b0_direction: tuple[float, float, float]
    lam: float
    weight: np.ndarray | None = None
    workers: int = 1

    def cubes(self, map_ppm: np.ndarray, veins: np.ndarray, wanted: Sequence[np.ndarray],
              voxel_size_mm: Sequence[float], *, max_boxes: int = MAX_BOXES
              ) -> ConvergedCubes:
        """:func:`converged_cubes` with these data and settings."""
        return converged_cubes(self.field_ppm, self.mask, map_ppm, veins, wanted,
                               voxel_size_mm, self.b0_direction, lam=self.lam,
                               weight=self.weight, max_boxes=max_boxes,
                               workers=self.workers)


def solve_from_provenance(step: dict, field_ppm: np.ndarray, mask: np.ndarray,
                          voxel_size_mm: Sequence[float], workers: int = 1, *,
                          depth_mm: np.ndarray | None = None) -> ConvergedSolve | None:
    """The :class:`ConvergedSolve` of a ``dipole inversion`` provenance step (its
    ``Parameters``: ``lam``, ``B0Direction``, ``EdgeRampMm``, ``EdgeWeightFloor``), or
    None when the inversion was not TV (nothing to converge further). ``depth_mm``: the
    mask's :func:`~qsmbids.recon.masking.distance_to_outside`, when computed already
    (the data weight's edge ramp is made from it)."""
    from qsmbids.recon.reliability import edge_weight

    if step.get("Algorithm") != "tv":
        return None
    params = step["Parameters"]
    ramp, floor = float(params.get("EdgeRampMm", 0.0)), float(params.get("EdgeWeightFloor", 1.0))
    weight = edge_weight(mask, voxel_size_mm, floor, ramp, depth_mm=depth_mm) \
        if ramp > 0 else None
    b0 = tuple(float(v) for v in params.get("b0_direction", params["B0Direction"]))
    return ConvergedSolve(np.asarray(field_ppm, np.float32), np.asarray(mask, bool), b0,
                          float(params["lam"]), weight, max(1, int(workers or 1)))
