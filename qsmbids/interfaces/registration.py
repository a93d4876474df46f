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
from qsmbids.workflows.settings import REGISTRATION


def _out(name: str) -> str:
    return str(Path(os.getcwd(), name))


class RegisterAtlasInputSpec(BaseInterfaceInputSpec):
    magnitude = File(exists=True, mandatory=True, desc="multi-echo magnitude (x, y, z, echo)")
    mask = File(exists=True, mandatory=True, desc="brain mask on the magnitude grid")
    t1w = File(exists=True, desc="T1w of the same session (optional)")
    atlas_dir = Directory(exists=True, mandatory=True)
    preset = traits.Enum(*REGISTRATION, usedefault=True)
    deterministic = traits.Bool(False, usedefault=True,
                                desc="fixed seed and one ANTs thread (repeatable, slower)")
    num_threads = traits.Int(1, usedefault=True, nohash=True)


class RegisterAtlasOutputSpec(TraitedSpec):
    dseg = File(exists=True, desc="atlas labels on the subject grid")
    dseg_tsv = File(exists=True)
    xfm_files = traits.List(File(exists=True), desc="template->subject transforms")
    inverse_xfm_files = traits.List(File(exists=True), desc="subject->template transforms")
    inverse_invert = traits.List(traits.Bool)
    magnitude = File(exists=True, desc="registration target (echo-combined magnitude)")
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
            warp_labels_to_subject,
        )

        atlas = load_atlas(self.inputs.atlas_dir, check_images=False)
        t1w = self.inputs.t1w if isdefined(self.inputs.t1w) else None
        # local correlation when the template has the target's contrast, else MI
        metric = metric_for_contrasts(atlas.template_contrast, "T1w" if t1w else "magnitude")
        settings = RegistrationSettings(preset=self.inputs.preset,
                                        n_threads=self.inputs.num_threads,
                                        deterministic=self.inputs.deterministic, metric=metric)
        result = register_template_to_subject(
            atlas.template, self.inputs.magnitude, os.getcwd(), settings,
            target_mask=self.inputs.mask, t1w=t1w, prefix="reg_")
        mask_img = nib.load(self.inputs.mask)
        labels = warp_labels_to_subject(atlas.labels, mask_img, result.template_to_subject,
                                        n_threads=self.inputs.num_threads)
        nib.save(labels, _out("dseg.nii"))
        shutil.copyfile(atlas.label_table, _out("dseg.tsv"))
        self._results["dseg"] = _out("dseg.nii")
        self._results["dseg_tsv"] = _out("dseg.tsv")
        self._results["xfm_files"] = [str(p) for p in result.template_to_subject.files]
        self._results["inverse_xfm_files"] = [str(p) for p in result.subject_to_template.files]
        self._results["inverse_invert"] = list(result.subject_to_template.invert)
        self._results["magnitude"] = str(result.target)
        self._results["provenance"] = write_provenance(
            _out("provenance.json"), "registration",
            "ANTs " + ("T1w-mediated " if t1w else "") + f"SyN ({self.inputs.preset} preset)",
            {"Atlas": atlas.name, "Space": atlas.space, "Preset": self.inputs.preset,
             "Target": "T1w + magnitude" if t1w else "magnitude",
             "TemplateContrast": atlas.template_contrast,
             "SyNMetric": {"CC": "local cross-correlation", "mattes": "Mattes MI"}[metric],
             "Deterministic": bool(self.inputs.deterministic)},
            {"Similarity": result.similarity, "ElapsedSeconds": result.elapsed_s})
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
        from qsmbids.workflows.stats_adapter import regional_table

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
