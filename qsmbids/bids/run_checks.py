"""Checks that read a run's images before any work starts (corrupt or truncated files,
2-D data, mismatched shapes or affines, images that are mostly NaN, echo and channel
counts), one specific message per problem."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from qsmbids.runs import GreRun


def _read(path: Path) -> tuple[nib.Nifti1Image | None, np.ndarray | None, str | None]:
    try:
        img = nib.load(str(path))
        data = np.asanyarray(img.dataobj)
    except Exception as exc:  # nibabel raises many types for corrupt files
        return None, None, f"cannot read {path.name}: {type(exc).__name__}: {exc}"
    return img, data, None


def validate_run(run: GreRun) -> list[str]:
    """Read every image of a run and report what prevents reconstructing it.

    Checks: the files can be read completely (corrupt/truncated NIfTI), the images
    are 3-D volumes (not 2-D slices), 4-D files hold one volume per echo time, all
    parts and echoes share shape and affine, and no image is NaN in most of its voxels.

    Returns
    -------
    list of str
        One specific message per problem; empty when the run is fine.
    """
    problems: list[str] = []
    reference: tuple[str, tuple[int, ...], np.ndarray] | None = None
    for path in run.files:
        is_field_map = path == run.field_map
        img, data, error = _read(path)
        if error:
            problems.append(error)
            continue
        assert img is not None and data is not None
        shape = data.shape
        if is_field_map:  # one 3-D volume, on the grid of the magnitude
            if data.ndim == 4 and shape[3] == 1:
                shape = shape[:3]
            elif data.ndim != 3:
                problems.append(f"{path.name} has shape {shape}; a field map must be one "
                                "3-D volume")
                continue
        elif run.channels > 1:
            expected = ((run.n_echoes, run.channels) if run.four_d else (run.channels,))
            if data.ndim != 3 + len(expected) or tuple(shape[3:]) != expected:
                layout = ("(x, y, z, echo, channel)" if run.four_d else "(x, y, z, channel)")
                problems.append(f"{path.name} has shape {shape}; {layout} with "
                                f"{run.channels} channels was expected, as in the first "
                                "phase file")
                continue
            shape = shape[:3]
        elif run.four_d:
            if data.ndim != 4:
                problems.append(f"{path.name} has shape {shape}; a 4-D file with "
                                f"{run.n_echoes} echoes was expected")
                continue
            if shape[3] != run.n_echoes:
                problems.append(f"{path.name} holds {shape[3]} volumes but its sidecar lists "
                                f"{run.n_echoes} echo times")
            shape = shape[:3]
        else:
            if data.ndim == 4 and shape[3] == 1:
                shape = shape[:3]
            elif data.ndim != 3:
                problems.append(f"{path.name} has shape {shape}; one 3-D volume per echo "
                                "was expected (a 4-D file of several echoes needs EchoTime "
                                "as a list of all its echo times in its sidecar)")
                continue
        if sum(n > 1 for n in shape) < 3:
            problems.append(f"{path.name} is 2-D (shape {shape}); QSM needs a 3-D volume")
            continue
        if np.issubdtype(data.dtype, np.floating) or np.issubdtype(data.dtype,
                                                                   np.complexfloating):
            n_nan = int(np.count_nonzero(np.isnan(data)))
            if n_nan > 0.5 * data.size:  # fewer (a NaN background) are set to 0 on loading
                problems.append(f"{path.name} is NaN in {n_nan} of its {data.size} voxels")
        affine = img.affine
        if reference is None:
            reference = (path.name, shape, affine)
            continue
        ref_name, ref_shape, ref_affine = reference
        if shape != ref_shape:
            problems.append(f"{path.name} has shape {shape} but {ref_name} has {ref_shape}")
        elif not np.allclose(affine, ref_affine, atol=1e-3, rtol=1e-4):
            problems.append(f"{path.name} and {ref_name} have different affines "
                            "(voxel positions differ)")
    return problems
