"""Write simulated multi-echo GRE cohorts as BIDS datasets with their ground truth.

Layout of ``OUT``::

    dataset_description.json  README  participants.tsv  participants.json
    sub-<s>/[ses-<t>/]anat/sub-<s>[_ses-<t>][_run-<n>]_echo-<e>_part-{mag,phase}_MEGRE.nii.gz
                                                 (+ .json sidecars; or .nii uncompressed)
    derivatives/groundtruth/dataset_description.json
    derivatives/groundtruth/sub-<s>/[ses-<t>/]anat/<prefix>_space-orig_Chimap.nii.gz  (ppm)
        ..._space-orig_desc-brain_mask.nii.gz, ..._space-orig_dseg.nii.gz (+ _dseg.tsv),
        ..._space-orig_desc-localfield_fieldmap.nii.gz, ..._desc-totalfield_fieldmap
        (ppm), ..._space-orig_R2starmap.nii.gz (1/s), ..._space-orig_desc-truth_regions.tsv

Phase is written in radians, as Siemens integers (stored 0..4095 with scl_slope 2 and
scl_inter -4096, as dcm2niix writes them; sidecar ``Units: arbitrary``) or in an
arbitrary linear range (0..1000). Broken runs can be made on purpose to test that a
pipeline sets them aside with a clear message.
"""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import nibabel as nib
import numpy as np

from qsmbids import __version__
from qsmbids.entities import join_entities
from qsmbids.recon.units import PHASE_UNITS
from qsmbids.sim.phantom import to_qsmci_seg
from qsmbids.sim.subject import AcquisitionSpec, SubjectSimulation, SubjectSpec, simulate_subject
from qsmbids.sim.tissues import LABEL_NAMES, tissue_table
from qsmbids.sim.vendor_phase import PhaseUnits, encode_phase

BrokenKind = Literal["missing-echo", "missing-echotime", "corrupt-nifti"]
BROKEN_KINDS = ("missing-echo", "missing-echotime", "corrupt-nifti")
BIDS_VERSION = "1.10.0"
#: magnitude scale: M0 of CSF is written as this value
MAGNITUDE_SCALE = 1000.0


@dataclass(frozen=True)
class BrokenRun:
    """A run to break on purpose.

    Attributes
    ----------
    subject
        Subject label (without ``sub-``).
    kind
        ``missing-echo`` (echo 2 deleted), ``missing-echotime`` (no EchoTime in echo
        1's sidecars) or ``corrupt-nifti`` (echo 1's phase truncated).
    session, run
        Session label / run number of the run (None: the first/only one).
    """

    subject: str
    kind: BrokenKind
    session: str | None = None
    run: int | None = None


@dataclass(frozen=True)
class SimulationSettings:
    """What :func:`simulate_dataset` writes.

    Attributes
    ----------
    n_subjects
        Number of participants (labelled 01, 02, ...).
    sessions
        Session labels (empty: no session level).
    runs
        Runs per session (a ``run-<n>`` entity is added when more than one).
    voxel_size_mm
        Acquisition voxel size, mm (one value or three).
    field_strength_t
        B0, tesla.
    echo_times_s
        Echo times, s.
    snr
        First-echo brain SNR (None: noise free).
    oblique_deg
        Slab tilt against B0, deg (0: axial).
    phase_units
        ``rad``, ``siemens`` or ``arbitrary``.
    ages, sexes
        Per subject (default: ages spread over 20..80 years, sexes alternating F/M).
    seed
        Seed of everything random (anatomy, pose, noise).
    warp_mm
        Amplitude of each subject's nonlinear warp, mm.
    phase_offset, residual_shim_ppm
        Receiver phase offset on/off; residual-shim field amplitude, ppm.
    calcification, microbleed
        Lesions in every subject.
    broken
        Runs to break on purpose.
    groundtruth
        Write ``derivatives/groundtruth``.
    compress
        Write ``.nii.gz`` (default) or plain ``.nii`` files (faster, for tests).
    """

    n_subjects: int = 3
    sessions: tuple[str, ...] = ()
    runs: int = 1
    voxel_size_mm: float | tuple[float, float, float] = 2.0
    field_strength_t: float = 3.0
    echo_times_s: tuple[float, ...] = (0.004, 0.010, 0.016, 0.022)
    snr: float | None = 50.0
    oblique_deg: float = 0.0
    phase_units: PhaseUnits = "rad"
    ages: tuple[float, ...] | None = None
    sexes: tuple[str, ...] | None = None
    seed: int = 0
    warp_mm: float = 2.0
    phase_offset: bool = True
    residual_shim_ppm: float = 0.05
    calcification: bool = True
    microbleed: bool = False
    broken: tuple[BrokenRun, ...] = ()
    groundtruth: bool = True
    compress: bool = True

    @property
    def extension(self) -> str:
        return ".nii.gz" if self.compress else ".nii"

    def __post_init__(self):
        if self.n_subjects < 1 or self.runs < 1:
            raise ValueError("n_subjects and runs must be >= 1")
        if self.phase_units not in PHASE_UNITS:
            raise ValueError(f"phase_units must be one of {PHASE_UNITS}, got {self.phase_units!r}")
        if not self.echo_times_s or min(self.echo_times_s) <= 0 or max(self.echo_times_s) > 0.5:
            raise ValueError(f"echo times must be positive seconds, got {self.echo_times_s}")
        if list(self.echo_times_s) != sorted(self.echo_times_s):
            raise ValueError(f"echo times must increase, got {self.echo_times_s}")
        for attr in ("ages", "sexes"):
            values = getattr(self, attr)
            if values is not None and len(values) != self.n_subjects:
                raise ValueError(f"{attr} needs one value per subject ({self.n_subjects})")
        for label in self.sessions:
            if not label.isalnum():
                raise ValueError(f"session labels are alphanumeric, got {label!r}")
        for b in self.broken:
            if b.kind not in BROKEN_KINDS:
                raise ValueError(f"broken run kind must be one of {BROKEN_KINDS}, got {b.kind}")

    @property
    def subject_labels(self) -> list[str]:
        width = max(2, len(str(self.n_subjects)))
        return [f"{n:0{width}d}" for n in range(1, self.n_subjects + 1)]

    @property
    def subject_ages(self) -> list[float]:
        if self.ages is not None:
            return [float(a) for a in self.ages]
        if self.n_subjects == 1:
            return [40.0]
        return [float(a) for a in np.round(np.linspace(20, 80, self.n_subjects), 1)]

    @property
    def subject_sexes(self) -> list[str]:
        return list(self.sexes) if self.sexes is not None else \
            ["F" if n % 2 == 0 else "M" for n in range(self.n_subjects)]


@dataclass(frozen=True)
class SimulatedRun:
    """What was written for one run (paths relative to the dataset root)."""

    subject: str
    session: str | None
    run: int | None
    prefix: str
    magnitude: tuple[str, ...]
    phase: tuple[str, ...]
    truth: dict[str, str] = field(default_factory=dict)
    broken: str | None = None


@dataclass(frozen=True)
class SimulatedDataset:
    """Summary of a simulated dataset."""

    root: Path
    settings: SimulationSettings
    runs: tuple[SimulatedRun, ...]
    participants: tuple[dict, ...]

    @property
    def groundtruth(self) -> Path:
        return self.root / "derivatives" / "groundtruth"


def save_nifti(data: np.ndarray, affine: np.ndarray, path: Path,
               scaling: tuple[float, float] | None = None) -> None:
    """Write a NIfTI-1 image in scanner coordinates (qform and sform codes 1, mm, s)."""
    img = nib.Nifti1Image(data, affine)
    img.header.set_data_dtype(data.dtype)
    img.header.set_xyzt_units("mm", "sec")
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    if scaling is not None:
        img.header.set_slope_inter(*scaling)
    path.parent.mkdir(parents=True, exist_ok=True)
    content = img.to_bytes()
    if path.name.endswith(".gz"):  # fast compression: noisy images barely compress anyway
        content = gzip.compress(content, compresslevel=1, mtime=0)
    path.write_bytes(content)


def _write_json(path: Path, content) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content, indent=2) + "\n")


def _write_tsv(path: Path, header: Sequence[str], rows: Sequence[Sequence]) -> None:
    lines = ["\t".join(header)] + ["\t".join(str(v) for v in row) for row in rows]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def _prefix(subject: str, session: str | None, run: int | None) -> str:
    return join_entities({"sub": subject, "ses": session, "run": run})


def _anat_dir(subject: str, session: str | None) -> Path:
    path = Path(f"sub-{subject}")
    return (path / f"ses-{session}" if session is not None else path) / "anat"


def _sidecar(settings: SimulationSettings, te: float, echo: int, part: str, units: str | None):
    side = {
        "EchoTime": te,
        "EchoNumber": echo,
        "MagneticFieldStrength": settings.field_strength_t,
        "ImagingFrequency": round(42.577478518 * settings.field_strength_t, 4),
        "Manufacturer": "qsmbids simulator",
        "ManufacturersModelName": f"qsmbids {__version__} digital head phantom",
        "MRAcquisitionType": "3D",
        "ScanningSequence": "GR",
        "RepetitionTime": round(max(settings.echo_times_s) + 0.008, 4),
        "FlipAngle": 15,
        "ImageType": ["ORIGINAL", "PRIMARY", "M" if part == "mag" else "P", "ND"],
    }
    if units is not None:
        side["Units"] = units
    return side


def _region_rows(sim: SubjectSimulation, age: float):
    table = tissue_table(age)
    labels, chi = sim.anatomy.labels, sim.anatomy.chi
    vox = float(np.prod(sim.anatomy.voxel_size))
    rows = []
    for label, name in LABEL_NAMES.items():
        inside = labels == label
        n = int(inside.sum())
        mean = f"{float(chi[inside].mean()):.5f}" if n else "n/a"
        rows.append((label, name, n, round(n * vox, 1), mean, f"{table[label].chi_ppm:.5f}"))
    return rows


def _sidecar_name(image: str) -> str:
    """JSON sidecar of a NIfTI file name."""
    return re.sub(r"\.nii(\.gz)?$", ".json", image)


def _write_truth(root: Path, run: SimulatedRun, sim: SubjectSimulation, age: float,
                 sources: list[str], ext: str) -> dict[str, str]:
    anat_dir = _anat_dir(run.subject, run.session)
    base = anat_dir / f"{run.prefix}_space-orig"
    affine = sim.anatomy.affine
    common = {"Sources": sources, "SpatialReference": "orig",
              "B0Direction": [round(float(v), 6) for v in sim.anatomy.b0_direction],
              "MagneticFieldStrength": sim.field_strength_t, "AgeYears": age}
    outputs = {
        "chi": (f"{base}_Chimap{ext}", sim.anatomy.chi, "ppm",
                "True susceptibility relative to water (whole FOV incl. bone and air)"),
        "mask": (f"{base}_desc-brain_mask{ext}", sim.anatomy.brain_mask.astype(np.uint8), None,
                 "True brain mask"),
        "dseg": (f"{base}_dseg{ext}", sim.anatomy.labels, None, "Phantom tissue labels"),
        "qsmci_dseg": (f"{base}_desc-qsmci_dseg{ext}", to_qsmci_seg(sim.anatomy.labels),
                       None, "Labels in the qsm-ci convention"),
        "localfield": (f"{base}_desc-localfield_fieldmap{ext}", sim.local_field_ppm, "ppm",
                       "Field of the sources inside the brain mask (relative to B0)"),
        "totalfield": (f"{base}_desc-totalfield_fieldmap{ext}", sim.gre.total_field_ppm,
                       "ppm", "Field the phase encodes: all sources plus residual shim"),
        "r2star": (f"{base}_R2starmap{ext}", sim.r2star, "1/s",
                   "True R2* at the acquisition field strength"),
    }
    written = {}
    for key, (name, data, units, description) in outputs.items():
        save_nifti(np.ascontiguousarray(data), affine, root / name)
        side = {"Description": description, **common}
        if units is not None:
            side["Units"] = units
        _write_json(root / _sidecar_name(name), side)
        written[key] = name
    _write_tsv(root / f"{base}_dseg.tsv", ("index", "name"), sorted(LABEL_NAMES.items()))
    _write_tsv(root / f"{base}_desc-qsmci_dseg.tsv", ("index", "name"),
               [(1, "Caudate"), (2, "GlobusPallidus"), (3, "Putamen"), (4, "RedNucleus"),
                (5, "Dentate"), (6, "SubstantiaNigra"), (7, "Thalamus"), (8, "WhiteMatter"),
                (9, "GreyMatter"), (10, "CSF"), (11, "Blood"), (13, "Bone"), (14, "Air"),
                (15, "Muscle"), (16, "Calcification")])
    regions = f"{base}_desc-truth_regions.tsv"
    _write_tsv(root / regions, ("index", "region", "n_voxels", "volume_mm3", "chi_mean_ppm",
                                "chi_tissue_ppm"), _region_rows(sim, age))
    _write_json(root / regions.replace(".tsv", ".json"), {
        "index": {"Description": "Phantom label"},
        "region": {"Description": "Tissue / region name"},
        "n_voxels": {"Description": "Voxels carrying the label"},
        "volume_mm3": {"Description": "Labelled volume", "Units": "mm^3"},
        "chi_mean_ppm": {"Description": "Mean true susceptibility over the labelled voxels "
                                        "(includes partial volume at the soft edges)",
                         "Units": "ppm"},
        "chi_tissue_ppm": {"Description": "Susceptibility of the pure tissue at this age",
                           "Units": "ppm"},
    })
    written["regions"] = regions
    return written


def _break_run(root: Path, run: SimulatedRun, kind: str) -> None:
    if kind == "missing-echo":
        if len(run.magnitude) < 2:
            raise ValueError("a missing-echo run needs at least 2 echoes")
        for name in (run.magnitude[1], run.phase[1]):
            (root / name).unlink()
            (root / _sidecar_name(name)).unlink()
    elif kind == "missing-echotime":
        for name in (run.magnitude[0], run.phase[0]):
            side_path = root / _sidecar_name(name)
            side = json.loads(side_path.read_text())
            side.pop("EchoTime")
            _write_json(side_path, side)
    elif kind == "corrupt-nifti":
        path = root / run.phase[0]
        if path.name.endswith(".gz"):
            raw = gzip.decompress(path.read_bytes())
            path.write_bytes(gzip.compress(raw[: len(raw) // 3]))
        else:
            path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])


def _dataset_files(root: Path, settings: SimulationSettings, participants) -> None:
    _write_json(root / "dataset_description.json", {
        "Name": "qsmbids simulated multi-echo GRE cohort",
        "BIDSVersion": BIDS_VERSION,
        "DatasetType": "raw",
        "License": "CC0",
        "Authors": ["qsmbids simulator"],
        "GeneratedBy": [{"Name": "qsmbids simulate", "Version": __version__,
                         "CodeURL": "https://github.com/qsmbids/qsmbids"}],
    })
    (root / "README").write_text(
        "Simulated multi-echo gradient-echo (MEGRE) data of a digital head phantom, written by "
        f"'qsmbids simulate' (qsmbids {__version__}).\n\n"
        f"Subjects: {settings.n_subjects}; sessions: {list(settings.sessions) or 'none'}; "
        f"runs per session: {settings.runs}.\n"
        f"Field strength {settings.field_strength_t} T; voxel size {settings.voxel_size_mm} mm; "
        f"echo times {list(settings.echo_times_s)} s; SNR {settings.snr}; slab tilt "
        f"{settings.oblique_deg} deg; phase units '{settings.phase_units}'.\n\n"
        "Ground truth (susceptibility in ppm, labels, brain mask, local and total field in "
        "ppm, R2*) is in derivatives/groundtruth.\n")
    _write_tsv(root / "participants.tsv", ("participant_id", "age", "sex"),
               [(p["participant_id"], p["age"], p["sex"]) for p in participants])
    _write_json(root / "participants.json", {
        "participant_id": {"Description": "Participant label"},
        "age": {"Description": "Age of the simulated participant", "Units": "year"},
        "sex": {"Description": "Sex of the simulated participant",
                "Levels": {"F": "female", "M": "male"}},
    })
    if settings.groundtruth:
        _write_json(root / "derivatives" / "groundtruth" / "dataset_description.json", {
            "Name": "qsmbids simulator ground truth",
            "BIDSVersion": BIDS_VERSION,
            "DatasetType": "derivative",
            "GeneratedBy": [{"Name": "qsmbids simulate", "Version": __version__,
                             "CodeURL": "https://github.com/qsmbids/qsmbids"}],
            "SourceDatasets": [{"URL": "bids:raw"}],
            "DatasetLinks": {"raw": "../../"},
        })


def simulate_dataset(out_dir: str | Path, settings: SimulationSettings | None = None
                     ) -> SimulatedDataset:
    """Simulate a cohort and write it as a BIDS dataset (with ground truth).

    Parameters
    ----------
    out_dir
        Dataset root; created if needed (existing files of the same names are replaced).
    settings
        What to simulate (default :class:`SimulationSettings`).

    Returns
    -------
    SimulatedDataset
        Root, settings, runs written (with their file names) and participants.
    """
    settings = settings or SimulationSettings()
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    participants = tuple(
        {"participant_id": f"sub-{label}", "age": age, "sex": sex}
        for label, age, sex in zip(settings.subject_labels, settings.subject_ages,
                                   settings.subject_sexes, strict=True))
    _dataset_files(root, settings, participants)
    acq = AcquisitionSpec(voxel_size_mm=settings.voxel_size_mm,
                          field_strength_t=settings.field_strength_t,
                          echo_times_s=tuple(settings.echo_times_s), snr=settings.snr,
                          phase_offset=settings.phase_offset,
                          residual_shim_ppm=settings.residual_shim_ppm)
    broken = {(b.subject, b.session, b.run): b.kind for b in settings.broken}
    sessions: Sequence[str | None] = settings.sessions or (None,)
    runs: list[SimulatedRun] = []
    for n_sub, (label, age) in enumerate(zip(settings.subject_labels, settings.subject_ages,
                                             strict=True)):
        for n_ses, session in enumerate(sessions):
            for run_index in range(settings.runs):
                run_no = run_index + 1 if settings.runs > 1 else None
                spec = SubjectSpec(age_years=age, seed=settings.seed * 1000 + n_sub,
                                   pose_seed=n_ses * 100 + run_index, warp_mm=settings.warp_mm,
                                   oblique_deg=settings.oblique_deg,
                                   calcification=settings.calcification,
                                   microbleed=settings.microbleed)
                sim = simulate_subject(spec, acq, noise_seed=n_ses * 100 + run_index)
                run = _write_run(root, settings, label, session, run_no, sim, age)
                kind = broken.get((label, session, run_no)) or (
                    broken.get((label, None, None)) if n_ses == 0 and run_index == 0 else None)
                if kind is not None:
                    _break_run(root, run, kind)
                    run = SimulatedRun(**{**run.__dict__, "broken": kind})
                runs.append(run)
    return SimulatedDataset(root, settings, tuple(runs), participants)


def _write_run(root: Path, settings: SimulationSettings, subject: str, session: str | None,
               run_no: int | None, sim: SubjectSimulation, age: float) -> SimulatedRun:
    prefix = _prefix(subject, session, run_no)
    anat_dir = _anat_dir(subject, session)
    mags, phases = [], []
    magnitude = sim.gre.magnitude * np.float32(MAGNITUDE_SCALE)
    phase = sim.gre.phase
    for e, te in enumerate(sim.gre.echo_times_s):
        for part, names in (("mag", mags), ("phase", phases)):
            name = str(anat_dir / f"{prefix}_echo-{e + 1}_part-{part}_MEGRE{settings.extension}")
            if part == "mag":
                data, scaling, units = magnitude[..., e].astype(np.float32), None, None
            else:
                data, scaling, units = encode_phase(phase[..., e], settings.phase_units)
            save_nifti(np.ascontiguousarray(data), sim.anatomy.affine, root / name, scaling)
            _write_json(root / _sidecar_name(name),
                        _sidecar(settings, te, e + 1, part, units))
            names.append(name)
    run = SimulatedRun(subject, session, run_no, prefix, tuple(mags), tuple(phases))
    if settings.groundtruth:
        sources = [f"bids:raw:{name}" for name in (*mags, *phases)]
        truth = _write_truth(root / "derivatives" / "groundtruth", run, sim, age, sources,
                             settings.extension)
        run = SimulatedRun(subject, session, run_no, prefix, tuple(mags), tuple(phases), truth)
    return run
