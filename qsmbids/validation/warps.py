"""Known deformations for registration proofs: an obliquely placed, smoothly deformed
copy of an image with its labels (the ground truth), and the overlap measures."""

from __future__ import annotations

from dataclasses import dataclass

import nibabel as nib
import numpy as np
from scipy import ndimage
from scipy.spatial.transform import Rotation


@dataclass(frozen=True)
class KnownDeformation:
    """An oblique placement plus a smooth deformation, as sampling coordinates.

    Attributes
    ----------
    affine, shape
        The new (subject) grid: voxel -> world (mm) and its shape (x, y, z).
    source_voxels
        (3, N) voxel coordinates in the source image that each new voxel shows
        (N = prod(shape), C order).
    """

    affine: np.ndarray
    shape: tuple[int, int, int]
    source_voxels: np.ndarray

    def apply(self, data: np.ndarray, *, order: int = 1) -> np.ndarray:
        """Resample a source-grid array (x, y, z) onto the new grid (``order`` 0 for
        labels, 1 linear)."""
        out = ndimage.map_coordinates(np.asarray(data), self.source_voxels, order=order,
                                      cval=0).reshape(self.shape)
        return out

    def image(self, data: np.ndarray, *, order: int = 1, dtype=np.float32) -> nib.Nifti1Image:
        """:meth:`apply` as a NIfTI image on the new grid."""
        img = nib.Nifti1Image(self.apply(data, order=order).astype(dtype), self.affine)
        img.header.set_xyzt_units("mm")
        return img


def known_deformation(source_affine: np.ndarray, source_shape, *,
                      angles_deg=(12.0, -8.0, 5.0), shift_mm=(4.0, -3.0, 2.0),
                      amplitude_mm: float = 3.0, smooth_mm: float = 12.0,
                      voxel_size: float | None = None, seed: int = 0) -> KnownDeformation:
    """A deformed, obliquely positioned grid over a source image (the ground truth).

    The new grid's axes are rotated by ``angles_deg`` (xyz Euler, degrees) about the
    source centre and shifted by ``shift_mm``; each of its voxels at world point x
    shows the source at x + u(x), u a smooth random displacement (random control
    points every ``smooth_mm``, cubic spline, ``amplitude_mm`` peak per axis).

    Parameters
    ----------
    source_affine, source_shape
        Grid of the source image (voxel -> world, mm; x, y, z).
    voxel_size
        Isotropic voxel size of the new grid, mm (default: the source's first axis).
    seed
        Seed of the random displacement.
    """
    rng = np.random.default_rng(seed)
    source_shape = np.asarray(source_shape[:3])
    zooms = np.sqrt((np.asarray(source_affine)[:3, :3] ** 2).sum(axis=0))
    vs = float(voxel_size) if voxel_size else float(zooms[0])
    shape = np.ceil(source_shape * zooms / vs).astype(int)
    centre = source_affine @ np.r_[(source_shape - 1) / 2, 1]
    rot = Rotation.from_euler("xyz", angles_deg, degrees=True).as_matrix()
    new = np.eye(4)
    new[:3, :3] = rot * vs
    new[:3, 3] = centre[:3] + np.asarray(shift_mm) - new[:3, :3] @ ((shape - 1) / 2)
    grid = np.indices(shape, dtype=np.float32).reshape(3, -1)
    world = new[:3, :3] @ grid + new[:3, 3:4]
    # smooth field: random control points every smooth_mm, cubic-spline upsampled
    coarse = np.maximum(np.ceil(shape * vs / smooth_mm).astype(int) + 1, 4)
    disp = []
    for _ in range(3):
        field = ndimage.zoom(rng.standard_normal(coarse), shape / coarse, order=3)[
            : shape[0], : shape[1], : shape[2]]
        disp.append(field / np.abs(field).max() * amplitude_mm)
    world = world + np.stack([d.reshape(-1) for d in disp])
    src = np.linalg.inv(source_affine)
    vox = src[:3, :3] @ world + src[:3, 3:4]
    return KnownDeformation(new, tuple(int(n) for n in shape), vox)


def oblique_deformed_copy(image: nib.Nifti1Image, labels: nib.Nifti1Image, *,
                          angles_deg=(12.0, -8.0, 5.0), shift_mm=(4.0, -3.0, 2.0),
                          amplitude_mm: float = 3.0, smooth_mm: float = 12.0,
                          voxel_size: float | None = None, seed: int = 0,
                          ) -> tuple[nib.Nifti1Image, nib.Nifti1Image]:
    """A deformed, obliquely positioned copy of an image and its labels
    (:func:`known_deformation` with the same arguments).

    Returns
    -------
    (image, labels)
        Linear-interpolated image and nearest-neighbour labels on the new grid.
    """
    warp = known_deformation(image.affine, image.shape, angles_deg=angles_deg,
                             shift_mm=shift_mm, amplitude_mm=amplitude_mm,
                             smooth_mm=smooth_mm, voxel_size=voxel_size, seed=seed)
    return (warp.image(np.asarray(image.dataobj, dtype=np.float32)),
            warp.image(np.asarray(labels.dataobj), order=0, dtype=np.int16))


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice overlap of two boolean arrays (nan when both are empty)."""
    total = a.sum() + b.sum()
    return float(2 * (a & b).sum() / total) if total else float("nan")


def region_dice(truth: np.ndarray, warped: np.ndarray, regions: dict) -> dict[str, float]:
    """Dice per bilateral region name (``Caudate`` = ``Caudate_L`` and ``_R`` averaged)."""
    per_side = {name: dice(np.isin(truth, labs), np.isin(warped, labs))
                for name, labs in regions.items()}
    out: dict[str, list[float]] = {}
    for name, value in per_side.items():
        out.setdefault(name.removesuffix("_L").removesuffix("_R"), []).append(value)
    return {k: float(np.mean(v)) for k, v in out.items()}
