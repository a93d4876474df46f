"""Heads of qsmbids' design, forward-simulated by the peer simulator ``qsm-forward``.

qsmbids' own simulator shares the forward model, the shape of the phase offset and the
mask logic with the pipeline, so accuracy measured on it can hide errors in exactly
those places. Here only the *anatomy* is ours (tissue labels, susceptibility, M0 and
R2* of :func:`qsmbids.sim.phantom.make_head_phantom`, with scalp, skull and air
sinuses); everything the pipeline has to undo comes from ``qsm-forward``
(``generate_bids``): its dipole convolution on a 2x zero-padded grid, its quadratic
phase offset scaled to pi over its mask, its 2nd-order shim fitted over its mask, its
k-space down-sampling and its complex Gaussian noise (peak SNR).

``qsm-forward`` gotchas handled here (REFERENCE.md section 3): noise needs both
``peak_snr`` and ``random_seed``; only chi may be an array, so every map is written as
NIfTI; its ``fieldmap`` is the pre-shim field, so the shimmed field (what the phase
encodes) is saved with ``save_shimmed_field``.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np

from qsmbids.sim.phantom import (
    FILLED_SUPERSAMPLE,
    PHANTOM_REVISION,
    make_head_phantom,
    to_qsmci_seg,
)
from qsmbids.sim.tissues import AIR_CHI_PPM, r2star_at_field
from qsmbids.sim.veins import VenousBlood, probe_veins

#: qsm-forward version the cases were designed and measured with (the ``validation`` extra)
QSM_FORWARD_VERSION = "0.32"


@dataclass(frozen=True)
class PeerHeadCase:
    """One simulated acquisition of the head phantom.

    Attributes
    ----------
    name
        Case name (also the BIDS ``acq`` label, letters and digits only).
    field_strength_t
        B0 in tesla.
    voxel_size_mm
        Voxel edge lengths (x, y, z) of the simulated acquisition, mm.
    phantom_voxel_mm
        Isotropic voxel size of the phantom the signal is computed on, mm; when finer
        than ``voxel_size_mm`` qsm-forward crops k-space (partial volumes, Gibbs).
    echo_times_s
        Echo times, s.
    b0_direction
        B0 direction in the phantom's (x, y, z) frame; qsm-forward rotates the affine.
    peak_snr
        Peak SNR of the complex noise (``inf``: no noise).
    phase_offset
        Let qsm-forward add its spatially varying (quadratic) phase offset.
    shim
        Let qsm-forward remove a 2nd-order shim fit from the field.
    signal_region
        ``"head"``: scalp, skull marrow and brain give signal and form qsm-forward's
        mask (as on a scanner); ``"brain"``: only the brain gives signal (QSM
        challenge style).
    outside_air
        Susceptibility of the air around the head relative to water (ppm): 9.4 for a
        real head in air, 0 to leave out the head-surface field.
    seed
        Noise seed.
    venous_blood
        Oxygenation of the veins, which adds the probe veins of
        :func:`qsmbids.sim.veins.probe_veins` (None: the phantom's default veins).
    probe_shift_mm
        Moves the probe veins (x, y, z, mm): other positions against the voxel grid.
    """

    name: str
    field_strength_t: float = 3.0
    voxel_size_mm: tuple[float, float, float] = (2.0, 2.0, 2.0)
    phantom_voxel_mm: float = 2.0
    echo_times_s: tuple[float, ...] = (0.004, 0.010, 0.016, 0.022)
    b0_direction: tuple[float, float, float] = (0.0, 0.0, 1.0)
    peak_snr: float = 80.0
    phase_offset: bool = True
    shim: bool = True
    signal_region: str = "head"
    outside_air: float = AIR_CHI_PPM
    seed: int = 1
    venous_blood: VenousBlood | None = None
    probe_shift_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    notes: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if self.signal_region not in ("head", "brain"):
            raise ValueError(f"signal_region must be 'head' or 'brain', got "
                             f"{self.signal_region!r}")
        if not self.name.isalnum():
            raise ValueError(f"case name must be letters and digits (a BIDS label), got "
                             f"{self.name!r}")


@dataclass(frozen=True)
class PeerHead:
    """A simulated BIDS dataset and its ground truth.

    Attributes
    ----------
    case
        What was simulated.
    bids_dir
        The raw BIDS dataset (``sub-1/anat/sub-1_acq-<name>_echo-N_part-*_MEGRE.nii``).
    chi_path, brain_mask_path, seg_path, field_path
        Truth on the acquisition grid: chi (ppm, relative to water), brain mask,
        qsm-ci segmentation (1 caudate .. 7 thalamus, 8 WM, ...), and the shimmed
        total field (ppm) that the phase encodes (without the phase offset).
    """

    case: PeerHeadCase
    bids_dir: Path
    chi_path: Path
    brain_mask_path: Path
    seg_path: Path
    field_path: Path

    def load_truth(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Truth chi (ppm), brain mask (bool) and qsm-ci seg (int) as arrays (x, y, z)."""
        chi = np.asarray(nib.load(self.chi_path).dataobj, np.float32)
        mask = np.asarray(nib.load(self.brain_mask_path).dataobj) > 0.5
        seg = np.rint(np.asarray(nib.load(self.seg_path).dataobj)).astype(np.int16)
        return chi, mask, seg


def _save(data: np.ndarray, affine: np.ndarray, path: Path) -> str:
    nib.save(nib.Nifti1Image(np.asarray(data, np.float32), affine), str(path))
    return str(path)


def _fill(mask: np.ndarray) -> np.ndarray:
    import scipy.ndimage as ndi

    return ndi.binary_fill_holes(mask)


def simulate_peer_head(case: PeerHeadCase, out_dir: str | Path, *, quiet: bool = True
                       ) -> PeerHead:
    """Simulate ``case`` with qsm-forward into ``out_dir`` (reused if already complete).

    Parameters
    ----------
    case
        The acquisition to simulate.
    out_dir
        Folder for the BIDS dataset (``out_dir/bids``) and the phantom inputs.
    quiet
        Hide qsm-forward's progress prints.

    Returns
    -------
    PeerHead
    """
    import qsm_forward

    out = Path(out_dir)
    bids = out / "bids"
    deriv = bids / "derivatives" / "qsm-forward" / "sub-1" / "anat"
    stem = f"sub-1_acq-{case.name}"
    head = PeerHead(case, bids, deriv / f"{stem}_Chimap.nii",
                    out / "truth_brainmask.nii.gz", deriv / f"{stem}_dseg.nii",
                    deriv / f"{stem}_desc-shimmed_fieldmap.nii")
    stamp = out / "case.json"
    # the probe veins, and how veins of known blood are painted (their partial volume)
    probes = (f"{probe_veins(case.probe_shift_mm)!r}, partial volume on "
              f"{FILLED_SUPERSAMPLE}^3 points" if case.venous_blood is not None else None)
    record = json.dumps({**asdict(case), "phantom_revision": PHANTOM_REVISION,
                         "input_origin": "zero", "probe_veins": probes},
                        sort_keys=True, default=float)
    if stamp.exists() and stamp.read_text() == record and head.field_path.exists():
        return head
    inputs = out / "phantom"
    inputs.mkdir(parents=True, exist_ok=True)
    phantom = make_head_phantom(case.phantom_voxel_mm, venous_blood=case.venous_blood,
                                probe_shift_mm=case.probe_shift_mm)
    # qsm-forward resizes its ground-truth derivatives (chi, dseg) to another voxel size
    # on an affine without the input's translation (qsm_forward.resize, 0.32), so with the
    # phantom's own origin a 1x1x2 mm truth held only the corner beyond the world origin;
    # a zero origin keeps images and truth on one grid (only the axes carry meaning here)
    affine = phantom.affine.copy()
    affine[:3, 3] = 0.0
    head_region = _fill(phantom.m0 > 0) | phantom.brain_mask
    chi = np.where(head_region | (phantom.chi != 0), phantom.chi, np.float32(case.outside_air))
    if case.signal_region == "brain":
        signal_mask, m0 = phantom.brain_mask, np.where(phantom.brain_mask, phantom.m0, 0.0)
    else:
        signal_mask, m0 = head_region, phantom.m0
    r2star = np.asarray(r2star_at_field(phantom.r2star, case.field_strength_t), np.float32)
    paths = {
        "chi": _save(chi, affine, inputs / "chi.nii"),
        "M0": _save(m0, affine, inputs / "m0.nii"),
        "R1": _save(np.where(signal_mask, 1.0, 0.0), affine, inputs / "r1.nii"),
        "R2star": _save(np.where(signal_mask, r2star, 0.0), affine, inputs / "r2star.nii"),
        "mask": _save(signal_mask, affine, inputs / "mask.nii"),
        "seg": _save(to_qsmci_seg(phantom.labels), affine, inputs / "seg.nii"),
    }
    tissue = qsm_forward.TissueParams(root_dir="", **paths)
    recon = qsm_forward.ReconParams(
        subject="1", acq=case.name, TEs=np.asarray(case.echo_times_s, float),
        TR=0.05, flip_angle=15, B0=case.field_strength_t,
        B0_dir=np.asarray(case.b0_direction, float),
        generate_phase_offset=case.phase_offset, generate_shim_field=case.shim,
        voxel_size=np.asarray(case.voxel_size_mm, float),
        peak_snr=case.peak_snr, random_seed=case.seed if np.isfinite(case.peak_snr) else None)
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink) if quiet else contextlib.nullcontext():
        qsm_forward.generate_bids(tissue, recon, str(bids), save_shimmed_field=case.shim,
                                  save_field=not case.shim)
    # the brain mask on the acquisition grid, resampled by qsm-forward's own resize
    brain = qsm_forward.resize(nib.Nifti1Image(phantom.brain_mask.astype(np.float32), affine),
                               np.asarray(case.voxel_size_mm, float), "nearest")
    grid = nib.load(head.chi_path)
    nib.save(nib.Nifti1Image((np.asarray(brain.dataobj) > 0.5).astype(np.uint8), grid.affine),
             str(head.brain_mask_path))
    if not case.shim:  # qsm-forward writes the shimmed field only when it shims
        (deriv / f"{stem}_fieldmap.nii").rename(head.field_path)
        (deriv / f"{stem}_fieldmap-local.nii").unlink(missing_ok=True)
    stamp.write_text(record)
    return head


def field_strength_echo_times(field_strength_t: float, n_echoes: int = 4) -> tuple[float, ...]:
    """Typical multi-echo GRE echo times (s) at 3 T or 7 T: first echo and spacing."""
    first, spacing = (0.004, 0.006) if field_strength_t < 5 else (0.003, 0.004)
    return tuple(round(first + i * spacing, 6) for i in range(n_echoes))


def default_cases(quick: bool = False) -> list[PeerHeadCase]:
    """The benchmark's cases: one change at a time from a 3 T, 2 mm, whole-head base.

    ``quick`` keeps the 2 mm cases that take seconds each (the test-suite subset).
    """
    base = PeerHeadCase("base3t2mm", notes="3 T, 2 mm, 4 echoes, offset, shim, SNR 80, head")
    cases = [
        base,
        PeerHeadCase("brainonly", signal_region="brain",
                     notes="only the brain gives signal (QSM-challenge style)"),
        PeerHeadCase("nooffset", phase_offset=False, notes="no phase offset"),
        PeerHeadCase("noshim", shim=False, notes="no shim"),
        PeerHeadCase("snr30", peak_snr=30.0, seed=2, notes="peak SNR 30"),
        PeerHeadCase("twoecho", echo_times_s=(0.0023, 0.0046), seed=3,
                     notes="2 echoes 2.3/4.6 ms (the Philips protocol)"),
        PeerHeadCase("oblique", b0_direction=_tilted(15.0), seed=4,
                     notes="B0 tilted 15 degrees from the slice normal"),
        PeerHeadCase("sevent", field_strength_t=7.0,
                     echo_times_s=field_strength_echo_times(7.0), seed=5, notes="7 T"),
    ]
    if not quick:
        cases += [
            PeerHeadCase("aniso", voxel_size_mm=(1.0, 1.0, 2.0), phantom_voxel_mm=1.0,
                         seed=6, notes="1x1x2 mm from a 1 mm phantom (k-space crop)"),
            PeerHeadCase("onemm", voxel_size_mm=(1.0, 1.0, 1.0), phantom_voxel_mm=1.0,
                         seed=7, notes="3 T, 1 mm"),
        ]
    return cases


def _tilted(degrees: float) -> tuple[float, float, float]:
    angle = np.deg2rad(degrees)
    return (0.0, float(np.sin(angle)), float(np.cos(angle)))


def case_by_name(name: str, cases: Sequence[PeerHeadCase] | None = None) -> PeerHeadCase:
    """The case called ``name`` among ``cases`` (default :func:`default_cases`)."""
    for case in cases or default_cases():
        if case.name == name:
            return case
    raise KeyError(f"no peer-head case {name!r}")


def single_echo_dataset(head: PeerHead, out_dir: str | Path, echo: int = 3,
                        suffix: str = "T2starw") -> Path:
    """A BIDS copy of ``head`` holding one echo as a single-echo series (no ``echo``
    entity, a scalar ``EchoTime``: ``sub-1_acq-<case>_part-{mag,phase}_<suffix>``), as a
    single-echo GRE/SWI protocol writes it.

    Parameters
    ----------
    head
        A simulated head (:func:`simulate_peer_head`).
    out_dir
        Folder of the new dataset (created).
    echo
        1-based echo to keep.
    suffix
        ``T2starw``, ``GRE`` or ``MEGRE``.

    Returns
    -------
    Path
        The dataset's root.
    """
    import shutil

    bids = Path(out_dir)
    anat = bids / "sub-1" / "anat"
    anat.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(head.bids_dir / "dataset_description.json",
                    bids / "dataset_description.json")
    stem = f"sub-1_acq-{head.case.name}"
    for part in ("mag", "phase"):
        source = head.bids_dir / "sub-1" / "anat" / f"{stem}_echo-{echo}_part-{part}_MEGRE"
        meta = json.loads(source.with_suffix(".json").read_text())
        meta.pop("EchoNumber", None)
        target = anat / f"{stem}_part-{part}_{suffix}"
        shutil.copyfile(source.with_suffix(".nii"), target.with_suffix(".nii"))
        target.with_suffix(".json").write_text(json.dumps(meta))
    return bids
