"""Simulated subjects: the template phantom warped, posed in the scanner and imaged.

A subject is the continuous phantom (:func:`qsmbids.sim.phantom.evaluate_head`) at an
age, deformed by a random smooth nonlinear warp and a head-size scaling, placed in
the scanner with a rigid pose, and sampled on the acquisition grid. The slab can be
tilted against the scanner (oblique slices): the NIfTI affine is then oblique and
B0, the scanner z-axis, is not along the third voxel axis. Because every voxel is
evaluated from the continuous phantom at its pulled-back template coordinate, chi,
labels, mask, M0 and R2* are consistent by construction (no label interpolation).

Coordinates: ``x_scanner = affine @ ijk``; ``x_head = R_pose^T (x_scanner - t)``
(slab frame plus a small head rotation within the slab); ``x_template =
(x_head + u(x_head)) / scale`` with ``u`` a smooth random displacement (mm).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.ndimage as ndi

from qsmbids.recon.dipole import b0_direction_from_affine, forward_field
from qsmbids.sim.phantom import (
    EDGE_SIGMA_VOXELS,
    FOV_MAX_MM,
    FOV_MIN_MM,
    evaluate_head,
    grid_coordinates,
)
from qsmbids.sim.shapes import rotation_matrix
from qsmbids.sim.signal import GreSignal, simulate_multi_echo_gre, smooth_phase_offset
from qsmbids.sim.tissues import r2star_at_field


@dataclass(frozen=True)
class SubjectSpec:
    """Anatomy and head position of one simulated subject.

    Attributes
    ----------
    age_years
        Age (deep-nuclei iron model).
    seed
        Seed of the subject's anatomy (warp and head size); the cortical folding
        pattern is the template's.
    pose_seed
        Seed of the head position (vary it per session/run).
    warp_mm
        Standard deviation of the smooth nonlinear displacement, mm.
    scale_sd
        Standard deviation of the per-axis head size scaling (0.04 = 4%).
    oblique_deg
        Tilt of the slab (and head) against the scanner, deg: about the x axis, and a
        third of it about the y axis, so B0 has components along all voxel axes.
    pose_jitter_deg
        Standard deviation of a random head rotation within the slab, deg.
    shift_sd_mm
        Standard deviation of a random head translation within the slab, mm.
    calcification, microbleed
        Include these lesions.
    """

    age_years: float = 40.0
    seed: int = 0
    pose_seed: int = 0
    warp_mm: float = 2.0
    scale_sd: float = 0.03
    oblique_deg: float = 0.0
    pose_jitter_deg: float = 2.0
    shift_sd_mm: float = 2.0
    calcification: bool = True
    microbleed: bool = False


@dataclass(frozen=True)
class AcquisitionSpec:
    """How the subject is imaged.

    Attributes
    ----------
    voxel_size_mm
        Voxel size, mm (a number for isotropic voxels or three values).
    field_strength_t
        B0, tesla (R2* scales linearly from its 3 T value).
    echo_times_s
        Echo times, s.
    snr
        Mean first-echo brain magnitude over the noise standard deviation (None: no noise).
    phase_offset
        Add a smooth echo-independent phase offset (receiver phase).
    residual_shim_ppm
        Amplitude of a smooth second-order residual-shim field added to the dipole
        field, ppm (part of the background field).
    bias_field
        Amplitude of a smooth multiplicative receive-coil profile on the magnitude.
    """

    voxel_size_mm: float | tuple[float, float, float] = 2.0
    field_strength_t: float = 3.0
    echo_times_s: tuple[float, ...] = (0.004, 0.010, 0.016, 0.022)
    snr: float | None = 50.0
    phase_offset: bool = True
    residual_shim_ppm: float = 0.05
    bias_field: float = 0.15

    @property
    def voxel_size(self) -> tuple[float, float, float]:
        v = self.voxel_size_mm
        size = (float(v),) * 3 if np.isscalar(v) else tuple(float(x) for x in v)
        if len(size) != 3 or not all(0.5 <= s <= 4.0 for s in size):
            raise ValueError(f"voxel size must be 0.5..4 mm (one or three values), got {v}")
        return size


@dataclass(frozen=True)
class SubjectAnatomy:
    """Ground truth of one subject on its acquisition grid, all (x, y, z).

    Attributes
    ----------
    chi
        ppm, float32, whole FOV (bone and air sources included).
    labels
        int16 phantom labels.
    brain_mask
        bool.
    m0
        Signal at TE = 0 (a.u.), float32.
    r2star_3t
        R2* at 3 T, 1/s, float32.
    affine
        4x4 voxel-to-scanner affine (RAS+, possibly oblique).
    voxel_size
        mm.
    """

    chi: np.ndarray
    labels: np.ndarray
    brain_mask: np.ndarray
    m0: np.ndarray
    r2star_3t: np.ndarray
    affine: np.ndarray
    voxel_size: tuple[float, float, float]

    @property
    def b0_direction(self) -> np.ndarray:
        """B0 (scanner z) in the voxel frame."""
        return b0_direction_from_affine(self.affine)


@dataclass(frozen=True)
class SubjectSimulation:
    """A simulated acquisition with its ground truth.

    Attributes
    ----------
    anatomy
        :class:`SubjectAnatomy`.
    gre
        The complex multi-echo signal (:class:`qsmbids.sim.signal.GreSignal`).
    local_field_ppm
        Field of the sources inside the brain mask, ppm, float32.
    r2star
        R2* at the acquisition's field strength, 1/s.
    field_strength_t
        B0, tesla.
    """

    anatomy: SubjectAnatomy
    gre: GreSignal
    local_field_ppm: np.ndarray
    r2star: np.ndarray
    field_strength_t: float


@functools.lru_cache(maxsize=8)
def _smooth_displacement(seed: int, sd_mm: float, control_mm: float = 32.0,
                         step_mm: float = 8.0):
    """Random smooth displacement (3 components, mm) on an 8 mm grid over the FOV.

    Returns the field, the grid origin and spacing; the field is cubic-spline smooth
    between control points ``control_mm`` apart. Cached: a subject keeps its warp
    across sessions and runs.
    """
    rng = np.random.default_rng([seed, 8])
    lo = np.asarray(FOV_MIN_MM) - 20
    hi = np.asarray(FOV_MAX_MM) + 20
    n_ctrl = np.ceil((hi - lo) / control_mm).astype(int) + 1
    n_fine = np.ceil((hi - lo) / step_mm).astype(int) + 1
    fields = []
    for _ in range(3):
        ctrl = rng.standard_normal(tuple(n_ctrl)) * sd_mm
        zoom = [(f - 1) / (c - 1) for f, c in zip(n_fine, n_ctrl, strict=True)]
        fields.append(ndi.zoom(ctrl, zoom, order=3, grid_mode=False).astype(np.float32))
    return np.stack(fields), lo, step_mm


def _slab_rotation(oblique_deg: float) -> np.ndarray:
    return rotation_matrix((oblique_deg, oblique_deg / 3.0, 0.0))


#: extra field of view around the phantom's, mm (room for head size, warp and pose)
FOV_MARGIN_MM = 6.0


def subject_grid(voxel_size: Sequence[float], oblique_deg: float = 0.0):
    """Shape and oblique RAS+ affine of the acquisition grid.

    The grid covers the phantom's field of view plus :data:`FOV_MARGIN_MM` in the slab
    frame, which is rotated by :func:`_slab_rotation` about the scanner's origin.
    """
    vox = np.asarray(voxel_size, float)
    lo = np.asarray(FOV_MIN_MM) - FOV_MARGIN_MM
    extent = np.asarray(FOV_MAX_MM) + FOV_MARGIN_MM - lo
    shape = tuple(int(n) for n in np.floor(extent / vox + 1e-6) + 1)
    rot = _slab_rotation(oblique_deg)
    affine = np.eye(4)
    affine[:3, :3] = rot @ np.diag(vox)
    affine[:3, 3] = rot @ lo
    return shape, affine


def make_subject_anatomy(spec: SubjectSpec, voxel_size: Sequence[float]) -> SubjectAnatomy:
    """Evaluate the warped, posed phantom of ``spec`` on its acquisition grid.

    Parameters
    ----------
    spec
        The subject.
    voxel_size
        Voxel size along (x, y, z), mm.

    Returns
    -------
    SubjectAnatomy
    """
    rng = np.random.default_rng([spec.seed, 5])
    pose_rng = np.random.default_rng([spec.seed, spec.pose_seed, 6])
    shape, affine = subject_grid(voxel_size, spec.oblique_deg)
    scanner = grid_coordinates(shape, affine)
    jitter = rotation_matrix(pose_rng.normal(0, spec.pose_jitter_deg, 3))
    pose = _slab_rotation(spec.oblique_deg) @ jitter
    shift = pose_rng.normal(0, spec.shift_sd_mm, 3).astype(np.float32)
    # head frame: undo the pose (x_head = pose^T (x_scanner - shift))
    head = np.einsum("ji,j...->i...", pose.astype(np.float32),
                     scanner - shift.reshape(3, 1, 1, 1))
    del scanner
    scale = np.clip(1 + rng.normal(0, spec.scale_sd, 3), 0.9, 1.06).astype(np.float32)
    if spec.warp_mm > 0:
        disp, origin, step = _smooth_displacement(spec.seed, spec.warp_mm)
        idx = [(head[a] - np.float32(origin[a])) / np.float32(step) for a in range(3)]
        for a in range(3):
            head[a] += ndi.map_coordinates(disp[a], idx, order=1, mode="nearest")
        del idx
    template = head / scale.reshape(3, 1, 1, 1)
    maps = evaluate_head(template, edge_sigma_mm=EDGE_SIGMA_VOXELS * max(voxel_size),
                         age_years=spec.age_years, calcification=spec.calcification,
                         microbleed=spec.microbleed, spacing_mm=max(voxel_size) * 1.1)
    return SubjectAnatomy(maps.chi, maps.labels, maps.brain_mask, maps.m0, maps.r2star,
                          affine, tuple(float(v) for v in voxel_size))


def _smooth_polynomial(shape, rng: np.random.Generator, amplitude: float) -> np.ndarray:
    """A random second-order polynomial over the grid, max |value| about ``amplitude``."""
    coords = np.meshgrid(*[np.linspace(-1, 1, n, dtype=np.float32) for n in shape],
                         indexing="ij", sparse=True)
    out = np.zeros(shape, np.float32)
    for a, c in enumerate(coords):
        out += np.float32(rng.uniform(-0.5, 0.5)) * c + np.float32(rng.uniform(-0.3, 0.3)) * c**2
        out += np.float32(rng.uniform(-0.2, 0.2)) * c * coords[(a + 1) % 3]
    return out * np.float32(amplitude)


def simulate_subject(spec: SubjectSpec, acq: AcquisitionSpec, *, noise_seed: int = 0,
                     workers: int | None = None) -> SubjectSimulation:
    """Simulate one multi-echo GRE acquisition of a subject.

    Parameters
    ----------
    spec
        The subject (anatomy, age, pose).
    acq
        The acquisition (voxel size, B0, echo times, SNR, phase offset, shim).
    noise_seed
        Seed for the noise, phase offset, shim and coil profile (vary it per run).
    workers
        FFT threads.

    Returns
    -------
    SubjectSimulation
    """
    anat = make_subject_anatomy(spec, acq.voxel_size)
    rng = np.random.default_rng([spec.seed, noise_seed, 7])
    shape = anat.chi.shape
    m0 = anat.m0
    if acq.bias_field:
        m0 = m0 * np.exp(_smooth_polynomial(shape, rng, acq.bias_field))
    r2star = r2star_at_field(anat.r2star_3t, acq.field_strength_t).astype(np.float32)
    extra = _smooth_polynomial(shape, rng, acq.residual_shim_ppm) if acq.residual_shim_ppm \
        else None
    offset = smooth_phase_offset(shape, rng=rng) if acq.phase_offset else None
    gre = simulate_multi_echo_gre(
        anat.chi, m0, r2star, acq.echo_times_s, acq.field_strength_t, anat.voxel_size,
        anat.b0_direction, snr=acq.snr, phase_offset_rad=offset, extra_field_ppm=extra,
        rng=rng)
    local = forward_field(np.where(anat.brain_mask, anat.chi, 0).astype(np.float32),
                          anat.voxel_size, anat.b0_direction, workers=workers)
    local[~anat.brain_mask] = 0
    return SubjectSimulation(anat, gre, local, r2star, acq.field_strength_t)
