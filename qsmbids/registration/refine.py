"""Refine an anatomical template registration on the susceptibility contrast.

The iron-rich nuclei (pallidum, nigra, red nucleus, dentate, subthalamic nucleus)
are nearly invisible on T1w and faint on the GRE magnitude, but they are the
brightest structures of a susceptibility map. After the anatomical registration
(:func:`qsmbids.registration.core.register_template_to_subject`), the atlas's
susceptibility template (:mod:`qsmbids.atlas.chi_template`) is brought onto the
subject through it, and a SyN stage with local cross-correlation registers that
warped template to the subject's map inside a box around the deep grey matter, on a
1.5 mm working grid; the anatomy the first registration matched (magnitude or T1w) is a
second channel of the same SyN (:class:`AnatomyChannel`, weight
:data:`ANATOMY_WEIGHT`), which keeps the structures of weak susceptibility contrast
(thalamus, caudate) where the anatomy put them. The refinement's displacement field
is composed in front of the anatomical chain; outside its box it is zero, so the rest
of the brain keeps the anatomical alignment.

Dual contrasts (QSM with T1w) were the most accurate way to bring nucleus labels onto
subjects in Li et al. (NeuroImage 2019, doi:10.1016/j.neuroimage.2019.02.016).
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import ants
import nibabel as nib
import numpy as np
from scipy import ndimage

from qsmbids.registration.antsio import from_ants, load_nifti, to_ants
from qsmbids.registration.core import (
    RegistrationSettings,
    TransformChain,
    apply_transforms,
    checked_chain,
)
from qsmbids.registration.grids import bounding_box, matching_sigma_mm, to_working_grid
from qsmbids.registration.job import run_registration
from qsmbids.registration.stages import registration_command, similarity_term, syn_stage

#: working voxel size of the refinement, mm (the small nuclei are 5-10 mm across).
#: Measured on the four 1 mm subjects of benchmarks/bench_nuclei_registration.py (two
#: qsm-forward MNI subjects, two of qsmbids' simulator; magnitude path, 2 cores, the
#: same anatomical registration under each): a 1.5 mm grid (SyN levels 4.5, 3, 1.5 mm)
#: halves the refinement (10.2-12.1 s against 16.1-20.7 s) at the same regional-mean
#: errors (largest 0.0040 against 0.0043 ppm) and Dice at most 0.03 lower (young
#: subject's pallidum 0.88 against 0.91); a 1 mm grid spends 2.7 s on each of its final
#: level's iterations. A 2 mm grid was as fast as 1.5 mm but put our 70-year-old's
#: pallidum 0.0056 ppm off (0.0024 at 1 mm)
WORKING_VOXEL_MM = 1.5
#: margin around the deep grey matter that the refinement box keeps, mm
BOX_MARGIN_MM = 8.0
#: the metric is evaluated within this distance of the nuclei only, mm
METRIC_MARGIN_MM = 6.0
#: SyN schedule of the refinement: shrink factors, smoothing (voxels), iterations.
#: Measured on a qsm-forward MNI subject at 1 mm (benchmarks/bench_nuclei_registration.py,
#: magnitude path, 2 cores, then on a 1 mm grid): (30, 15, 5) takes 28 s, (20, 10, 3)
#: 19 s, for Dice within 0.01 (pallidum 0.928 vs 0.923, red nucleus 0.925 vs 0.918)
SHRINK = (3, 2, 1)
SMOOTH = (1.5, 1.0, 0.0)
ITERATIONS = (20, 10, 3)
CC_RADIUS = 1
STEP = 0.2
#: SyN smoothing of the update and total fields (variances, mm^2; ANTs takes them in
#: voxels^2 of the working grid: :func:`field_smoothing_voxels`): smoother than the
#: anatomical SyN's (3, 0) voxels^2. With 3 mm^2 the refined labels of
#: the iron-rich nuclei grew by 5-9 % over their neighbours where the subject's nuclei
#: were brighter against their surroundings than the template's (a 70-year-old subject:
#: nigra 0.008 ppm low); 8 and 12 mm^2 let the update follow the nuclei as wholes
#: (nigra 0.004 and 0.002 ppm, every Dice 0.92-0.96 on both subjects of
#: benchmarks/bench_nuclei_registration.py at 1 mm, magnitude path, on a 1 mm grid)
FIELD_SMOOTHING_MM2 = (12.0, 0.0)


def field_smoothing_voxels() -> tuple[float, float]:
    """:data:`FIELD_SMOOTHING_MM2` in voxels^2 of the :data:`WORKING_VOXEL_MM` grid."""
    return tuple(float(v) / WORKING_VOXEL_MM**2 for v in FIELD_SMOOTHING_MM2)


#: weight of the anatomical channel (the susceptibility channel weighs 1)
ANATOMY_WEIGHT = 0.5
@dataclass(frozen=True)
class RefinementResult:
    """Output of :func:`refine_on_susceptibility`.

    Attributes
    ----------
    template_to_subject, subject_to_template
        The refined chains (refinement composed with the anatomical chain).
    correlation_before, correlation_after
        Pearson r of the warped susceptibility template with the subject's map inside
        the box and the brain mask, through the anatomical and the refined chain.
    box_shape
        Shape of the refinement's working grid (the box of the nuclei plus
        :data:`BOX_MARGIN_MM`, at :data:`WORKING_VOXEL_MM`).
    elapsed_s
        Wall time, s.
    """

    template_to_subject: TransformChain
    subject_to_template: TransformChain
    correlation_before: float
    correlation_after: float
    box_shape: tuple[int, ...]
    elapsed_s: float


def _correlation(a: np.ndarray, b: np.ndarray, inside: np.ndarray) -> float:
    if inside.sum() < 2:
        return float("nan")
    return float(np.corrcoef(a[inside], b[inside])[0, 1])


@dataclass(frozen=True)
class AnatomyChannel:
    """The anatomical contrast a refinement also matches (a multi-channel SyN).

    Attributes
    ----------
    subject
        The anatomy on the susceptibility map's grid (the prepared magnitude, or the
        T1w resampled onto it), nibabel image or path.
    template
        The atlas template (template grid).
    metric
        ``"CC"`` (same contrast) or ``"mattes"`` (mutual information).
    weight
        Weight of this term against the susceptibility term's 1.
    """

    subject: object
    template: object
    metric: str = "mattes"
    weight: float = ANATOMY_WEIGHT


def refine_on_susceptibility(chi, mask, chi_template, nuclei_template,
                             anatomical: TransformChain, anatomical_inverse: TransformChain,
                             out_prefix: str | Path,
                             settings: RegistrationSettings,
                             anatomy: AnatomyChannel | None = None, *,
                             template_sigma_mm: float = 0.0
                             ) -> RefinementResult:
    """Refine ``anatomical`` (template -> subject) on the susceptibility contrast.

    The refinement works on a :data:`WORKING_VOXEL_MM` grid along the subject's axes,
    over the box of the nuclei plus :data:`BOX_MARGIN_MM`. The templates are warped
    straight onto that grid and blurred to the subject's resolution
    (:func:`qsmbids.registration.grids.matching_sigma_mm`, a voxel's width as its
    FWHM), so that a coarse acquisition is not matched against sharper edges than it
    can show.

    Parameters
    ----------
    chi
        The subject's susceptibility map (ppm; nibabel image or path), 3-D.
    mask
        Its brain mask (same grid).
    chi_template
        The atlas's susceptibility template (ppm, template grid).
    nuclei_template
        Template-grid mask of the nuclei the refinement is for (their box, plus
        :data:`BOX_MARGIN_MM`, is the refinement's domain).
    anatomical, anatomical_inverse
        Template -> subject chain of the anatomical registration, and its inverse.
    out_prefix
        Prefix of the refinement's transform files.
    settings
        Threads and determinism (the schedule is this module's).
    anatomy
        Also match this anatomical channel (None: the susceptibility map alone).
    template_sigma_mm
        Gaussian sigma (mm) the susceptibility template was already smoothed with
        (:data:`qsmbids.atlas.chi_template.SMOOTHING_MM` for the painted templates).

    Returns
    -------
    RefinementResult
    """
    t0 = time.perf_counter()
    out_prefix = Path(out_prefix)
    out_prefix.parent.mkdir(parents=True, exist_ok=True)
    for old in out_prefix.parent.glob(out_prefix.name + "*"):
        old.unlink()
    chi_img, mask_img = load_nifti(chi), load_nifti(mask)
    brain = np.asarray(mask_img.dataobj) > 0
    threads = settings.n_threads
    zooms = np.asarray(chi_img.header.get_zooms()[:3], float)
    box = _nuclei_box(nuclei_template, chi_img, anatomical, threads)
    grid = _BoxGrid(box, chi_img.affine, zooms)
    subject = grid.subject(np.where(brain, np.asarray(chi_img.dataobj, np.float32), 0.0))
    brain_box = grid.subject(brain.astype(np.float32), label=True) > 0.5
    reference = from_ants(subject)
    nuclei_box = np.asarray(apply_transforms(nuclei_template, reference, anatomical,
                                             n_threads=threads).dataobj) > 0.5
    distance = ndimage.distance_transform_edt(~nuclei_box, sampling=(WORKING_VOXEL_MM,) * 3)
    metric_mask = (distance <= METRIC_MARGIN_MM) & brain_box

    def warped_template(image, chain: TransformChain, sigma_mm: float) -> np.ndarray:
        data = np.asarray(apply_transforms(image, reference, chain,
                                           n_threads=threads).dataobj, np.float32)
        return grid.blur_to_subject(data, _resolution_mm(image, sigma_mm))

    before = warped_template(chi_template, anatomical, template_sigma_mm)
    channels = [(subject.numpy(), before, "CC", 1.0)]
    if anatomy is not None:
        anatomy_subject = load_nifti(anatomy.subject)
        channels.append((grid.subject(np.where(brain, np.asarray(anatomy_subject.dataobj,
                                                                  np.float32), 0.0)).numpy(),
                         warped_template(anatomy.template, anatomical, 0.0), anatomy.metric,
                         anatomy.weight))
    warp, inverse_warp = _register_box(channels, metric_mask, subject, out_prefix, settings)
    forward = TransformChain((warp,), (False,)) + anatomical
    inverse = anatomical_inverse + TransformChain((inverse_warp,), (False,))
    after = warped_template(chi_template, forward, template_sigma_mm)
    inside = ndimage.binary_dilation(nuclei_box, iterations=2) & brain_box
    fixed = subject.numpy()
    return RefinementResult(
        template_to_subject=forward, subject_to_template=inverse,
        correlation_before=_correlation(before, fixed, inside),
        correlation_after=_correlation(after, fixed, inside),
        box_shape=tuple(int(n) for n in subject.shape), elapsed_s=time.perf_counter() - t0)


#: voxel edge (mm) of the coarse grid on which the nuclei's box is found
BOX_SEARCH_VOXEL_MM = 2.0


def _nuclei_box(nuclei_template, subject: nib.Nifti1Image, anatomical: TransformChain,
                threads: int | None) -> tuple[slice, ...]:
    """Slices of ``subject``'s grid around the atlas nuclei brought through ``anatomical``,
    grown by :data:`BOX_MARGIN_MM`.

    The nuclei are warped onto every ``f``-th voxel of the subject's grid (``f`` voxels
    span about :data:`BOX_SEARCH_VOXEL_MM`): on a 1 mm head that takes 0.1 s instead of
    0.75 s for every voxel. An extreme of the nuclei may lie up to ``f - 1`` voxels
    beyond the box of the samples, so the box grows by that much more than the margin.
    """
    zooms = np.asarray(subject.header.get_zooms()[:3], float)
    step = np.maximum(np.floor(BOX_SEARCH_VOXEL_MM / zooms + 1e-9), 1).astype(int)
    shape = -(-np.asarray(subject.shape[:3]) // step)
    coarse = nib.Nifti1Image(np.zeros(tuple(shape), np.float32),
                             subject.affine @ np.diag([*step, 1]))
    nuclei = np.asarray(apply_transforms(nuclei_template, coarse, anatomical,
                                         n_threads=threads).dataobj) > 0.5
    if not nuclei.any():
        raise ValueError("the atlas nuclei fall outside the subject's grid after the "
                         "anatomical registration")
    sampled = bounding_box(nuclei)
    margin = np.floor(BOX_MARGIN_MM / zooms + 1e-9).astype(int) + step - 1
    return tuple(slice(max(s.start * f - m, 0), min((s.stop - 1) * f + 1 + m, n))
                 for s, f, m, n in zip(sampled, step, margin, subject.shape[:3], strict=True))


def refined_labels(labels, anatomical_labels, result: RefinementResult, *,
                   n_threads: int | None = None) -> nib.Nifti1Image:
    """The atlas labels through the refined chain, warped only where it differs.

    Outside the domain of the refinement's displacement field (its box) ANTs moves no
    point, so the refined chain is the anatomical one there and the labels are those of
    the anatomical registration. Only the subject voxels within that domain (plus one
    voxel) are warped again (``genericLabel``, as
    :func:`qsmbids.registration.core.warp_labels_to_subject`): 0.3 s instead of 1.8 s
    on a 1 mm head, with the same labels everywhere (tested).

    Parameters
    ----------
    labels
        The atlas's label image (template grid; nibabel image or path).
    anatomical_labels
        ``labels`` warped onto the subject's grid through the anatomical chain (the
        registration's ``dseg``; nibabel image or path).
    result
        The refinement.
    n_threads
        ITK threads.

    Returns
    -------
    nibabel.Nifti1Image
        int16 labels on the grid of ``anatomical_labels``.
    """
    from qsmbids.registration.core import warp_labels_to_subject

    anatomical = load_nifti(anatomical_labels)
    warp = nib.load(str(result.template_to_subject.files[0]))
    corners = np.array([[i, j, k, 1.0] for i in (-0.5, warp.shape[0] - 0.5)
                        for j in (-0.5, warp.shape[1] - 0.5)
                        for k in (-0.5, warp.shape[2] - 0.5)]).T
    # the field's corners in the subject's voxel indices
    inside = np.linalg.inv(anatomical.affine) @ warp.affine @ corners
    lo = np.maximum(np.floor(inside[:3].min(axis=1)).astype(int) - 1, 0)
    hi = np.minimum(np.ceil(inside[:3].max(axis=1)).astype(int) + 2, anatomical.shape[:3])
    data = np.asarray(anatomical.dataobj).astype(np.int16)
    if np.all(hi > lo):
        box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
        crop = anatomical.slicer[box]
        data[box] = np.asarray(warp_labels_to_subject(labels, crop, result.template_to_subject,
                                                      n_threads=n_threads).dataobj)
    img = nib.Nifti1Image(data, anatomical.affine)
    img.header.set_xyzt_units("mm")
    return img


def _resolution_mm(image, sigma_mm: float) -> float:
    """Resolution (FWHM, mm) of a template: its mean voxel width with a Gaussian of
    ``sigma_mm`` on top."""
    voxel = float(np.mean(load_nifti(image).header.get_zooms()[:3]))
    return float(np.hypot(voxel, 2.3548 * sigma_mm))


@dataclass(frozen=True)
class _BoxGrid:
    """The refinement's working grid: ``box`` (slices of the subject grid whose affine
    and voxel sizes, mm, are given) at :data:`WORKING_VOXEL_MM`."""

    box: tuple[slice, ...]
    affine: np.ndarray
    zooms: np.ndarray

    def subject(self, data: np.ndarray, label: bool = False) -> ants.ANTsImage:
        """Subject-grid ``data`` cropped to the box, on the working grid (numpy for
        labels)."""
        corner = self.affine @ np.r_[[s.start for s in self.box], 1.0]
        box_affine = self.affine.copy()
        box_affine[:3, 3] = corner[:3]
        image = to_ants(nib.Nifti1Image(np.ascontiguousarray(data[self.box], np.float32),
                                        box_affine))
        working = to_working_grid(image, WORKING_VOXEL_MM, label=label)
        return working.numpy() if label else working

    def blur_to_subject(self, data: np.ndarray, resolution_mm: float) -> np.ndarray:
        """Blur working-grid ``data`` of ``resolution_mm`` (FWHM) to the subject's
        (its voxel widths, at least the working voxel), axis by axis."""
        target = np.maximum(self.zooms, WORKING_VOXEL_MM)
        sigma = matching_sigma_mm(target, resolution_mm) / WORKING_VOXEL_MM
        return ndimage.gaussian_filter(data, sigma) if np.any(sigma > 0.05) else data


def _register_box(channels: list[tuple[np.ndarray, np.ndarray, str, float]],
                  metric_mask: np.ndarray, reference: ants.ANTsImage, prefix: Path,
                  settings: RegistrationSettings) -> tuple[Path, Path]:
    """One SyN of the warped template(s) onto the subject on the working grid of
    ``reference``. ``channels``: (subject, warped template, metric, weight) arrays on
    that grid, the susceptibility pair first. Returns the warp and its inverse."""

    def image(data: np.ndarray) -> ants.ANTsImage:
        return reference.new_image_like(np.ascontiguousarray(data, np.float32))

    with tempfile.TemporaryDirectory(prefix="qsmbids_refine_") as tmp:
        mask_path = str(Path(tmp, "mask.nii.gz"))
        ants.image_write(image(metric_mask), mask_path)
        pairs = []
        for index, (fixed_data, moving_data, metric, weight) in enumerate(channels):
            pair = (str(Path(tmp, f"fixed{index}.nii.gz")),
                    str(Path(tmp, f"moving{index}.nii.gz")))
            ants.image_write(image(fixed_data), pair[0])
            ants.image_write(image(moving_data), pair[1])
            pairs.append((pair, metric, weight))
        (f, m), _, _ = pairs[0]
        also = [similarity_term(metric, *pair, weight=weight, cc_radius=CC_RADIUS)
                for pair, metric, weight in pairs[1:]]
        stage = syn_stage("CC", f, m, SHRINK, SMOOTH, ITERATIONS, convergence=1e-6,
                          cc_radius=CC_RADIUS, step=STEP, also=also,
                          field_smoothing=field_smoothing_voxels())
        args = registration_command(
            f, m, str(prefix), [stage], fixed_mask=mask_path,
            seed=settings.seed, centre_of_mass=False)
        run_registration(args, n_threads=1 if settings.deterministic else settings.n_threads,
                         description=f"{prefix.name}: susceptibility refinement "
                                     f"({WORKING_VOXEL_MM:g} mm box "
                                     f"{tuple(int(n) for n in reference.shape)})")
    return (checked_chain(TransformChain((Path(f"{prefix}0Warp.nii.gz"),), (False,))).files[0],
            Path(f"{prefix}0InverseWarp.nii.gz"))
