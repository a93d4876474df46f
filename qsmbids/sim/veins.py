"""Veins of known oxygenation for the head phantom: probe veins along and across B0.

:class:`VenousBlood` sets the susceptibility of every vein of the phantom (its sinuses
and internal cerebral veins too) from an oxygen extraction fraction and a haematocrit
(:func:`qsmbids.recon.veins.venous_chi_from_oef`), and :func:`probe_veins` adds
straight medullary-like veins in the white matter, 0.5 to 4 mm wide: six running
superior-inferior in the right hemisphere (along B0 for an axial acquisition) and six
running left-right in the left hemisphere (across B0), 12 mm apart, so that the vein
mask, the venous susceptibility and the OEF can be scored per diameter and orientation.

Positions are world millimetres of the phantom's MNI-like RAS+ frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from qsmbids.recon.veins import DEFAULT_HEMATOCRIT, venous_chi_from_oef
from qsmbids.sim.shapes import Tube

#: diameters of the probe veins, mm
PROBE_VEIN_DIAMETERS_MM = (0.5, 1.0, 1.5, 2.0, 3.0, 4.0)
#: anterior-posterior positions of the probe veins, mm (one per diameter); off the
#: 1, 2 and 3 mm grids' voxel centres and edges, so that no vein sits symmetrically
#: on a voxel (where its neighbours would be filled exactly as much as each other)
_Y_MM = (-39.7, -27.7, -15.7, -3.7, 8.3, 20.3)
#: superior-inferior veins: x and z extent (right hemisphere, centrum semiovale)
_ALONG_X_MM, _ALONG_Z_MM = 28.2, (26.0, 54.0)
#: left-right veins: x extent and height (left hemisphere)
_ACROSS_X_MM, _ACROSS_Z_MM = (-12.0, -40.0), 40.2


@dataclass(frozen=True)
class VenousBlood:
    """Oxygenation of the phantom's venous blood.

    Attributes
    ----------
    oef
        Oxygen extraction fraction (0..1).
    hematocrit
        Haematocrit (0..1).
    """

    oef: float = 0.35
    hematocrit: float = DEFAULT_HEMATOCRIT

    @property
    def chi_ppm(self) -> float:
        """Susceptibility of the venous blood relative to water, ppm."""
        return venous_chi_from_oef(self.oef, self.hematocrit)


@dataclass(frozen=True)
class ProbeVein:
    """One straight probe vein.

    Attributes
    ----------
    name
        ``vein-<diameter>mm-<orientation>`` (e.g. ``vein-1.5mm-along``).
    diameter_mm
        Diameter, mm.
    orientation
        ``"along"`` (superior-inferior: parallel to B0 in an axial acquisition) or
        ``"across"`` (left-right: perpendicular to it).
    shape
        The vein as a :class:`~qsmbids.sim.shapes.Tube`.
    """

    name: str
    diameter_mm: float
    orientation: str
    shape: Tube


def probe_veins(shift_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
                ) -> tuple[ProbeVein, ...]:
    """The twelve probe veins (six diameters x along / across B0), moved by ``shift_mm``
    (x, y, z; a fraction of a voxel puts them elsewhere against the grid: a 1.5 mm vein
    fills one voxel per slice at least half at one position and two at another)."""
    dx, dy, dz = (float(v) for v in shift_mm)
    veins = []
    for diameter, y in zip(PROBE_VEIN_DIAMETERS_MM, _Y_MM, strict=True):
        r, y = diameter / 2, y + dy
        x, z0, z1 = _ALONG_X_MM + dx, _ALONG_Z_MM[0] + dz, _ALONG_Z_MM[1] + dz
        along = Tube(((x, y, z0), (x, y, z1)), (r, r))
        x0, x1, z = _ACROSS_X_MM[0] + dx, _ACROSS_X_MM[1] + dx, _ACROSS_Z_MM + dz
        across = Tube(((x0, y, z), (x1, y, z)), (r, r))
        veins.append(ProbeVein(f"vein-{diameter:g}mm-along", diameter, "along", along))
        veins.append(ProbeVein(f"vein-{diameter:g}mm-across", diameter, "across", across))
    return tuple(veins)


def probe_vein_labels(shape: tuple[int, int, int], affine: np.ndarray,
                      veins: tuple[ProbeVein, ...] | None = None, *,
                      supersample: int = 8) -> np.ndarray:
    """Which probe vein fills at least half of each voxel (0: none; k: ``veins[k - 1]``).

    The filled fraction is counted on ``supersample ** 3`` points spread evenly over
    each voxel, so a vein's voxels are those at least half blood whatever the
    vein's position against the grid.

    Parameters
    ----------
    shape, affine
        The voxel grid (x, y, z) and its voxel-to-world (RAS+, mm) matrix.
    veins
        Default: :func:`probe_veins`.
    supersample
        Points per voxel edge.

    Returns
    -------
    numpy.ndarray
        int16, ``shape``.
    """
    veins = probe_veins() if veins is None else veins
    affine = np.asarray(affine, float)
    inverse = np.linalg.inv(affine)
    out = np.zeros(shape, np.int16)
    offsets = (np.arange(supersample) + 0.5) / supersample - 0.5
    for k, vein in enumerate(veins, start=1):
        lo, hi = vein.shape.bbox()
        corners = np.array([[a, b, c, 1.0] for a in (lo[0], hi[0]) for b in (lo[1], hi[1])
                            for c in (lo[2], hi[2])])
        index = (inverse @ corners.T)[:3]
        start = np.clip(np.floor(index.min(1)).astype(int) - 1, 0, None)
        stop = np.minimum(np.ceil(index.max(1)).astype(int) + 2, shape)
        if np.any(stop <= start):
            continue
        grid = np.stack(np.meshgrid(*[np.arange(a, b) for a, b in zip(start, stop, strict=True)],
                                    indexing="ij"), axis=-1).astype(float)
        filled = np.zeros(grid.shape[:3], np.float32)
        for dx in offsets:
            for dy in offsets:
                for dz in offsets:
                    points = grid + np.array((dx, dy, dz))
                    world = points @ affine[:3, :3].T + affine[:3, 3]
                    inside = vein.shape.sdf(*np.moveaxis(world.astype(np.float32), -1, 0)) < 0
                    filled += inside
        box = tuple(slice(a, b) for a, b in zip(start, stop, strict=True))
        out[box][filled >= 0.5 * supersample**3] = k
    return out
