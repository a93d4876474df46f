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
from qsmbids.registration.job import run_registration

PRESETS = ("fast", "accurate")


@dataclass(frozen=True)
class RegistrationSettings:
    """How to register.

    Attributes
    ----------
    preset
        ``"fast"``: Rigid+Affine, then SyN at 1/4 and 1/2 resolution only
        (40x20 iterations, full resolution skipped); ``"accurate"``: SyN at
        1/8, 1/4, 1/2 and full resolution (100x70x50x20).
    n_threads
        ITK threads (``ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS``, from ``--omp-nthreads``).
        Each registration runs in its own spawned process so the count always holds.
    deterministic
        Fix ANTs' random sampling seed and use ONE thread, as
        ``ants.config.set_ants_deterministic`` does: repeated runs then give
        identical transforms (with 2 threads and a fixed seed they differ slightly,
        measured). Slower: ``n_threads`` is ignored for the registration itself.
    seed
        The seed used when ``deterministic``.
    metric
        Similarity for all stages: ``"mattes"`` (mutual information; GRE
        magnitude vs T1w template) or ``"CC"`` (same contrast, e.g. a T1w target).
    """

    preset: str = "fast"
    n_threads: int = 1
    deterministic: bool = False
    seed: int = 20260101
    metric: str = "mattes"

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise ValueError(f"preset must be one of {PRESETS}, got {self.preset!r}")
        if self.metric not in ("mattes", "CC"):
            raise ValueError(f"metric must be 'mattes' or 'CC', got {self.metric!r}")
        if self.n_threads < 1:
            raise ValueError(f"n_threads must be >= 1, got {self.n_threads}")


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
        QC of the final alignment, inside the target mask: ``"correlation"``
        (Pearson r of warped template vs target) and ``"mutual_information"``
        (Mattes MI, nats, larger is better).
    target
        The registration target written to disk (bias-corrected, masked).
    elapsed_s
        Wall time of the registration(s), seconds.
    """

    template_to_subject: TransformChain
    subject_to_template: TransformChain
    similarity: dict[str, float]
    target: Path
    elapsed_s: float


def _syn_params(settings: RegistrationSettings) -> dict:
    if settings.preset == "fast":
        reg_iterations = (40, 20, 0)
    else:
        reg_iterations = (100, 70, 50, 20)
    return dict(
        type_of_transform="SyNRA",
        aff_metric="mattes",
        aff_sampling=32,
        aff_random_sampling_rate=0.25 if settings.preset == "fast" else 0.5,
        syn_metric=settings.metric,
        syn_sampling=32 if settings.metric == "mattes" else 3,
        reg_iterations=reg_iterations,
    )


def combine_echoes(magnitude) -> nib.Nifti1Image:
    """Root-sum-of-squares over echoes of a 4D (x, y, z, echo) magnitude; 3D passes through."""
    image = load_nifti(magnitude)
    if len(image.shape) == 3:
        return image
    if len(image.shape) != 4:
        raise ValueError(f"magnitude must be 3D or 4D (x, y, z, echo), got {image.shape}")
    data = np.asarray(image.dataobj, dtype=np.float32)
    rss = np.sqrt(np.sum(data * data, axis=3))
    return nib.Nifti1Image(rss, image.affine)


def prepare_target(image, mask=None, *, n4: bool = True, n_threads: int | None = None
                   ) -> nib.Nifti1Image:
    """Registration target from a subject image: echo-combined, N4-corrected, masked.

    Parameters
    ----------
    image
        GRE magnitude (3D or 4D with echoes last) or T1w, nibabel image or path.
    mask
        Brain mask on the same grid (the reconstruction mask); voxels outside are
        set to 0 so that the skull-stripped template meets a skull-stripped target.
    n4
        Correct the receive-coil bias field with ANTs N4 (inside the mask).
    n_threads
        ITK threads.

    Returns
    -------
    nibabel.Nifti1Image
        float32, same grid as ``image``.
    """
    img = combine_echoes(image)
    with itk_threads(n_threads):
        a = to_ants(img)
        m = None
        if mask is not None:
            mask_img = load_nifti(mask)
            if mask_img.shape[:3] != img.shape[:3]:
                raise ValueError(
                    f"mask shape {mask_img.shape} does not match image shape {img.shape}"
                )
            m = to_ants(nib.Nifti1Image((np.asarray(mask_img.dataobj) > 0).astype(np.float32),
                                        img.affine))
        if n4:
            # N4 works on log intensities: fit only where the signal is positive
            fit = a.new_image_like((a.numpy() > 0).astype(np.float32))
            if m is not None:
                fit = fit * m
            a = ants.n4_bias_field_correction(a, mask=fit, shrink_factor=2)
        if m is not None:
            a = a * m
    return from_ants(a, np.float32)


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


def _register(fixed: nib.Nifti1Image, moving: nib.Nifti1Image, out_prefix: Path,
              settings: RegistrationSettings, *, linear: str | None = None
              ) -> tuple[dict, ants.ANTsImage]:
    """Register in a fresh process (exact thread count and seed); return lists + warped."""
    out_prefix.parent.mkdir(parents=True, exist_ok=True)
    if linear is not None:
        params = dict(type_of_transform=linear, aff_metric="mattes", aff_sampling=32,
                      aff_random_sampling_rate=0.25)
    else:
        params = _syn_params(settings)
    with tempfile.TemporaryDirectory(prefix="qsmbids_reg_") as tmp:
        fixed_path, moving_path = Path(tmp, "fixed.nii.gz"), Path(tmp, "moving.nii.gz")
        warped_path = Path(tmp, "warped.nii.gz")
        nib.save(fixed, str(fixed_path))
        nib.save(moving, str(moving_path))
        reg = run_registration(fixed_path, moving_path, out_prefix, warped_path, params,
                               n_threads=1 if settings.deterministic else settings.n_threads,
                               seed=settings.seed if settings.deterministic else None)
        warped = ants.image_read(str(warped_path))
    return reg, warped


def _chain(files: list[str], invert: list[bool] | None = None) -> TransformChain:
    paths = tuple(Path(f) for f in files)
    return TransformChain(paths, tuple(invert) if invert else (False,) * len(paths))


def _inverse_chain(files: list[str]) -> TransformChain:
    # ants.registration's invtransforms: affines are to be inverted, inverse warps not
    return _chain(files, [str(f).endswith(".mat") for f in files])


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
        Preset, threads, determinism, metric.
    target_mask
        Brain mask on the magnitude grid (strongly recommended: the template is
        skull-stripped).
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
    mag = prepare_target(target, target_mask, n4=bias_correct, n_threads=settings.n_threads)
    target_path = out_dir / f"{prefix}desc-regtarget_magnitude.nii.gz"
    nib.save(mag, str(target_path))
    tpl_img = load_nifti(template)
    if t1w is None:
        reg, warped = _register(mag, tpl_img, out_dir / f"{prefix}from-template_to-subject_",
                                settings)
        fwd = _chain(reg["fwdtransforms"])
        inv = _inverse_chain(reg["invtransforms"])
    else:
        t1 = prepare_target(t1w, t1w_mask, n4=bias_correct, n_threads=settings.n_threads)
        reg, _ = _register(t1, tpl_img, out_dir / f"{prefix}from-template_to-T1w_", settings)
        rigid, _ = _register(mag, t1, out_dir / f"{prefix}from-T1w_to-subject_", settings,
                             linear="Rigid")
        fwd = _chain(rigid["fwdtransforms"]) + _chain(reg["fwdtransforms"])
        inv = _inverse_chain(reg["invtransforms"]) + _inverse_chain(rigid["invtransforms"])
        warped = to_ants(apply_transforms(tpl_img, mag, fwd))
    similarity = _similarity(to_ants(mag), warped)
    return RegistrationResult(
        template_to_subject=fwd, subject_to_template=inv, similarity=similarity,
        target=target_path, elapsed_s=time.perf_counter() - t0,
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
