"""File helpers shared by the qsmbids nipype interfaces: images, provenance, memory estimates.

Intermediate images live in the nipype work folder as uncompressed ``.nii`` (fast
to write and read back); the derivatives sink compresses the ones it keeps.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from nipype.interfaces.base import SimpleInterface

from qsmbids.recon.dipole import b0_direction_from_affine, voxel_sizes_from_affine


def load_image(path: str | Path, dtype: type = np.float32) -> tuple[np.ndarray, nib.Nifti1Image]:
    """Data (as ``dtype``, NIfTI voxel order) and the image of a NIfTI file."""
    img = nib.load(str(path))
    return np.asarray(img.dataobj, dtype=dtype), img


def save_like(data: np.ndarray, reference: nib.Nifti1Image, path: str | Path) -> str:
    """Save ``data`` with the geometry of ``reference`` (qform/sform kept), return the path."""
    data = np.asarray(data)
    if data.dtype == bool:
        data = data.astype(np.uint8)
    header = reference.header.copy()
    header.set_data_dtype(data.dtype)
    img = nib.Nifti1Image(data, reference.affine, header)
    img.header.set_slope_inter(1, 0)
    nib.save(img, str(path))
    return str(Path(path).absolute())


def geometry(img: nib.Nifti1Image) -> tuple[tuple[float, float, float], np.ndarray]:
    """Voxel size (mm, along the voxel axes) and unit B0 direction in voxel coordinates."""
    affine = img.affine
    voxel = tuple(float(v) for v in voxel_sizes_from_affine(affine))
    return voxel, b0_direction_from_affine(affine)


def write_provenance(path: str | Path, step: str, algorithm: str,
                     parameters: Mapping[str, Any] | None = None,
                     info: Mapping[str, Any] | None = None) -> str:
    """Record what a step did (one JSON object) for the output sidecars."""
    record = {"Step": step, "Algorithm": algorithm, "Parameters": dict(parameters or {})}
    if info:
        record["Info"] = dict(info)
    Path(path).write_text(json.dumps(record, indent=1, default=_jsonable))
    return str(Path(path).absolute())


def read_provenance(paths: list[str]) -> list[dict[str, Any]]:
    """Provenance records written by :func:`write_provenance`, in the given order."""
    return [json.loads(Path(p).read_text()) for p in paths if p]


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return str(obj)


def estimate_mem_gb(shape: tuple[int, ...], n_echoes: int = 1, copies: float = 6.0,
                    pad_fraction: float = 0.0) -> float:
    """Memory (GB) a step needs: ``copies`` float32 volumes of ``shape`` (x echoes), padded.

    Parameters
    ----------
    shape
        Image shape (x, y, z).
    n_echoes
        Volumes per copy (4-D steps).
    copies
        Number of float32 volume copies alive at the peak (complex counts as 2).
    pad_fraction
        Zero padding along every axis for FFT steps.
    """
    voxels = float(np.prod(shape[:3])) * (1 + pad_fraction) ** 3
    return round(max(0.1, voxels * 4 * n_echoes * copies / 1024**3 + 0.15), 2)


def _reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _peak_rss_gb() -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024**2
    except OSError:
        pass
    return None


class MeasuredInterface(SimpleInterface):
    """SimpleInterface that records the peak resident memory of its process while it runs.

    Subclasses implement ``_compute(runtime)``; ``runtime.peak_rss_gb`` (Linux: the
    ``VmHWM`` high-water mark, reset at the start of the node) ends up in the node
    result, and the run log prints it next to the node's time.
    """

    def _compute(self, runtime):  # pragma: no cover - abstract
        raise NotImplementedError

    def _run_interface(self, runtime):
        reset = _reset_peak_rss()
        runtime = self._compute(runtime)
        runtime.peak_rss_gb = _peak_rss_gb() if reset else None
        return runtime
