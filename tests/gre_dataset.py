"""Tiny multi-echo GRE BIDS datasets for the workflow tests (qsmbids.sim.signal physics).

A 'head' is an ellipsoidal brain (chi 0) holding two spheres of known
susceptibility, inside a shell of tissue without signal (skull), surrounded by
air; magnitudes decay with R2*. Small enough (about 32^3 voxels) for the default test suite.
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from qsmbids.recon.dipole import b0_direction_from_affine
from qsmbids.sim.signal import simulate_multi_echo_gre, smooth_phase_offset

SPHERES = {"A": ((-9.0, 0.0, 0.0), 0.10), "B": ((9.0, 0.0, 0.0), -0.05)}  # centre mm, ppm


def _affine(shape, voxel, oblique_deg):
    theta = np.deg2rad(oblique_deg)
    rot = np.array([[1, 0, 0], [0, np.cos(theta), -np.sin(theta)],
                    [0, np.sin(theta), np.cos(theta)]])
    affine = np.eye(4)
    affine[:3, :3] = rot * voxel
    affine[:3, 3] = -affine[:3, :3] @ ((np.array(shape) - 1) / 2)
    return affine


def head(shape=(32, 32, 28), voxel=3.0, oblique_deg=0.0):
    """chi (ppm), m0, r2star (1/s), brain mask, sphere labels and affine of a tiny head."""
    affine = _affine(shape, voxel, oblique_deg)
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1)
    xyz = ijk @ affine[:3, :3].T + affine[:3, 3]
    radii = np.array([40.0, 42.0, 34.0])
    r_brain = np.sqrt(((xyz / radii) ** 2).sum(-1))
    brain = r_brain < 1.0
    head_mask = r_brain < 1.22
    chi = np.where(head_mask & ~brain, -0.02, 0.0).astype(np.float32)
    labels = np.zeros(shape, np.int16)
    for n, (centre, value) in enumerate(SPHERES.values(), start=1):
        inside = np.linalg.norm(xyz - np.array(centre), axis=-1) < 7.5
        chi[inside] = value
        labels[inside] = n
    chi = ndimage.gaussian_filter(chi, 0.6).astype(np.float32)
    air = ~head_mask
    chi[air] = 9.4  # air relative to tissue: strong background field
    m0 = np.where(brain, 1.0, 0.0).astype(np.float32)  # skull/scalp give no signal
    r2 = np.where(brain, 20.0, 30.0).astype(np.float32)
    r2[labels > 0] = 35.0
    return chi, m0, r2, brain, labels, affine


def write_run(root: Path, stem: str, *, echo_times=(0.005, 0.010, 0.015), field_strength=3.0,
              phase_units="rad", oblique_deg=0.0, snr=60.0, seed=0, shape=(32, 32, 28),
              voxel=3.0) -> dict:
    """Write one run's echoes (mag/phase NIfTI + JSON) as ``root/stem_echo-N_part-*_MEGRE``.

    ``phase_units`` as in :func:`write_signal`. Returns the truth (chi, labels, brain
    mask, affine).
    """
    chi, m0, r2, brain, labels, affine = head(shape, voxel, oblique_deg)
    rng = np.random.default_rng(seed)
    sig = simulate_multi_echo_gre(chi, m0, r2, echo_times, field_strength, (voxel,) * 3,
                                  b0_direction_from_affine(affine), snr=snr,
                                  phase_offset_rad=smooth_phase_offset(shape, rng=rng), rng=rng)
    write_signal(root, stem, sig.magnitude, sig.phase, affine, echo_times, field_strength,
                 phase_units)
    return {"chi": chi, "labels": labels, "brain": brain, "affine": affine}


def write_signal(root: Path, stem: str, magnitude: np.ndarray, phase: np.ndarray,
                 affine: np.ndarray, echo_times, field_strength: float,
                 phase_units: str = "rad") -> None:
    """Write magnitude/phase (x, y, z, echo) as per-echo MEGRE NIfTIs with JSON sidecars.

    ``phase_units``: ``rad`` (float radians, sidecar Units rad), ``siemens``
    (integers -4096..4094 stored as 0..4095 with slope 2 / intercept -4096, no Units) or
    ``arbitrary`` (float, one period = -0.0037..+0.0037 as some research converters
    write it, no Units).
    """
    path = root / stem
    path.parent.mkdir(parents=True, exist_ok=True)
    for n, te in enumerate(echo_times, start=1):
        mag = nib.Nifti1Image(magnitude[..., n - 1].astype(np.float32), affine)
        base = f"{path}_echo-{n}_part-"
        nib.save(mag, base + "mag_MEGRE.nii.gz")
        meta = {"EchoTime": te, "MagneticFieldStrength": field_strength}
        if phase_units == "siemens":
            stored = np.clip(np.round(phase[..., n - 1] * 4096 / np.pi), -4096, 4094)
            img = nib.Nifti1Image(((stored + 4096) / 2).astype(np.uint16), affine)
            img.header.set_slope_inter(2.0, -4096.0)
        elif phase_units == "arbitrary":
            img = nib.Nifti1Image((phase[..., n - 1] * (0.0036743774 / np.pi)).astype(
                np.float32), affine)
        else:
            img = nib.Nifti1Image(phase[..., n - 1].astype(np.float32), affine)
            meta["Units"] = "rad"
        nib.save(img, base + "phase_MEGRE.nii.gz")
        for part in ("mag", "phase"):
            Path(base + f"{part}_MEGRE.json").write_text(json.dumps(meta))


def new_dataset(root: Path) -> Path:
    """An empty BIDS dataset folder with dataset_description.json."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "dataset_description.json").write_text(
        json.dumps({"Name": "tiny GRE", "BIDSVersion": "1.9.0"}))
    return root
