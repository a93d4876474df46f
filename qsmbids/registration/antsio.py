"""Conversion between nibabel images (RAS+ affine) and ANTs images (ITK LPS+ geometry).

ANTs and ITK describe an image by origin, spacing and a direction matrix in LPS+
physical coordinates; NIfTI/nibabel by a 4x4 voxel-to-RAS+ affine. Both describe
the same voxel-to-world map; these helpers convert exactly (oblique affines
included, shear excepted).
"""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from pathlib import Path

import ants
import nibabel as nib
import numpy as np

from qsmbids.registration.job import ITK_THREADS_ENV

_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])

ImageLike = "nib.Nifti1Image | str | os.PathLike"


def load_nifti(image) -> nib.Nifti1Image:
    """Return ``image`` as a nibabel image, loading it when a path is given."""
    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        if not path.is_file():
            raise FileNotFoundError(f"image file does not exist: {path}")
        return nib.load(str(path))
    return image


def to_ants(image, dtype=np.float32) -> ants.ANTsImage:
    """Convert a 3D nibabel image (or a path) to an ANTs image with the same geometry.

    Parameters
    ----------
    image
        nibabel image or NIfTI path; the voxel-to-world affine is kept exactly.
    dtype
        Voxel type given to ANTs (float32 by default).
    """
    image = load_nifti(image)
    if len(image.shape) != 3:
        raise ValueError(f"expected a 3D image, got shape {image.shape}")
    lps = _LPS @ image.affine
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    direction = lps[:3, :3] / spacing
    data = np.asarray(image.dataobj, dtype=dtype)
    return ants.from_numpy(data, origin=lps[:3, 3].tolist(), spacing=spacing.tolist(),
                           direction=direction)


def ants_affine(image: ants.ANTsImage) -> np.ndarray:
    """The 4x4 voxel-to-RAS+ affine of an ANTs image."""
    m = np.eye(4)
    m[:3, :3] = np.asarray(image.direction) * np.asarray(image.spacing)[None, :]
    m[:3, 3] = image.origin
    return _LPS @ m


def from_ants(image: ants.ANTsImage, dtype=None) -> nib.Nifti1Image:
    """Convert an ANTs image to a nibabel image (RAS+ affine, units mm)."""
    data = image.numpy()
    if dtype is not None:
        data = data.astype(dtype)
    out = nib.Nifti1Image(data, ants_affine(image))
    out.header.set_xyzt_units("mm")
    return out


_LOG = logging.getLogger(__name__)

#: thread count ITK bound to at the first ANTs call of this process (None: not yet)
_BOUND_THREADS: int | None = None


@contextmanager
def itk_threads(n_threads: int | None):
    """Set ``ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS`` for the ANTs calls in a block.

    ITK reads the variable once, at the first ANTs call of the process, and keeps
    that count for the process lifetime (measured with antspyx 0.6.3). A later block
    asking for another count is logged (INFO) and keeps the old one;
    run such work in a fresh process (as :mod:`qsmbids.registration.job` does).
    ``None`` leaves the count alone.
    """
    global _BOUND_THREADS
    if n_threads is None:  # leave ITK's count as it is
        yield
        return
    if n_threads < 1:
        raise ValueError(f"n_threads must be >= 1, got {n_threads}")
    key = ITK_THREADS_ENV
    if _BOUND_THREADS is None:
        _BOUND_THREADS = int(os.environ.get(key, n_threads))
        if key not in os.environ:
            _BOUND_THREADS = n_threads
    if _BOUND_THREADS != n_threads:
        _LOG.info("ANTs in this process already runs with %d thread(s); %d requested "
                  "(ITK fixes the count at its first use)", _BOUND_THREADS, n_threads)
    old = os.environ.get(key)
    os.environ[key] = str(int(n_threads))
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = old
