"""Thin nipype interfaces around :mod:`qsmbids.registration` and :mod:`qsmbids.stats`."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    Directory,
    File,
    TraitedSpec,
    isdefined,
    traits,
)

from qsmbids.interfaces.io import MeasuredInterface, write_provenance
from qsmbids.registration.schedules import PRESETS as REGISTRATION


def _out(name: str) -> str:
    return str(Path(os.getcwd(), name))


def _labels_and_chains(atlas, mask: str, result, n_threads: int,
                       labels: nib.Nifti1Image | None = None) -> dict:
    """The atlas labels warped onto the mask's grid through ``result``'s template ->
    subject chain (``dseg.nii``, its ``dseg.tsv``; ``labels`` when already warped) and
    both chains, as node outputs."""
    from qsmbids.registration.core import warp_labels_to_subject

    if labels is None:
        labels = warp_labels_to_subject(atlas.labels, nib.load(mask),
                                        result.template_to_subject, n_threads=n_threads)
    nib.save(labels, _out("dseg.nii"))
    shutil.copyfile(atlas.label_table, _out("dseg.tsv"))
    return {"dseg": _out("dseg.nii"), "dseg_tsv": _out("dseg.tsv"),
            "xfm_files": [str(p) for p in result.template_to_subject.files],
            "inverse_xfm_files": [str(p) for p in result.subject_to_template.files],
            "inverse_invert": list(result.subject_to_template.invert)}


class RegisterAtlasInputSpec(BaseInterfaceInputSpec):
    magnitude = File(exists=True, mandatory=True, desc="multi-echo magnitude (x, y, z, echo)")
    mask = File(exists=True, mandatory=True, desc="brain mask on the magnitude grid")
    t1w = File(exists=True, desc="T1w of the same session (optional)")
    atlas_dir = Directory(exists=True, mandatory=True)
    preset = traits.Enum(*REGISTRATION, usedefault=True)
    deterministic = traits.Bool(False, usedefault=True,
                                desc="fixed seed and one ANTs thread (repeatable, slower)")
    refined = traits.Bool(False, usedefault=True,
                          desc="a susceptibility refinement follows: SyN stops one level "
                               "early")
    refinement_skipped = traits.Str(desc="why the susceptibility refinement asked for does "
                                         "not run (recorded in the provenance)")
    num_threads = traits.Int(1, usedefault=True, nohash=True)


class RegisterAtlasOutputSpec(TraitedSpec):
    dseg = File(exists=True, desc="atlas labels on the subject grid")
    dseg_tsv = File(exists=True)
    xfm_files = traits.List(File(exists=True), desc="template->subject transforms")
    inverse_xfm_files = traits.List(File(exists=True), desc="subject->template transforms")
    inverse_invert = traits.List(traits.Bool)
    magnitude = File(exists=True, desc="registration target (echo-combined magnitude)")
    anatomy = File(exists=True, desc="the anatomy matched, on the magnitude grid")
    metric = traits.Str(desc="SyN metric of the anatomical stage (CC or mattes)")
    provenance = File(exists=True)


class RegisterAtlas(MeasuredInterface):
    """Register the atlas template to the subject (ANTs) and warp its labels onto the subject."""

    input_spec = RegisterAtlasInputSpec
    output_spec = RegisterAtlasOutputSpec

    def _compute(self, runtime):
        from qsmbids.atlas.model import load_atlas
        from qsmbids.registration.core import (
            RegistrationSettings,
            metric_for_contrasts,
            register_template_to_subject,
        )

        atlas = load_atlas(self.inputs.atlas_dir, check_images=False)
        t1w = self.inputs.t1w if isdefined(self.inputs.t1w) else None
        # local correlation when the template has the target's contrast, else MI
        metric = metric_for_contrasts(atlas.template_contrast, "T1w" if t1w else "magnitude")
        settings = RegistrationSettings(preset=self.inputs.preset,
                                        n_threads=self.inputs.num_threads,
                                        deterministic=self.inputs.deterministic, metric=metric,
                                        refined=bool(self.inputs.refined))
        result = register_template_to_subject(
            atlas.template, self.inputs.magnitude, os.getcwd(), settings,
            target_mask=self.inputs.mask, t1w=t1w, prefix="reg_")
        self._results.update(_labels_and_chains(atlas, self.inputs.mask, result,
                                                self.inputs.num_threads))
        self._results["magnitude"] = str(result.target)
        self._results["anatomy"] = str(result.anatomy)
        self._results["metric"] = metric
        self._results["provenance"] = write_provenance(
            _out("provenance.json"), "registration",
            "ANTs " + ("T1w-mediated " if t1w else "") + f"SyN ({self.inputs.preset} preset)",
            {"Atlas": atlas.name, "Space": atlas.space, "Preset": self.inputs.preset,
             "Target": "T1w + magnitude" if t1w else "magnitude",
             "TemplateContrast": atlas.template_contrast,
             "SyNMetric": {"CC": "local cross-correlation", "mattes": "Mattes MI"}[metric],
             "LinearMetric": _linear_metric(self.inputs.preset),
             "RandomSeed": settings.seed,
             "Deterministic": bool(self.inputs.deterministic),
             "SyNStopsOneLevelEarly": bool(self.inputs.refined),
             **({"SusceptibilityRefinement": "skipped: " + self.inputs.refinement_skipped}
                if isdefined(self.inputs.refinement_skipped) else {})},
            {"Similarity": result.similarity, "ElapsedSeconds": result.elapsed_s,
             **_template_overlap(atlas, self.inputs.magnitude, self.inputs.mask,
                                 result.template_to_subject, self.inputs.num_threads)})
        return runtime


def _linear_metric(preset: str) -> str:
    """The rigid and affine stages' metric and sampling, as the sidecar states it."""
    from qsmbids.registration.schedules import SCHEDULES

    sampling = SCHEDULES[preset].linear_sampling
    return "Mattes MI, " + ("every voxel" if sampling is None
                            else f"{sampling:.0%} of the voxels (jittered regular grid)")


def _template_overlap(atlas, magnitude: str, mask: str, chain, n_threads: int) -> dict:
    """The report's registration check: Dice of the template's brain (its mask, else
    the template > 0), warped onto the subject, with the subject's mask, and the warped
    template's NMI with the first-echo magnitude inside the mask."""
    from qsmbids.registration.core import apply_transforms
    from qsmbids.stats.qc_images import dice, normalized_mutual_information

    mask_img = nib.load(mask)
    inside = np.asarray(mask_img.dataobj) > 0
    warped = np.asarray(apply_transforms(atlas.template, mask_img, chain,
                                         n_threads=n_threads).dataobj)
    brain = (np.asarray(apply_transforms(atlas.template_mask, mask_img, chain,
                                         n_threads=n_threads).dataobj) > 0.5
             if atlas.template_mask is not None else warped > 0)
    first = np.asarray(nib.load(magnitude).dataobj, np.float32)
    first = first[..., 0] if first.ndim == 4 else first
    return {"TemplateDice": dice(brain, inside),
            "TemplateNMI": normalized_mutual_information(warped, first, inside)}


class RefineOnSusceptibilityInputSpec(BaseInterfaceInputSpec):
    chi = File(exists=True, mandatory=True, desc="QSM in ppm, subject space")
    mask = File(exists=True, mandatory=True, desc="brain mask of the QSM")
    atlas_dir = Directory(exists=True, mandatory=True)
    xfm_files = traits.List(File(exists=True), mandatory=True,
                            desc="anatomical template->subject transforms")
    inverse_xfm_files = traits.List(File(exists=True), mandatory=True)
    inverse_invert = traits.List(traits.Bool, mandatory=True)
    anatomy = File(exists=True, desc="the anatomy the registration matched, on the map's "
                                     "grid: a second channel of the refinement")
    metric = traits.Enum("mattes", "CC", usedefault=True,
                         desc="metric of the anatomy channel")
    anatomical_dseg = File(exists=True, desc="the atlas labels through the anatomical "
                                             "registration, on the map's grid")
    deterministic = traits.Bool(False, usedefault=True)
    num_threads = traits.Int(1, usedefault=True, nohash=True)


class RefineOnSusceptibilityOutputSpec(TraitedSpec):
    dseg = File(exists=True, desc="atlas labels on the subject grid, refined")
    dseg_tsv = File(exists=True)
    xfm_files = traits.List(File(exists=True), desc="template->subject transforms")
    inverse_xfm_files = traits.List(File(exists=True), desc="subject->template transforms")
    inverse_invert = traits.List(traits.Bool)
    provenance = File(exists=True)


class RefineOnSusceptibility(MeasuredInterface):
    """Refine the atlas registration of the deep grey nuclei on the susceptibility map
    (:func:`qsmbids.registration.refine.refine_on_susceptibility`) and warp the labels
    through the refined chain."""

    input_spec = RefineOnSusceptibilityInputSpec
    output_spec = RefineOnSusceptibilityOutputSpec

    def _compute(self, runtime):
        from qsmbids.atlas import chi_template
        from qsmbids.atlas.model import load_atlas, nuclei_mask_image
        from qsmbids.atlas.subject_template import subject_susceptibility_template
        from qsmbids.registration import refine
        from qsmbids.registration.core import RegistrationSettings, TransformChain

        atlas = load_atlas(self.inputs.atlas_dir, check_images=False)
        forward = TransformChain(tuple(Path(p) for p in self.inputs.xfm_files),
                                 (False,) * len(self.inputs.xfm_files))
        inverse = TransformChain(tuple(Path(p) for p in self.inputs.inverse_xfm_files),
                                 tuple(bool(b) for b in self.inputs.inverse_invert))
        nuclei = nuclei_mask_image(atlas)
        settings = RegistrationSettings(n_threads=self.inputs.num_threads,
                                        deterministic=self.inputs.deterministic)
        anatomy = (refine.AnatomyChannel(self.inputs.anatomy, atlas.template,
                                         self.inputs.metric)
                   if isdefined(self.inputs.anatomy) else None)
        template = subject_susceptibility_template(
            atlas, self.inputs.chi, self.inputs.mask, forward,
            n_threads=self.inputs.num_threads,
            labels_on_subject=(self.inputs.anatomical_dseg
                               if isdefined(self.inputs.anatomical_dseg) else None))
        result = refine.refine_on_susceptibility(
            self.inputs.chi, self.inputs.mask, template.image, nuclei,
            forward, inverse, Path(os.getcwd(), "reg_refine_"), settings, anatomy,
            template_sigma_mm=chi_template.SMOOTHING_MM)
        if isdefined(self.inputs.anatomical_dseg):  # warp again only inside the box
            labels = refine.refined_labels(atlas.labels, self.inputs.anatomical_dseg, result,
                                           n_threads=self.inputs.num_threads)
        else:
            labels = None
        self._results.update(_labels_and_chains(atlas, self.inputs.mask, result,
                                                self.inputs.num_threads, labels))
        self._results["provenance"] = write_provenance(
            _out("provenance.json"), "susceptibility refinement",
            "ANTs SyN of the atlas's susceptibility template, painted with the subject's "
            "regional values, onto the map around the deep grey nuclei (local "
            f"cross-correlation, radius {refine.CC_RADIUS}, {refine.WORKING_VOXEL_MM:g} mm "
            f"grid, field smoothing {refine.FIELD_SMOOTHING_MM2[0]:g} mm^2)"
            + (f", with the anatomy as a second channel ({self.inputs.metric}, weight "
               f"{refine.ANATOMY_WEIGHT:g})" if anatomy is not None else ""),
            {"SusceptibilityTemplate": "the atlas labels painted with the subject's own "
                                       "values: the median of the map over each label's "
                                       "interior through the anatomical registration "
                                       f"({len(template.measured)} labels; the others "
                                       "their literature value "
                                       f"{template.offset_ppm:+.4f} ppm)",
             "TemplateValuesPPM": template.region_values(atlas.regions),
             "Channels": ["susceptibility (CC, weight 1)"]
             + ([f"anatomy ({self.inputs.metric}, weight {refine.ANATOMY_WEIGHT:g})"]
                if anatomy is not None else []),
             "BoxMarginMM": refine.BOX_MARGIN_MM, "MetricMarginMM": refine.METRIC_MARGIN_MM,
             "Iterations": list(refine.ITERATIONS), "ShrinkFactors": list(refine.SHRINK),
             "Deterministic": bool(self.inputs.deterministic)},
            {"CorrelationBefore": result.correlation_before,
             "CorrelationAfter": result.correlation_after,
             "BoxShape": list(result.box_shape), "ElapsedSeconds": result.elapsed_s})
        return runtime


class WarpToTemplateInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True, desc="subject-space map (e.g. QSM, ppm)")
    atlas_dir = Directory(exists=True, mandatory=True)
    xfm_files = traits.List(File(exists=True), mandatory=True)
    invert = traits.List(traits.Bool, mandatory=True)
    num_threads = traits.Int(1, usedefault=True, nohash=True)


class WarpToTemplateOutputSpec(TraitedSpec):
    out_file = File(exists=True)


class WarpToTemplate(MeasuredInterface):
    """Resample a subject-space map into the atlas template space (linear)."""

    input_spec = WarpToTemplateInputSpec
    output_spec = WarpToTemplateOutputSpec

    def _compute(self, runtime):
        from qsmbids.atlas.model import load_atlas
        from qsmbids.registration.core import TransformChain, warp_to_template

        atlas = load_atlas(self.inputs.atlas_dir, check_images=False)
        chain = TransformChain(tuple(Path(p) for p in self.inputs.xfm_files),
                               tuple(bool(b) for b in self.inputs.invert))
        img = warp_to_template(self.inputs.in_file, atlas.template, chain,
                               n_threads=self.inputs.num_threads)
        nib.save(img, _out("template_map.nii"))
        self._results["out_file"] = _out("template_map.nii")
        return runtime


class RegionalStatsInputSpec(BaseInterfaceInputSpec):
    chi = File(exists=True, mandatory=True, desc="QSM in ppm, subject space")
    dseg = File(exists=True, mandatory=True, desc="atlas labels on the subject grid")
    mask = File(exists=True, mandatory=True, desc="reconstruction mask")
    atlas_dir = Directory(exists=True, mandatory=True)


class RegionalStatsOutputSpec(TraitedSpec):
    table = File(exists=True, desc="per-region statistics TSV")
    provenance = File(exists=True)


class RegionalStats(MeasuredInterface):
    """Per-region statistics of the QSM (and R2*) inside the reconstruction mask."""

    input_spec = RegionalStatsInputSpec
    output_spec = RegionalStatsOutputSpec

    def _compute(self, runtime):
        from qsmbids.stats.run_table import regional_table

        chi = np.asarray(nib.load(self.inputs.chi).dataobj, np.float32)
        labels = np.asarray(nib.load(self.inputs.dseg).dataobj).astype(np.int32)
        mask_img = nib.load(self.inputs.mask)
        mask = np.asarray(mask_img.dataobj) > 0
        voxel = tuple(float(v) for v in mask_img.header.get_zooms()[:3])
        method = regional_table(chi, labels, mask, self.inputs.atlas_dir, voxel,
                                _out("regions_stats.tsv"))
        self._results["table"] = _out("regions_stats.tsv")
        self._results["provenance"] = write_provenance(
            _out("provenance.json"), "regional statistics", method, {})
        return runtime
