"""The vein mask and the veins' susceptibility on TV solved to convergence around them.

The delivered map stops TV early, which reads thin veins along B0 low (a 1.5 mm vein's
half-filled voxels 0.09-0.10 ppm low on a qsm-forward head at 1 mm): below half the
blood's value, so the vein mask, grown to half-filled voxels, loses most of them where
such a vein half fills two voxels per slice instead of filling one (Dice 0.25 and 0.67
at two positions against the grid, 1.00 at a third). So the veins are found twice:
first on the delivered map, then, after TV is solved to convergence in cubes around the
first mask (:mod:`qsmbids.recon.vein_boxes`: the large veins' centre lines first, then
every vein voxel, up to a cap), on the map with those cubes pasted in, from the same
seeds. The venous susceptibility is read on the converged values.

Arrays are (x, y, z) voxel order; susceptibility in ppm, lengths in mm.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from qsmbids.recon import veins as vein_images
from qsmbids.recon.masking import distance_to_outside
from qsmbids.recon.vein_boxes import MAX_BOXES, ConvergedCubes, ConvergedSolve

#: the fill fraction (:func:`qsmbids.recon.veins.vein_mask`) of the voxels the cubes
#: also cover: where the map reads a vein at least a quarter of the blood
MAYBE_FILL_FRACTION = 0.25


@dataclass(frozen=True)
class FoundVeins:
    """A vein mask and the susceptibility it was grown on.

    Attributes
    ----------
    mask
        bool, (x, y, z).
    chi_ppm
        float32, (x, y, z), ppm, on the level of the map given: the map with the
        converged cubes pasted in (the map itself without a solve).
    cubes
        The converged cubes, or None (no solve given).
    first_mask
        bool, (x, y, z): the mask found on the delivered map, before the cubes (``mask``
        itself without a solve).
    """

    mask: np.ndarray
    chi_ppm: np.ndarray
    cubes: ConvergedCubes | None
    first_mask: np.ndarray

    @property
    def mask_coverage(self) -> float:
        """Fraction of the mask's voxels inside a converged cube (0 without cubes)."""
        if self.cubes is None or not self.mask.any():
            return 0.0
        return float(np.count_nonzero(self.mask & self.cubes.covered) / self.mask.sum())


def find_veins(chi_ppm: np.ndarray, brain_mask: np.ndarray, voxel_size_mm: Sequence[float],
               *, solve: ConvergedSolve | None = None, exclude: np.ndarray | None = None,
               vesselness_map: np.ndarray | None = None, depth_mm: np.ndarray | None = None,
               min_diameter_mm: float = vein_images.DEFAULT_MEASURE_DIAMETER_MM,
               min_depth_mm: float = vein_images.DEFAULT_MEASURE_DEPTH_MM,
               max_boxes: int = MAX_BOXES) -> FoundVeins:
    """The vein mask, grown again on TV converged around the veins when ``solve`` is given.

    Parameters
    ----------
    chi_ppm
        The delivered susceptibility map, ppm, (x, y, z), on the level the venous
        susceptibility is wanted on (e.g. relative to CSF).
    brain_mask
        Brain mask (bool), (x, y, z).
    voxel_size_mm
        Voxel edge lengths, mm.
    solve
        The map's TV inversion (:func:`qsmbids.recon.vein_boxes.solve_from_provenance`),
        or None: the mask found on the map alone.
    exclude, vesselness_map
        See :func:`qsmbids.recon.veins.vein_mask` (the vesselness of the delivered map
        serves both masks: it only picks the seeds).
    depth_mm
        ``distance_to_outside(brain_mask, voxel_size_mm)``, when computed already.
    min_diameter_mm, min_depth_mm
        The centre lines :func:`qsmbids.recon.veins.venous_measure` reads: the cubes
        cover them first.
    max_boxes
        The most cubes.

    Returns
    -------
    FoundVeins
    """
    chi = np.asarray(chi_ppm, np.float32)
    brain = np.asarray(brain_mask, bool)
    if depth_mm is None:
        depth_mm = distance_to_outside(brain, voxel_size_mm)
    if vesselness_map is None:
        vesselness_map = vein_images.candidate_vesselness(chi, brain, voxel_size_mm,
                                                          depth_mm=depth_mm)
    found = vein_images.vein_mask(chi, brain, voxel_size_mm, exclude=exclude,
                                  vesselness_map=vesselness_map, depth_mm=depth_mm)
    if solve is None or not found.any():
        return FoundVeins(found, chi, None, found)
    core = vein_images.centre_lines(found, voxel_size_mm, min_diameter_mm) \
        & (np.asarray(depth_mm) >= min_depth_mm)
    # where a vein may lie that the map reads below half the blood (a thin one along
    # B0 read at 60-70 % of its truth): the cubes cover it after the mask itself
    maybe = vein_images.vein_mask(chi, brain, voxel_size_mm, exclude=exclude,
                                  vesselness_map=vesselness_map, depth_mm=depth_mm,
                                  fill_fraction=MAYBE_FILL_FRACTION)
    cubes = solve.cubes(chi, found, [core, found, maybe], voxel_size_mm,
                        max_boxes=max_boxes)
    again = vein_images.vein_mask(cubes.chi_ppm, brain, voxel_size_mm, exclude=exclude,
                                  vesselness_map=vesselness_map, depth_mm=depth_mm)
    return FoundVeins(again, cubes.chi_ppm, cubes, found)
