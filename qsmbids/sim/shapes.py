"""Implicit solid shapes (approximate signed distances in mm) for building phantoms.

Every shape answers two questions:

* ``sdf(x, y, z)``: an approximate signed distance (mm, negative inside) at world
  coordinates given as equally shaped float arrays;
* ``bbox()``: the world box (lo, hi), mm, outside which the shape is certainly
  empty (possibly infinite), so a painter evaluates only a sub-block of a volume.

Distances are first-order estimates (implicit value over gradient norm), exact for
spheres and accurate near the surface, which is all that soft, band-limited edges
need. Combinations use min/max (union/intersection).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

Box = tuple[np.ndarray, np.ndarray]
_INF = np.array([np.inf] * 3)


def rotation_matrix(angles_deg: Sequence[float]) -> np.ndarray:
    """Rotation R = Rz @ Ry @ Rx from angles (deg) about the x, y and z world axes."""
    ax, ay, az = np.deg2rad(np.asarray(angles_deg, dtype=float))
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


class Shape:
    """Base class: a solid given by an approximate signed distance function."""

    def sdf(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def bbox(self) -> Box:
        return -_INF, _INF

    def parts(self) -> list[Shape]:
        """Pieces whose union is this shape (painted one by one, each in its own box)."""
        return [self]


@dataclass(frozen=True)
class Ellipsoid(Shape):
    """Superellipsoid ``sum |u_i|^p <= 1`` with optional rotation and taper.

    Parameters
    ----------
    center
        Centre (x, y, z), mm.
    semi_axes
        Semi-axes along the shape's own axes (before rotation), mm.
    angles_deg
        Rotation about the world x, y, z axes (applied x first), degrees.
    power
        2 for an ellipsoid; larger values give boxier (but still smooth) shapes.
    taper
        Relative change of the first semi-axis along the second axis: the first
        semi-axis is ``a0 * (1 + taper * v / a1)`` at local coordinate ``v`` on axis 1
        (an egg shape, e.g. a thalamus wider at the back).
    """

    center: tuple[float, float, float]
    semi_axes: tuple[float, float, float]
    angles_deg: tuple[float, float, float] = (0.0, 0.0, 0.0)
    power: float = 2.0
    taper: float = 0.0

    def _local(self, x, y, z):
        c = [np.float32(v) for v in self.center]
        dx, dy, dz = x - c[0], y - c[1], z - c[2]
        if not any(self.angles_deg):
            return [dx, dy, dz]
        rot = rotation_matrix(self.angles_deg).astype(np.float32)
        return [rot[0, i] * dx + rot[1, i] * dy + rot[2, i] * dz for i in range(3)]

    def sdf(self, x, y, z):
        local = self._local(x, y, z)
        a = [np.float32(s) for s in self.semi_axes]
        scale0 = a[0]
        if self.taper:
            scale0 = a[0] * np.clip(1 + np.float32(self.taper) * local[1] / a[1], 0.2, None)
        p = np.float32(self.power)
        u = [np.abs(local[0] / scale0), np.abs(local[1] / a[1]), np.abs(local[2] / a[2])]
        if self.power == 2.0:
            q = np.sqrt(u[0] * u[0] + u[1] * u[1] + u[2] * u[2])
            g0, g1, g2 = u[0] / scale0, u[1] / a[1], u[2] / a[2]
            grad = np.sqrt(g0 * g0 + g1 * g1 + g2 * g2)
            grad /= np.maximum(q, np.float32(1e-6))
        else:
            q = (u[0] ** p + u[1] ** p + u[2] ** p) ** (1 / p)
            qs = np.maximum(q, np.float32(1e-6)) ** (1 - p)
            grad = qs * np.sqrt(
                (u[0] ** (p - 1) / scale0) ** 2
                + (u[1] ** (p - 1) / a[1]) ** 2
                + (u[2] ** (p - 1) / a[2]) ** 2
            )
        return (q - 1) / np.maximum(grad, np.float32(1e-6))

    def bbox(self):
        reach = max(self.semi_axes) * (1 + abs(self.taper))
        c = np.asarray(self.center, float)
        return c - reach, c + reach


@dataclass(frozen=True)
class Tube(Shape):
    """Union of capsules along a polyline with linearly varying radius.

    Parameters
    ----------
    points
        Polyline vertices, mm, shape (K, 3) as a tuple of triples.
    radii
        Radius at each vertex, mm (K values).
    """

    points: tuple[tuple[float, float, float], ...]
    radii: tuple[float, ...]

    def sdf(self, x, y, z):
        pts = np.asarray(self.points, dtype=np.float32)
        out = None
        for k in range(len(pts) - 1):
            a, b = pts[k], pts[k + 1]
            ab = b - a
            length2 = np.float32(ab @ ab)
            ax, ay, az = x - a[0], y - a[1], z - a[2]
            t = np.clip((ax * ab[0] + ay * ab[1] + az * ab[2]) / length2, 0, 1)
            dist = np.sqrt((ax - t * ab[0]) ** 2 + (ay - t * ab[1]) ** 2 + (az - t * ab[2]) ** 2)
            r0, r1 = np.float32(self.radii[k]), np.float32(self.radii[k + 1])
            d = dist - (r0 + t * (r1 - r0))
            out = d if out is None else np.minimum(out, d)
        return out

    def bbox(self):
        pts = np.asarray(self.points, float)
        r = max(self.radii)
        return pts.min(0) - r, pts.max(0) + r

    def parts(self) -> list[Shape]:
        return [Tube(self.points[k:k + 2], self.radii[k:k + 2])
                for k in range(len(self.points) - 1)]


@dataclass(frozen=True)
class HeightField(Shape):
    """The region ``z >= floor(y)`` above a smooth floor (mm), e.g. a skull base.

    ``floor(y) = base + sum_k step_k * sigmoid((y - at_k) / width_k)``.
    """

    base: float
    steps: tuple[tuple[float, float, float], ...]  # (step mm, at y mm, width mm)

    def sdf(self, x, y, z):
        floor = np.full_like(y, self.base)
        for step, at, width in self.steps:
            floor += np.float32(step) / (1 + np.exp(-(y - np.float32(at)) / np.float32(width)))
        return floor - z


@dataclass(frozen=True)
class Union(Shape):
    """Points inside any of ``shapes``."""

    shapes: tuple[Shape, ...]

    def sdf(self, x, y, z):
        out = self.shapes[0].sdf(x, y, z)
        for s in self.shapes[1:]:
            out = np.minimum(out, s.sdf(x, y, z))
        return out

    def bbox(self):
        boxes = [s.bbox() for s in self.shapes]
        return np.min([b[0] for b in boxes], 0), np.max([b[1] for b in boxes], 0)

    def parts(self) -> list[Shape]:
        return [p for s in self.shapes for p in s.parts()]
