"""Test helpers for atlas and registration tests: real-atlas lookup, synthetic warps, Dice."""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage
from scipy.spatial.transform import Rotation

REPO = Path(__file__).resolve().parents[1]


def shared_atlases() -> Path | None:
    """The reference atlas folder (``$QSMBIDS_SHARED_ATLASES`` or ``../shared/atlases``)."""
    path = Path(os.environ.get("QSMBIDS_SHARED_ATLASES", REPO.parent / "shared" / "atlases"))
    return path if (path / "tpl-MNI152NLin2009cAsym_desc-brain_T1w.nii.gz").is_file() else None


def oblique_deformed_copy(image: nib.Nifti1Image, labels: nib.Nifti1Image, *,
                          angles_deg=(12.0, -8.0, 5.0), shift_mm=(4.0, -3.0, 2.0),
                          amplitude_mm: float = 3.0, smooth_mm: float = 12.0,
                          voxel_size: float | None = None, seed: int = 0,
                          ) -> tuple[nib.Nifti1Image, nib.Nifti1Image]:
    """A deformed, obliquely positioned copy of an image and its labels (the ground truth).

    The copy lives on a new grid whose axes are rotated by ``angles_deg`` (xyz Euler,
    degrees) about the image centre and shifted by ``shift_mm``; each of its voxels
    at world point x shows the original at x + u(x), u a smooth random displacement
    (random control points every ``smooth_mm``, cubic spline, ``amplitude_mm`` peak).

    Returns
    -------
    (image, labels)
        Linear-interpolated image and nearest-neighbour labels on the new grid.
    """
    rng = np.random.default_rng(seed)
    zooms = np.asarray(image.header.get_zooms()[:3], dtype=float)
    vs = float(voxel_size) if voxel_size else float(zooms[0])
    shape = np.ceil(np.asarray(image.shape[:3]) * zooms / vs).astype(int)
    centre = image.affine @ np.r_[(np.asarray(image.shape[:3]) - 1) / 2, 1]
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
    src = np.linalg.inv(image.affine)
    vox = src[:3, :3] @ world + src[:3, 3:4]
    img = ndimage.map_coordinates(np.asarray(image.dataobj, dtype=np.float32), vox, order=1,
                                  cval=0.0).reshape(shape)
    lab = ndimage.map_coordinates(np.asarray(labels.dataobj), vox, order=0,
                                  cval=0).reshape(shape).astype(np.int16)
    out_img = nib.Nifti1Image(img.astype(np.float32), new)
    out_lab = nib.Nifti1Image(lab, new)
    for im in (out_img, out_lab):
        im.header.set_xyzt_units("mm")
    return out_img, out_lab


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
