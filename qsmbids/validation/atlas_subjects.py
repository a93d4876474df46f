"""Subjects made from a real atlas, for registration proofs with known labels.

A subject is the atlas's own label image, obliquely placed and smoothly deformed by a
known deformation (:mod:`qsmbids.validation.warps`), so its true labels are exactly
known on its grid; its maps are painted from those labels with values that are NOT
the ones the susceptibility template is painted with (:mod:`qsmbids.atlas.chi_template`
uses the QSM challenge 2.0 phantom's): here the in-vivo 3 T ranges collected in the
project's REFERENCE (section 4), scaled per subject and region, with a smooth texture
inside each region, and age-dependent iron in the iron-rich nuclei. The T1w is the
atlas template itself under the same deformation, with a receive bias and noise.

These maps can be forward-simulated by the peer simulator ``qsm-forward``
(:func:`simulate_atlas_subject`) so that the pipeline's own reconstruction, not the
truth, is what the registration sees.
"""

from __future__ import annotations

import contextlib
import io
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from qsmbids.atlas.chi_template import values_by_region
from qsmbids.atlas.model import Atlas
from qsmbids.validation.warps import known_deformation

#: subject susceptibility per bilateral region at age 40, ppm (middle of the in-vivo
#: 3 T ranges of REFERENCE section 4; CSF 0)
SUBJECT_CHI_PPM: dict[str, float] = {
    "GlobusPallidus": 0.165, "SubstantiaNigra": 0.14, "RedNucleus": 0.115,
    "Dentate": 0.11, "Putamen": 0.06, "Caudate": 0.06, "Thalamus": 0.02,
    "SubthalamicNucleus": 0.09, "WhiteMatter": -0.035, "GreyMatter": 0.01, "CSF": 0.0,
}
#: relative change of the iron-rich nuclei's susceptibility per decade after 40
IRON_PER_DECADE = {"Putamen": 0.12, "RedNucleus": 0.08, "SubstantiaNigra": 0.06,
                   "Dentate": 0.06, "GlobusPallidus": 0.02, "Caudate": 0.03}
#: proton density and R2* at 3 T (1/s) of the tissues; nuclei: R2* = 14 + 120 chi
M0 = {"WhiteMatter": 0.72, "GreyMatter": 0.88, "CSF": 1.0}
R2STAR_3T = {"WhiteMatter": 21.0, "GreyMatter": 16.0, "CSF": 4.0}


@dataclass(frozen=True)
class AtlasSubjectSpec:
    """How one subject differs from the atlas.

    Attributes
    ----------
    name
        Letters and digits (a BIDS label).
    age_years
        Age; the iron-rich nuclei change with it (:data:`IRON_PER_DECADE`).
    amplitude_mm, smooth_mm
        Peak and spacing of the smooth random displacement.
    angles_deg, shift_mm
        Oblique placement of the subject grid.
    value_spread
        Per-region multiplicative spread of the susceptibility (uniform +- this).
    texture_ppm
        Standard deviation of the smooth texture added inside the brain, ppm.
    seed
        Seed of the deformation, the values and the texture.
    """

    name: str
    age_years: float = 40.0
    amplitude_mm: float = 3.0
    smooth_mm: float = 25.0
    angles_deg: tuple[float, float, float] = (10.0, -6.0, 4.0)
    shift_mm: tuple[float, float, float] = (3.0, -2.0, 2.0)
    value_spread: float = 0.15
    texture_ppm: float = 0.006
    seed: int = 1


@dataclass(frozen=True)
class AtlasSubject:
    """A subject's truth on its own (oblique) 1 mm grid, as NIfTI images.

    Attributes
    ----------
    spec
        What was made.
    labels
        True atlas labels (int16).
    chi
        True susceptibility, ppm (relative to CSF).
    m0, r2star
        Proton density (a.u.) and R2* at 3 T (1/s).
    t1w
        T1w: the atlas template under the deformation, with bias and noise.
    brain
        Brain mask (uint8).
    """

    spec: AtlasSubjectSpec
    labels: nib.Nifti1Image
    chi: nib.Nifti1Image
    m0: nib.Nifti1Image
    r2star: nib.Nifti1Image
    t1w: nib.Nifti1Image
    brain: nib.Nifti1Image


def _label_values(atlas: Atlas, table: dict[str, float], default: float) -> dict[int, float]:
    return values_by_region(atlas.label_names, atlas.regions, atlas.references, table,
                            default)


def _lut(values: dict[int, float], top: int) -> np.ndarray:
    lut = np.zeros(top + 1, np.float32)
    for label, value in values.items():
        if label <= top:
            lut[label] = value
    return lut


def make_atlas_subject(atlas: Atlas, spec: AtlasSubjectSpec) -> AtlasSubject:
    """Paint and deform one subject (see the module docstring).

    Parameters
    ----------
    atlas
        A qsmbids atlas (labels, regions, references, T1w template), e.g. the default
        MNI atlas at 1 mm.
    spec
        The subject's deformation, age and value spread.
    """
    rng = np.random.default_rng(spec.seed)
    lab_img = nib.load(str(atlas.labels))
    labels = np.asarray(lab_img.dataobj).astype(np.int32)
    top = int(labels.max())
    decades = (spec.age_years - 40.0) / 10.0
    chi_table = {}
    for name, value in SUBJECT_CHI_PPM.items():
        scale = 1.0 + IRON_PER_DECADE.get(name, 0.0) * decades
        if name not in ("WhiteMatter", "GreyMatter", "CSF"):
            scale *= 1.0 + rng.uniform(-spec.value_spread, spec.value_spread)
        chi_table[name] = value * scale
    chi_values = _label_values(atlas, chi_table, chi_table["GreyMatter"])
    chi = _lut(chi_values, top)[labels]
    brain = labels > 0
    texture = ndimage.gaussian_filter(rng.standard_normal(labels.shape).astype(np.float32), 3.0)
    texture *= spec.texture_ppm / max(float(texture[brain].std()), 1e-12)
    chi = np.where(brain, ndimage.gaussian_filter(chi, 0.5) + texture, 0.0)
    nuclei = {label for name, labs in atlas.regions.items() for label in labs}
    m0_values = _label_values(atlas, M0, M0["GreyMatter"])
    r2_values = _label_values(atlas, R2STAR_3T, R2STAR_3T["GreyMatter"])
    for label in nuclei:
        m0_values[label] = 0.85
        r2_values[label] = 14.0 + 120.0 * max(chi_values.get(label, 0.0), 0.0)
    m0 = ndimage.gaussian_filter(_lut(m0_values, top)[labels], 0.5) * brain
    r2star = ndimage.gaussian_filter(_lut(r2_values, top)[labels], 0.5) * brain
    t1 = np.asarray(nib.load(str(atlas.template)).dataobj, np.float32)
    warp = known_deformation(lab_img.affine, labels.shape, angles_deg=spec.angles_deg,
                             shift_mm=spec.shift_mm, amplitude_mm=spec.amplitude_mm,
                             smooth_mm=spec.smooth_mm, seed=spec.seed)
    t1_subject = warp.apply(t1)
    grid = np.indices(warp.shape, dtype=np.float32)
    bias = 1.0 + 0.1 * np.cos(grid[0] / warp.shape[0] * np.pi) * np.cos(
        grid[1] / warp.shape[1] * np.pi)
    scale = float(np.percentile(t1_subject[t1_subject > 0], 99)) if np.any(t1_subject) else 1
    t1_subject = (t1_subject * bias + rng.normal(0, 0.01 * scale, warp.shape)) * (
        t1_subject > 0)
    # the subject grid is the scanner's: axis-aligned, origin 0; the anatomy on it is
    # rotated by ``angles_deg`` (a tilted head) and deformed
    affine = np.diag([*np.sqrt((warp.affine[:3, :3] ** 2).sum(axis=0)), 1.0])

    def image(data: np.ndarray, dtype=np.float32) -> nib.Nifti1Image:
        img = nib.Nifti1Image(np.asarray(data).astype(dtype), affine)
        img.header.set_xyzt_units("mm")
        return img

    return AtlasSubject(
        spec=spec, labels=image(warp.apply(labels, order=0), np.int16),
        chi=image(warp.apply(chi)), m0=image(warp.apply(m0)),
        r2star=image(warp.apply(r2star)), t1w=image(t1_subject),
        brain=image(warp.apply(brain.astype(np.uint8), order=0), np.uint8))


@dataclass(frozen=True)
class SimulatedAtlasSubject:
    """An atlas subject forward-simulated by qsm-forward.

    Attributes
    ----------
    bids_dir
        Raw BIDS dataset: ``sub-<name>/anat/sub-<name>_echo-N_part-*_MEGRE.nii`` and the
        subject's T1w (``sub-<name>_T1w.nii.gz``, on its own 1 mm grid).
    truth_dir
        ``labels``, ``chi`` and ``brain`` on the acquisition grid (nearest neighbour
        for labels), and the 1 mm truth.
    """

    bids_dir: Path
    truth_dir: Path

    def truth(self) -> tuple[np.ndarray, np.ndarray, nib.Nifti1Image]:
        """True labels (int) and chi (ppm) on the acquisition grid, and that grid's image."""
        labels = nib.load(str(self.truth_dir / "labels_acq.nii.gz"))
        chi = np.asarray(nib.load(str(self.truth_dir / "chi_acq.nii.gz")).dataobj, np.float32)
        return np.asarray(labels.dataobj).astype(np.int32), chi, labels


def simulate_atlas_subject(subject: AtlasSubject, out_dir: str | Path, *,
                           voxel_size_mm: float = 1.0, peak_snr: float = 80.0,
                           echo_times_s: tuple[float, ...] = (0.004, 0.010, 0.016, 0.022),
                           field_strength_t: float = 3.0) -> SimulatedAtlasSubject:
    """Forward-simulate ``subject`` with qsm-forward (brain-only signal, its phase offset
    and shim, complex noise) into ``out_dir`` (reused when already made alike).

    Parameters
    ----------
    subject
        From :func:`make_atlas_subject` (1 mm grid).
    out_dir
        Folder for ``bids/`` and ``truth/``.
    voxel_size_mm
        Isotropic acquisition voxel size (k-space cropped from the 1 mm maps).
    peak_snr, echo_times_s, field_strength_t
        Acquisition.
    """
    import qsm_forward

    out = Path(out_dir)
    bids, truth = out / "bids", out / "truth"
    name = subject.spec.name
    stamp = out / "subject.json"
    record = json.dumps({**asdict(subject.spec), "voxel_size_mm": voxel_size_mm,
                         "peak_snr": peak_snr, "echo_times_s": list(echo_times_s),
                         "field_strength_t": field_strength_t, "revision": 1},
                        sort_keys=True)
    made = SimulatedAtlasSubject(bids, truth)
    if stamp.is_file() and stamp.read_text() == record:
        return made
    truth.mkdir(parents=True, exist_ok=True)
    inputs = out / "inputs"
    inputs.mkdir(parents=True, exist_ok=True)
    affine = subject.chi.affine  # axis-aligned, origin 0 (qsm-forward drops the origin)
    brain = np.asarray(subject.brain.dataobj) > 0
    paths = {}
    for key, data in (("chi", subject.chi), ("M0", subject.m0), ("R2star", subject.r2star),
                      ("R1", nib.Nifti1Image(brain.astype(np.float32), affine)),
                      ("mask", subject.brain), ("seg", subject.brain)):
        paths[key] = str(inputs / f"{key}.nii")
        nib.save(nib.Nifti1Image(np.asarray(data.dataobj, np.float32), affine), paths[key])
    tissue = qsm_forward.TissueParams(root_dir="", **paths)
    recon = qsm_forward.ReconParams(
        subject=name, TEs=np.asarray(echo_times_s, float), TR=0.05, flip_angle=15,
        B0=field_strength_t, B0_dir=np.array([0.0, 0.0, 1.0]),
        generate_phase_offset=True, generate_shim_field=True,
        voxel_size=np.full(3, float(voxel_size_mm)), peak_snr=peak_snr,
        random_seed=subject.spec.seed)
    with contextlib.redirect_stdout(io.StringIO()):
        qsm_forward.generate_bids(tissue, recon, str(bids))
    sample = sorted((bids / f"sub-{name}" / "anat").glob("*_MEGRE.nii"))[0]
    grid = nib.load(str(sample))
    size = np.full(3, float(voxel_size_mm))
    for key, img, interp in (("labels", subject.labels, "nearest"),
                             ("chi", subject.chi, "linear"), ("brain", subject.brain, "nearest")):
        nib.save(img, str(truth / f"{key}_1mm.nii.gz"))
        # qsm-forward's own resize, as for its truth derivatives
        small = qsm_forward.resize(nib.Nifti1Image(np.asarray(img.dataobj, np.float32), affine),
                                   size, interp)
        data = np.asarray(small.dataobj, np.float32)
        if interp == "nearest":
            data = np.rint(data).astype(np.int16)
        nib.save(nib.Nifti1Image(data, grid.affine), str(truth / f"{key}_acq.nii.gz"))
    t1 = nib.Nifti1Image(np.asarray(subject.t1w.dataobj, np.float32), affine)
    nib.save(t1, str(bids / f"sub-{name}" / "anat" / f"sub-{name}_T1w.nii.gz"))
    stamp.write_text(record)
    return made

