"""Refine an anatomical template registration on the susceptibility contrast.

The iron-rich nuclei (pallidum, nigra, red nucleus, dentate, subthalamic nucleus)
are nearly invisible on T1w and faint on the GRE magnitude, but they are the
brightest structures of a susceptibility map. After the anatomical registration
(:func:`qsmbids.registration.core.register_template_to_subject`), the atlas's
susceptibility template (:mod:`qsmbids.atlas.chi_template`) is brought onto the
subject through it, and a SyN stage with local cross-correlation registers that
warped template to the subject's map inside a box around the deep grey matter, on a
1 mm working grid; the anatomy the first registration matched (magnitude or T1w) is a
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

from qsmbids.registration.antsio import load_nifti, to_ants
from qsmbids.registration.core import (
    RegistrationSettings,
    TransformChain,
    apply_transforms,
    checked_chain,
)
from qsmbids.registration.grids import bounding_box, to_working_grid
from qsmbids.registration.job import run_registration
from qsmbids.registration.stages import registration_command, similarity_term, syn_stage

#: working voxel size of the refinement, mm (the small nuclei are 5-10 mm across)
WORKING_VOXEL_MM = 1.0
#: margin around the deep grey matter that the refinement box keeps, mm
BOX_MARGIN_MM = 8.0
#: the metric is evaluated within this distance of the nuclei only, mm
METRIC_MARGIN_MM = 6.0
#: SyN schedule of the refinement: shrink factors, smoothing (voxels), iterations.
#: Measured on a qsm-forward MNI subject at 1 mm (benchmarks/bench_nuclei_registration.py,
#: magnitude path, 2 cores): (30, 15, 5) takes 28 s, (20, 10, 3) 19 s, for Dice within
#: 0.01 (pallidum 0.928 vs 0.923, red nucleus 0.925 vs 0.918)
SHRINK = (4, 2, 1)
SMOOTH = (2.0, 1.0, 0.0)
ITERATIONS = (20, 10, 3)
CC_RADIUS = 1
STEP = 0.2
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
                             anatomy: AnatomyChannel | None = None
                             ) -> RefinementResult:
    """Refine ``anatomical`` (template -> subject) on the susceptibility contrast.

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
    # the template and its nuclei on the subject grid, through the anatomical chain
    before = np.asarray(apply_transforms(chi_template, chi_img, anatomical,
                                         n_threads=threads).dataobj, np.float32)
    nuclei = np.asarray(apply_transforms(nuclei_template, chi_img, anatomical,
                                         n_threads=threads).dataobj) > 0.5
    if not nuclei.any():
        raise ValueError("the atlas nuclei fall outside the subject's grid after the "
                         "anatomical registration")
    subject = np.where(brain, np.asarray(chi_img.dataobj, np.float32), 0.0)
    zooms = np.asarray(chi_img.header.get_zooms()[:3], float)
    distance = ndimage.distance_transform_edt(~nuclei, sampling=zooms)
    metric_mask = (distance <= METRIC_MARGIN_MM) & brain
    box = bounding_box(distance <= BOX_MARGIN_MM)
    channels = [(subject, before, "CC", 1.0)]
    if anatomy is not None:
        anatomy_subject = load_nifti(anatomy.subject)
        anatomy_template = apply_transforms(anatomy.template, chi_img, anatomical,
                                            n_threads=threads)
        channels.append((np.where(brain, np.asarray(anatomy_subject.dataobj, np.float32), 0.0),
                         np.asarray(anatomy_template.dataobj, np.float32), anatomy.metric,
                         anatomy.weight))
    warp, inverse_warp, box_shape = _refine_box(channels, metric_mask, box, chi_img.affine,
                                                out_prefix, settings)
    forward = TransformChain((warp,), (False,)) + anatomical
    inverse = anatomical_inverse + TransformChain((inverse_warp,), (False,))
    after = np.asarray(apply_transforms(chi_template, chi_img, forward,
                                        n_threads=threads).dataobj, np.float32)
    inside = ndimage.binary_dilation(nuclei, iterations=2) & brain
    return RefinementResult(
        template_to_subject=forward, subject_to_template=inverse,
        correlation_before=_correlation(before, subject, inside),
        correlation_after=_correlation(after, subject, inside),
        box_shape=box_shape, elapsed_s=time.perf_counter() - t0)


def _refine_box(channels: list[tuple[np.ndarray, np.ndarray, str, float]],
                metric_mask: np.ndarray, box: tuple[slice, ...], affine: np.ndarray,
                prefix: Path, settings: RegistrationSettings
                ) -> tuple[Path, Path, tuple[int, ...]]:
    """One SyN of the warped template(s) onto the subject inside ``box`` (slices of the
    subject grid), on the working grid. ``channels``: (subject image, warped template,
    metric, weight) on the subject grid, the susceptibility pair first. Returns the
    warp, its inverse and the working grid's shape."""
    corner = affine @ np.r_[[s.start for s in box], 1.0]
    box_affine = affine.copy()
    box_affine[:3, 3] = corner[:3]

    def cropped(data: np.ndarray, label: bool = False) -> ants.ANTsImage:
        image = to_ants(nib.Nifti1Image(np.ascontiguousarray(data[box], np.float32),
                                        box_affine))
        return to_working_grid(image, WORKING_VOXEL_MM, label=label)

    with tempfile.TemporaryDirectory(prefix="qsmbids_refine_") as tmp:
        mask_path = str(Path(tmp, "mask.nii.gz"))
        ants.image_write(cropped(metric_mask.astype(np.float32), label=True), mask_path)
        pairs = []
        for index, (fixed_data, moving_data, metric, weight) in enumerate(channels):
            fixed = cropped(fixed_data)
            pair = (str(Path(tmp, f"fixed{index}.nii.gz")),
                    str(Path(tmp, f"moving{index}.nii.gz")))
            ants.image_write(fixed, pair[0])
            ants.image_write(cropped(moving_data), pair[1])
            pairs.append((pair, metric, weight))
            shape = tuple(int(n) for n in fixed.shape)
        (f, m), _, _ = pairs[0]
        also = [similarity_term(metric, *pair, weight=weight, cc_radius=CC_RADIUS)
                for pair, metric, weight in pairs[1:]]
        stage = syn_stage("CC", f, m, SHRINK, SMOOTH, ITERATIONS, convergence=1e-6,
                          cc_radius=CC_RADIUS, step=STEP, also=also)
        args = registration_command(
            f, m, str(prefix), [stage], fixed_mask=mask_path,
            seed=settings.seed if settings.deterministic else None, centre_of_mass=False)
        run_registration(args, n_threads=1 if settings.deterministic else settings.n_threads,
                         description=f"{prefix.name}: susceptibility refinement "
                                     f"({WORKING_VOXEL_MM:g} mm box {shape})")
    return (checked_chain(TransformChain((Path(f"{prefix}0Warp.nii.gz"),), (False,))).files[0],
            Path(f"{prefix}0InverseWarp.nii.gz"), shape)
