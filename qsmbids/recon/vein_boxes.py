"""The large veins' susceptibility from TV solved to convergence in boxes around them.

The delivered map stops TV-ADMM early (a relative update of 0.02, about 30 iterations):
that serves the map as a whole, but the veins, the map's strongest sources, are still
swinging then (on a qsm-forward head at 1 mm with blood of a known oxygenation, at peak
SNR 30, the map read the veins along B0 0.083 ppm low and those across 0.018 high, the
converged cubes 0.013 and 0.011 low; at SNR 80, +0.006 and -0.019 against -0.008 and
-0.004). Converging the whole map costs 25-35 s at 1 mm.
Here the same problem (same TV weight, data weight and B0 direction) is solved to
convergence only in a few cubes around the veins' centre lines: inside each cube the
data are fitted over the brain, and the free sources of the solver's padding around it
(``free_outside``: no TV, no data; Liu et al., MRM 2017, doi:10.1002/mrm.26331) take up
the field of everything outside the cube, so the truncation does not bend the inside
(a 3 or 10 mm shell of the field around the cube changed nothing). Each cube's
susceptibility has an arbitrary mean; it is brought to the delivered map's level by the
median difference over the cube's brain voxels outside the veins.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.ndimage as ndi

from qsmbids.recon.inversion.tv_admm import tv_admm

#: half the edge of the cube whose data are fitted, mm (the prototype on the qsm-forward
#: vein head gave the same values within 0.006 ppm for half-widths of 10, 16 and 24 mm)
HALF_WIDTH_MM = 16.0
#: at most this many cubes (placed where they cover the most centre-line voxels first)
MAX_BOXES = 8
#: relative-update tolerance of the cube solves (0.002: converged; 0.005 left the
#: along-B0 vein 0.013 ppm further off)
TOLERANCE = 2e-3
MAX_ITERATIONS = 400


@dataclass(frozen=True)
class BoxedValues:
    """Converged susceptibility at the covered centre-line voxels.

    Attributes
    ----------
    values_ppm
        One value per covered centre-line voxel, ppm, on the delivered map's level.
    n_boxes
        Cubes solved.
    iterations
        TV-ADMM iterations per cube.
    coverage
        Fraction of the centre-line voxels the cubes covered.
    """

    values_ppm: np.ndarray
    n_boxes: int
    iterations: tuple[int, ...]
    coverage: float


def converged_centre_line_values(
    field_ppm: np.ndarray,
    mask: np.ndarray,
    centre_line: np.ndarray,
    veins: np.ndarray,
    map_ppm: np.ndarray,
    voxel_size_mm: Sequence[float],
    b0_direction: Sequence[float],
    *,
    lam: float,
    weight: np.ndarray | None = None,
    half_width_mm: float = HALF_WIDTH_MM,
    max_boxes: int = MAX_BOXES,
    tol: float = TOLERANCE,
    max_iter: int = MAX_ITERATIONS,
    workers: int | None = None,
) -> BoxedValues:
    """Solve TV to convergence in cubes around ``centre_line`` and read it there.

    Parameters
    ----------
    field_ppm
        Local field, ppm, (x, y, z): what the delivered map was inverted from.
    mask
        Brain mask of that inversion (bool), (x, y, z).
    centre_line
        The voxels to read (bool), (x, y, z): the large veins' centre lines
        (:func:`qsmbids.recon.veins.centre_lines`).
    veins
        Vein mask (bool), (x, y, z): left out when levelling a cube to ``map_ppm``.
    map_ppm
        The delivered susceptibility map, ppm, (x, y, z), on the level the values are
        wanted on (e.g. referenced to CSF).
    voxel_size_mm, b0_direction
        Voxel edges (mm) and the B0 direction in the voxel frame.
    lam, weight
        The delivered inversion's TV weight and data weight (x, y, z), see
        :func:`qsmbids.recon.inversion.tv_admm.tv_admm`.
    half_width_mm, max_boxes, tol, max_iter
        Cube half-edge (mm), the most cubes, and the solver's stop.
    workers
        FFT and kernel threads.

    Returns
    -------
    BoxedValues
    """
    voxel = np.asarray(voxel_size_mm, float)
    half = np.maximum(np.rint(half_width_mm / voxel).astype(int), 1)
    shape = np.asarray(mask.shape)
    left = np.asarray(centre_line, bool) & mask
    total = int(left.sum())
    values: list[np.ndarray] = []
    iterations: list[int] = []
    while left.any() and len(iterations) < max_boxes:
        # the cube that covers the most centre-line voxels still left
        density = ndi.uniform_filter(left.astype(np.float32), size=tuple(2 * half + 1),
                                     mode="constant")
        centre = np.asarray(np.unravel_index(np.argmax(np.where(left, density, -1)),
                                             mask.shape))
        lo, hi = np.maximum(centre - half, 0), np.minimum(centre + half + 1, shape)
        box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
        fitted = mask[box]
        result = tv_admm(field_ppm[box], fitted, voxel, b0_direction, lam=lam,
                         weight=None if weight is None else weight[box],
                         free_outside=True, tol=tol, max_iter=max_iter, workers=workers)
        iterations.append(int(result.info.get("iterations", max_iter)))
        solved = result.chi
        tissue = fitted & ~veins[box]
        level = float(np.median(map_ppm[box][tissue] - solved[tissue])) if tissue.any() else 0.0
        read = left[box] & fitted
        values.append(solved[read] + np.float32(level))
        left[box] &= ~read
    found = np.concatenate(values) if values else np.zeros(0, np.float32)
    return BoxedValues(found.astype(np.float32), len(iterations), tuple(iterations),
                       float(found.size / total) if total else float("nan"))


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
        Threads.
    """

    field_ppm: np.ndarray
    mask: np.ndarray
    b0_direction: tuple[float, float, float]
    lam: float
    weight: np.ndarray | None = None
    workers: int | None = None

    def values(self, centre_line: np.ndarray, veins: np.ndarray, map_ppm: np.ndarray,
               voxel_size_mm: Sequence[float]) -> BoxedValues:
        """:func:`converged_centre_line_values` with these data and settings."""
        return converged_centre_line_values(
            self.field_ppm, self.mask, centre_line, veins, map_ppm, voxel_size_mm,
            self.b0_direction, lam=self.lam, weight=self.weight, workers=self.workers)


def solve_from_provenance(step: dict, field_ppm: np.ndarray, mask: np.ndarray,
                          voxel_size_mm: Sequence[float], workers: int | None = None, *,
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
                          float(params["lam"]), weight, workers)
