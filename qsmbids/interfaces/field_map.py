"""Thin nipype interfaces for runs that bring a field map instead of wrapped phase.

A BIDS ``fieldmap`` (``Units`` Hz, rad/s, ppm, or rad for an unwrapped phase with its
``EchoTime``) with its ``magnitude``, or a GRE run whose phase a ``--field-map`` replaces,
enters the pipeline after field estimation: the magnitude makes the brain mask, the map
converted to ppm is the total field.
"""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
from nipype.interfaces.base import BaseInterfaceInputSpec, File, TraitedSpec, traits

from qsmbids.interfaces.io import MeasuredInterface, load_image, save_like, write_provenance
from qsmbids.interfaces.recon import _out


class LoadMagnitudeInputSpec(BaseInterfaceInputSpec):
    run_spec = traits.Str(mandatory=True, desc="JSON: the run's files")


class LoadMagnitudeOutputSpec(TraitedSpec):
    magnitude = File(exists=True, desc="magnitude, (x, y, z, echo), float32")
    provenance = File(exists=True)


class LoadMagnitude(MeasuredInterface):
    """The magnitude of a field-map run as a 4-D image (x, y, z, echo), NaN set to 0:
    every echo of a GRE run (uncombined channels combined by root sum of squares), or
    the first volume of a BIDS field map's ``magnitude``."""

    input_spec = LoadMagnitudeInputSpec
    output_spec = LoadMagnitudeOutputSpec

    def _compute(self, runtime):
        spec = json.loads(self.inputs.run_spec)
        volumes, bad = [], 0
        for path in spec["magnitude"]:
            img = nib.load(path)
            data = np.asarray(img.dataobj, np.float32)
            bad += int((~np.isfinite(data)).sum())
            data = np.nan_to_num(data, nan=0.0, posinf=0.0, neginf=0.0)
            if int(spec["channels"]) > 1:  # channels on the last axis
                data = np.sqrt(np.einsum("...c,...c->...", data, data))
            volumes.append(data.reshape(*data.shape[:3], -1))
        data = np.concatenate(volumes, axis=3)[..., : max(1, len(spec["echo_times"]))]
        ref3 = nib.Nifti1Image(np.zeros((1, 1, 1), np.float32), img.affine, img.header)
        self._results["magnitude"] = save_like(data, ref3, _out("magnitude.nii"))
        self._results["provenance"] = write_provenance(
            _out("provenance.json"), "magnitude", "magnitude of a field-map run"
            + (", coil channels combined by root sum of squares"
               if int(spec["channels"]) > 1 else ""),
            {"FieldMap": spec["field_map"], "Units": spec["field_map_units"],
             "Echoes": int(data.shape[3])},
            {"NaNVoxelsSetToZero": bad})
        return runtime


class FieldFromMapInputSpec(BaseInterfaceInputSpec):
    field_map = File(exists=True, mandatory=True)
    units = traits.Str(mandatory=True, desc="Hz, rad/s, ppm or rad")
    field_strength = traits.Float(mandatory=True, desc="tesla")
    echo_time = traits.Float(0.0, usedefault=True, desc="s, for an unwrapped phase")
    mask = File(exists=True, mandatory=True)


class FieldFromMapOutputSpec(TraitedSpec):
    field = File(exists=True, desc="total field, ppm, 0 outside the mask")
    mask = File(exists=True)
    provenance = File(exists=True)


class FieldFromMap(MeasuredInterface):
    """A given field map in ppm, in place of field estimation."""

    input_spec = FieldFromMapInputSpec
    output_spec = FieldFromMapOutputSpec

    def _compute(self, runtime):
        from qsmbids.recon.units import field_map_to_ppm

        values, img = load_image(self.inputs.field_map)
        values = values.reshape(*values.shape[:3], -1)[..., 0]
        mask = load_image(self.inputs.mask, bool)[0]
        finite = np.isfinite(values)
        mask &= finite
        ppm = field_map_to_ppm(np.where(finite, values, 0.0), self.inputs.units,
                               self.inputs.field_strength, self.inputs.echo_time or None)
        ppm = np.where(mask, ppm, 0.0).astype(np.float32)
        ref3 = nib.Nifti1Image(np.zeros((1, 1, 1), np.float32), img.affine, img.header)
        self._results["field"] = save_like(ppm, ref3, _out("field.nii"))
        self._results["mask"] = save_like(mask.astype(np.uint8), ref3, _out("mask_field.nii"))
        self._results["provenance"] = write_provenance(
            _out("provenance.json"), "field estimation",
            f"given field map ({self.inputs.units}) converted to ppm; no phase offset "
            "removal, unwrapping or echo fit",
            {"Units": self.inputs.units, "MagneticFieldStrength": self.inputs.field_strength,
             "EchoTime": self.inputs.echo_time or None},
            {"NonFiniteVoxels": int((~finite).sum())})
        return runtime
