"""Test helpers for the vein tests: straight tubes painted by their partial volume and
the blood and tissue values the vein phantoms use."""

from __future__ import annotations

import numpy as np

from qsmbids.recon import veins

#: blood at OEF 0.35 and haematocrit 0.42, ppm relative to water
BLOOD_PPM = veins.venous_chi_from_oef(0.35, 0.42)
#: the tissue around the phantoms' veins, ppm
TISSUE_PPM = -0.02


def tubes(shape, tubes, supersample: int = 6) -> np.ndarray:
    """Blood fraction of each voxel (1 mm grid) for straight tubes given as
    (axis, (centre a, centre b) of the two other axes in voxels, diameter mm)."""
    fraction = np.zeros(shape, np.float32)
    offsets = (np.arange(supersample) + 0.5) / supersample - 0.5
    grid = np.indices(shape).astype(np.float32)
    for axis, centre, diameter in tubes:
        others = [a for a in range(3) if a != axis]
        inside = np.zeros(shape, np.float32)
        for du in offsets:
            for dv in offsets:
                r2 = ((grid[others[0]] + du - centre[0]) ** 2
                      + (grid[others[1]] + dv - centre[1]) ** 2)
                inside += r2 < (diameter / 2) ** 2
        ends = (grid[axis] >= 6) & (grid[axis] < shape[axis] - 6)
        fraction = np.maximum(fraction, inside / supersample**2 * ends)
    return fraction
