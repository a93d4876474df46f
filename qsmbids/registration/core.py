"""Template -> subject registration with ANTs (antspyx), and warping through it.

Target: the subject's GRE magnitude (echoes combined, N4 bias-corrected, skull
stripped with the reconstruction mask), or, when the dataset has one, the T1w:
template -> T1w with Rigid+Affine+SyN, then T1w -> magnitude rigid, composed.

Transforms are written to files and returned as :class:`TransformChain` objects
(file list in ``antsApplyTransforms`` order plus inversion flags) so that every
warp can be redone from the saved derivatives alone.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import ants
import nibabel as nib
import numpy as np

from qsmbids.registration.antsio import from_ants, itk_threads, load_nifti, to_ants
from qsmbids.registration.grids import crop_to_mask, to_working_grid
from qsmbids.registration.job import run_registration
from qsmbids.registration.schedules import PRESETS, SCHEDULES, Schedule
from qsmbids.registration.stages import linear_stage, registration_command, syn_stage
from qsmbids.registration.targets import (  # noqa: F401  (re-exported: part of this API)
    N4_FIT_VOXEL_MM,
    combine_echoes,
    n4_shrink_factor,
    prepare_target,
)

METRICS = ("mattes", "CC")


@dataclass(frozen=True)
class RegistrationSettings:
    """How to register.

    Attributes
    ----------
    preset
        ``"fast"``: every stage on a 2 mm working grid (target and template
        resampled to it, anti-aliased), SyN levels at 8, 4 and 2 mm;
        ``"accurate"``: the target's own grid, SyN levels down to it. The
        schedules are in :data:`SCHEDULES`.
    n_threads
        ITK threads (``ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS``, from ``--omp-nthreads``).
        Each registration runs in its own child process so the count always holds.
    deterministic
        Use ONE thread, as ``ants.config.set_ants_deterministic`` does: repeated runs
        then give identical transforms. Slower: ``n_threads`` is ignored for the
        registration itself. With more threads and the same seed runs differ: on the
        project's 70-year-old phantom at 1 mm (2 threads, three runs) the anatomical
        stage put the pallidum's regional mean 0.0001-0.0150 ppm off.
    seed
        ANTs' random seed, always given (ANTs otherwise draws one per run). The
        presets' metrics sample every voxel, so it changes nothing today; with one
        thread, which is what a registration gets on 2 cores beside the reconstruction,
        reruns give identical transforms without ``deterministic``.
    metric
        Similarity of the deformable (SyN) stage: ``"mattes"`` (mutual information,
        for different contrasts: GRE magnitude vs a T1w template) or ``"CC"``
        (local cross-correlation, for the same contrast: a magnitude template on a
        magnitude target, a T1w template on a T1w). The linear stages always use
        mutual information. :func:`metric_for_contrasts` picks one.
    refined
        A susceptibility refinement of the deep grey matter follows
        (:mod:`qsmbids.registration.refine`): the rigid, affine and SyN stages stop one
        level before their finest (for ``fast``, at 4 instead of 2 mm), which halves
        the SyN's cost; the refinement then places the nuclei (on a 1.5 mm grid).
        The rigid and affine stages stop at the same level whether refined or not
        (their schedule ends one level above the SyN's, see :data:`SCHEDULES`).
    """

    preset: str = "fast"
    n_threads: int = 1
    deterministic: bool = False
    seed: int = 20260101
    metric: str = "mattes"
    refined: bool = False

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise ValueError(f"preset must be one of {PRESETS}, got {self.preset!r}")
        if self.metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, got {self.metric!r}")
        if self.n_threads < 1:
            raise ValueError(f"n_threads must be >= 1, got {self.n_threads}")


def metric_for_contrasts(template_contrast: str, target_contrast: str) -> str:
    """The SyN metric for a template/target contrast pair: ``CC`` if equal, else ``mattes``.

    Contrasts are names such as ``"T1w"`` or ``"magnitude"`` (see
    :attr:`qsmbids.atlas.model.Atlas.template_contrast`). Measured on the phantom at
    1 mm (fast preset, magnitude template on a magnitude target): CC gives Dice
    0.95 for the pallidum against 0.86 with mutual information.
    """
    return "CC" if template_contrast == target_contrast else "mattes"



#: margin kept around the target mask when the working grid is cropped, mm
CROP_MARGIN_MM = 6.0


@dataclass(frozen=True)
class TransformChain:
    """Transform files in ``antsApplyTransforms`` order (the last one acts first).

    Attributes
    ----------
    files
        ``.mat`` (ITK affine) and ``.nii.gz`` (displacement field) files.
    invert
        Whether each file is used inverted (affines only).
    """

    files: tuple[Path, ...]
    invert: tuple[bool, ...]

    def __post_init__(self) -> None:
        if len(self.files) != len(self.invert):
            raise ValueError("files and invert must have the same length")

    def __add__(self, other: TransformChain) -> TransformChain:
        return TransformChain(self.files + other.files, self.invert + other.invert)


@dataclass(frozen=True)
class RegistrationResult:
    """Output of :func:`register_template_to_subject`.

    Attributes
    ----------
    template_to_subject
        Brings template-space images onto the subject grid (labels, masks).
    subject_to_template
        Brings subject-space maps into template space (QSM).
    similarity
        QC of the final alignment, inside the target mask (on the working grid; on the
        magnitude grid for the T1w route): ``"correlation"``
        (Pearson r of warped template vs target) and ``"mutual_information"``
        (Mattes MI, nats, larger is better).
    target
        The registration target written to disk (bias-corrected, masked).
    elapsed_s
        Wall time of the registration(s), seconds.
    metric
        The SyN metric used (``"mattes"`` or ``"CC"``).
    anatomy
        The image the template was matched to, on the magnitude grid: ``target``, or
        for the T1w route the prepared T1w resampled onto the magnitude through the
        rigid transform (the anatomy channel of a susceptibility refinement).
    """

    template_to_subject: TransformChain
    subject_to_template: TransformChain
    similarity: dict[str, float]
    target: Path
    elapsed_s: float
    metric: str = "mattes"
    anatomy: Path | None = None


def _similarity(fixed: ants.ANTsImage, warped: ants.ANTsImage) -> dict[str, float]:
    f = fixed.numpy()
    w = warped.numpy()
    inside = f > 0
    if inside.sum() < 2:
        return {"correlation": float("nan"), "mutual_information": float("nan")}
    r = float(np.corrcoef(f[inside], w[inside])[0, 1])
    mask = fixed.new_image_like(inside.astype(np.float32))
    mi = -float(ants.image_similarity(fixed, warped, metric_type="MattesMutualInformation",
                                      fixed_mask=mask))
    return {"correlation": r, "mutual_information": mi}


def _isotropic_working_voxel(schedule: Schedule, fixed: ants.ANTsImage,
                             moving: ants.ANTsImage) -> float:
    """Working voxel size (mm): the preset's, never finer than either image's finest axis."""
    finest = max(min(fixed.spacing), min(moving.spacing))
    return max(schedule.working_voxel_mm or 0.0, finest)


def _register(fixed: nib.Nifti1Image, moving: nib.Nifti1Image, out_prefix: Path,
              settings: RegistrationSettings, *, fixed_mask: nib.Nifti1Image | None = None,
              linear: str | None = None
              ) -> tuple[TransformChain, TransformChain, dict[str, float]]:
    """Register ``moving`` onto ``fixed`` in a child process.

    The images are brought to the preset's working grid first (the fixed image
    cropped to its mask plus :data:`CROP_MARGIN_MM`); transforms live in physical
    space, so they apply to the original grids. ``linear`` (``"Rigid"``) runs that
    stage alone.

    Returns
    -------
    (forward, inverse, similarity)
        The transform chains and the similarity of the registered moving image to
        the fixed one on the working grid (:func:`_similarity`).
    """
    schedule = SCHEDULES[settings.preset]
    out_prefix.parent.mkdir(parents=True, exist_ok=True)
    for old in out_prefix.parent.glob(out_prefix.name + "*"):
        old.unlink()  # a rerun in the same folder must not pick up stale files
    with tempfile.TemporaryDirectory(prefix="qsmbids_reg_") as tmp:
        fixed_a, moving_a = to_ants(fixed), to_ants(moving)
        mask_a = None
        if fixed_mask is not None:
            mask_a = to_ants(nib.Nifti1Image(
                (np.asarray(fixed_mask.dataobj) > 0).astype(np.float32), fixed_mask.affine))
            fixed_a, mask_a = crop_to_mask(fixed_a, mask_a, CROP_MARGIN_MM)
        voxel = _isotropic_working_voxel(schedule, fixed_a, moving_a)
        fixed_a = to_working_grid(fixed_a, voxel)
        moving_a = to_working_grid(moving_a, voxel)
        paths = {name: str(Path(tmp, f"{name}.nii.gz"))
                 for name in ("fixed", "moving", "mask", "warped")}
        ants.image_write(fixed_a, paths["fixed"])
        ants.image_write(moving_a, paths["moving"])
        if mask_a is not None:
            ants.image_write(to_working_grid(mask_a, voxel, label=True), paths["mask"])
        f, m = paths["fixed"], paths["moving"]
        lin = (schedule.linear_shrink, schedule.linear_smooth, schedule.linear_iterations)
        sampling = schedule.linear_sampling
        if linear is not None:
            stages = [linear_stage(linear, f, m, *lin, sampling=sampling)]
        else:
            levels = slice(None, -1) if settings.refined else slice(None)
            stages = [linear_stage("Rigid", f, m, *lin, sampling=sampling),
                      linear_stage("Affine", f, m, *lin, sampling=sampling),
                      syn_stage(settings.metric, f, m, schedule.syn_shrink[levels],
                                schedule.syn_smooth[levels],
                                schedule.syn_iterations[settings.metric][levels],
                                convergence=schedule.syn_convergence,
                                cc_radius=schedule.cc_radius, step=schedule.syn_step)]
        args = registration_command(
            f, m, str(out_prefix), stages,
            fixed_mask=paths["mask"] if mask_a is not None else None,
            seed=settings.seed, warped=paths["warped"])
        run_registration(args, n_threads=1 if settings.deterministic else settings.n_threads,
                         description=f"{out_prefix.name}: moving onto fixed ({voxel:g} mm grid)")
        similarity = _similarity(fixed_a, ants.image_read(paths["warped"]))
    affine = Path(f"{out_prefix}0GenericAffine.mat")
    if linear is not None:
        return (checked_chain(TransformChain((affine,), (False,))),
                TransformChain((affine,), (True,)), similarity)
    warp = Path(f"{out_prefix}1Warp.nii.gz")
    inverse_warp = Path(f"{out_prefix}1InverseWarp.nii.gz")
    forward = checked_chain(TransformChain((warp, affine), (False, False)))
    inverse = checked_chain(TransformChain((affine, inverse_warp), (True, False)))
    return forward, inverse, similarity


def checked_chain(chain: TransformChain) -> TransformChain:
    """``chain`` itself, once every file of it exists (RuntimeError naming the missing)."""
    missing = [str(f) for f in chain.files if not f.is_file()]
    if missing:
        raise RuntimeError(f"ANTs did not write the transform file(s) {', '.join(missing)}")
    return chain


def _load_mask(mask) -> nib.Nifti1Image | None:
    """A brain mask (image or path) read once into memory as uint8 (None passes through).

    It is used twice (N4 fit and target masking, then crop and metric mask): from
    memory, not re-read from disk each time.
    """
    if mask is None:
        return None
    image = load_nifti(mask)
    return nib.Nifti1Image((np.asarray(image.dataobj) > 0).astype(np.uint8), image.affine)


def register_template_to_subject(
    template,
    target,
    out_dir: str | os.PathLike,
    settings: RegistrationSettings = RegistrationSettings(),
    *,
    target_mask=None,
    t1w=None,
    t1w_mask=None,
    bias_correct: bool = True,
    prefix: str = "",
) -> RegistrationResult:
    """Register a template to a subject; write the transforms into ``out_dir``.

    Parameters
    ----------
    template
        Skull-stripped template image (nibabel image or path), any grid.
    target
        The subject's GRE magnitude (3D, or 4D with echoes last), nibabel image or path.
    out_dir
        Folder for the transform files and the prepared target.
    settings
        Preset, threads, determinism, SyN metric (for a T1w route: the metric of
        template -> T1w; T1w -> magnitude is rigid with mutual information).
    target_mask
        Brain mask on the magnitude grid (strongly recommended: the template is
        skull-stripped; it is also the metric mask and the crop of the working grid).
    t1w, t1w_mask
        Optional T1w of the same session (and its brain mask): then the template is
        registered to the T1w with SyN and the T1w rigidly to the magnitude, and the
        two are composed.
    bias_correct
        Apply N4 to the magnitude (and T1w) before registering.
    prefix
        File name prefix of the outputs (e.g. ``sub-01_ses-1_``).

    Returns
    -------
    RegistrationResult
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    mag_mask = _load_mask(target_mask)
    mag = prepare_target(target, mag_mask, n4=bias_correct, n_threads=settings.n_threads)
    target_path = out_dir / f"{prefix}desc-regtarget_magnitude.nii"
    nib.save(mag, str(target_path))
    tpl_img = load_nifti(template)
    anatomy_path = target_path
    if t1w is None:
        fwd, inv, similarity = _register(
            mag, tpl_img, out_dir / f"{prefix}from-template_to-subject_", settings,
            fixed_mask=mag_mask)
    else:
        t1_mask = _load_mask(t1w_mask)
        t1 = prepare_target(t1w, t1_mask, n4=bias_correct, n_threads=settings.n_threads)
        syn_fwd, syn_inv, _ = _register(
            t1, tpl_img, out_dir / f"{prefix}from-template_to-T1w_", settings,
            fixed_mask=t1_mask)
        rigid_fwd, rigid_inv, _ = _register(
            mag, t1, out_dir / f"{prefix}from-T1w_to-subject_", settings, fixed_mask=mag_mask,
            linear="Rigid")
        fwd = rigid_fwd + syn_fwd
        inv = syn_inv + rigid_inv
        # the composed chain, judged on the magnitude grid
        warped = to_ants(apply_transforms(tpl_img, mag, fwd, n_threads=settings.n_threads))
        similarity = _similarity(to_ants(mag), warped)
        anatomy_path = out_dir / f"{prefix}desc-regtarget_T1w.nii"
        nib.save(apply_transforms(t1, mag, rigid_fwd, n_threads=settings.n_threads),
                 str(anatomy_path))
    return RegistrationResult(
        template_to_subject=fwd, subject_to_template=inv, similarity=similarity,
        target=target_path, elapsed_s=time.perf_counter() - t0, metric=settings.metric,
        anatomy=anatomy_path,
    )


def apply_transforms(image, reference, chain: TransformChain, *, interpolation: str = "linear",
                     n_threads: int | None = None) -> nib.Nifti1Image:
    """Resample ``image`` onto the grid of ``reference`` through ``chain``.

    Parameters
    ----------
    image, reference
        nibabel images or paths (3D).
    chain
        Transforms mapping the reference space to the image space, as returned in
        :class:`RegistrationResult`.
    interpolation
        ANTs interpolator: ``linear``, ``genericLabel``, ``nearestNeighbor``, ...
    n_threads
        ITK threads (``None``: as already set in this process).

    Returns
    -------
    nibabel.Nifti1Image
        float32 on the reference grid (labels: cast by the caller).
    """
    missing = [f for f in chain.files if not Path(f).is_file()]
    if missing:
        raise FileNotFoundError(f"transform file(s) missing: {', '.join(map(str, missing))}")
    with itk_threads(n_threads):
        out = ants.apply_transforms(to_ants(reference), to_ants(image),
                                    [str(f) for f in chain.files],
                                    interpolator=interpolation, whichtoinvert=list(chain.invert))
    return from_ants(out, np.float32)


def warp_labels_to_subject(labels, reference, chain: TransformChain, *,
                           interpolation: str = "genericLabel", n_threads: int | None = None
                           ) -> nib.Nifti1Image:
    """Warp an integer label image (template space) onto the subject grid.

    ``genericLabel`` (default) interpolates each label's indicator smoothly and
    keeps the most likely label; ``nearestNeighbor`` is the alternative.

    Returns
    -------
    nibabel.Nifti1Image
        int16 labels on the grid of ``reference``.
    """
    if interpolation not in ("genericLabel", "nearestNeighbor"):
        raise ValueError(f"labels need genericLabel or nearestNeighbor, got {interpolation!r}")
    out = apply_transforms(labels, reference, chain, interpolation=interpolation,
                           n_threads=n_threads)
    data = np.rint(np.asarray(out.dataobj)).astype(np.int16)
    img = nib.Nifti1Image(data, out.affine)
    img.header.set_xyzt_units("mm")
    return img


def warp_to_template(subject_map, template, chain: TransformChain, *,
                     n_threads: int | None = None
                     ) -> nib.Nifti1Image:
    """Warp a subject-space map (e.g. QSM in ppm) to template space, linear interpolation.

    ``chain`` is :attr:`RegistrationResult.subject_to_template`.
    """
    return apply_transforms(subject_map, template, chain, interpolation="linear",
                            n_threads=n_threads)
