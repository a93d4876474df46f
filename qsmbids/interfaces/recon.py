"""Thin nipype interfaces around :mod:`qsmbids.recon`: NIfTI files in, NIfTI files out.

Each interface loads its inputs, calls one recon function, saves the result next
to a ``provenance.json`` (step, algorithm, parameters) that the derivatives sink
turns into sidecars. No numerics live here.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nibabel as nib
import numpy as np
from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    TraitedSpec,
    isdefined,
    traits,
)

from qsmbids.interfaces.io import (
    MeasuredInterface,
    geometry,
    load_image,
    save_like,
    write_provenance,
)
from qsmbids.recon import registry
from qsmbids.recon.units import hz_per_ppm

#: command-line method names -> names used by qsmbids.recon


def _out(name: str) -> str:
    return str(Path(os.getcwd(), name))


class _ThreadsInputSpec(BaseInterfaceInputSpec):
    num_threads = traits.Int(1, usedefault=True, nohash=True, desc="FFT/ANTs threads")


# ----------------------------------------------------------------------------- loading


class LoadGreInputSpec(BaseInterfaceInputSpec):
    run_spec = traits.Str(mandatory=True, desc="JSON: files per part, echo times, units")
    phase_units = traits.Str(desc="--phase-units override: rad, siemens or arbitrary")
    phase_sign = traits.Enum(1, -1, usedefault=True,
                             desc="--phase-sign: multiplies the wrapped phase (handedness)")
    num_threads = traits.Int(1, usedefault=True, desc="files read at once")


class LoadGreOutputSpec(TraitedSpec):
    magnitude = File(exists=True, desc="magnitude, (x, y, z, echo), float32")
    phase = File(exists=True, desc="wrapped phase in rad, (x, y, z, echo), float32")
    provenance = File(exists=True)


class LoadGre(MeasuredInterface):
    """Stack the echoes of a run and convert the phase to radians (any vendor convention)."""

    input_spec = LoadGreInputSpec
    output_spec = LoadGreOutputSpec

    def _compute(self, runtime):
        from qsmbids.recon.phase_scaling import (
            magnitude_phase_from_complex,
            scale_phase_to_radians,
        )

        spec = json.loads(self.inputs.run_spec)
        units_info: dict = {}
        nan_voxels = {}

        def read(path):
            return np.asarray(nib.load(path).dataobj, dtype=np.float32)

        def stack(paths):
            # echoes read at once: zlib releases the GIL (a 1 mm run's 8 files take
            # 1.7 s one after the other)
            with ThreadPoolExecutor(max_workers=max(1, self.inputs.num_threads)) as pool:
                volumes = list(pool.map(read, paths))
            data = volumes[0] if spec["four_d"] else np.stack(
                [v.reshape(v.shape[:3]) for v in volumes], axis=-1)
            bad = ~np.isfinite(data)
            if bad.any():  # a NaN background (some converters and masking tools): no signal
                nan_voxels[Path(paths[0]).name] = int(bad.sum())
                data[bad] = 0.0
            return data, nib.load(paths[0])

        if spec["real"]:
            from qsmbids.recon.slice_alternation import undo_slice_alternation

            real, ref = stack(spec["real"])
            imag, _ = stack(spec["imag"])
            alternation = undo_slice_alternation(real, imag)
            real, imag = alternation.real, alternation.imaginary
            converted = magnitude_phase_from_complex(real, imag)
            magnitude, phase, rule = converted.magnitude, converted.phase, converted.rule
            if alternation.axes:
                rule += ("; pi alternation between neighbouring slices along voxel axis "
                         + ", ".join(str(a) for a in alternation.axes)
                         + " undone (every other slice negated, as GE exports need)")
            units_info = {"PhaseUnitsRule": rule, "PhaseUnitsGuessed": False,
                          "SliceAlternationAxes": list(alternation.axes),
                          "NeighbourCoherence": [round(c, 3) for c in alternation.coherence]}
            if isdefined(self.inputs.phase_units):
                units_info["PhaseUnitsWarning"] = (
                    f"--phase-units {self.inputs.phase_units} ignored: the phase comes "
                    "from real/imaginary parts")
            del real, imag
        elif spec.get("channels", 1) > 1:
            override = self.inputs.phase_units if isdefined(self.inputs.phase_units) else None
            magnitude, phase, rule, units_info, ref = _combine_channel_files(spec, override)
        else:
            magnitude, ref = stack(spec["magnitude"])
            raw_phase, _ = stack(spec["phase"])
            override = self.inputs.phase_units if isdefined(self.inputs.phase_units) else None
            scaled = scale_phase_to_radians(raw_phase, spec.get("phase_units"), override)
            phase, rule = scaled.phase, scaled.rule
            units_info = {"PhaseUnitsRule": rule, "PhaseUnitsGuessed": scaled.guessed}
            if scaled.warning:
                units_info["PhaseUnitsWarning"] = scaled.warning
            del raw_phase
        if nan_voxels:
            units_info["NaNVoxelsSetToZero"] = nan_voxels
        if self.inputs.phase_sign == -1:  # -phase is wrapped phase again (up to the -pi edge)
            phase = np.negative(phase, out=phase)
        ref3 = nib.Nifti1Image(np.zeros((1, 1, 1), np.float32), ref.affine, ref.header)
        self._results["magnitude"] = save_like(magnitude, ref3, _out("magnitude.nii"))
        self._results["phase"] = save_like(phase, ref3, _out("phase.nii"))
        self._results["provenance"] = write_provenance(
            _out("provenance.json"), "phase scaling", rule,
            {"EchoTime": spec["echo_times"], "Parts": "real/imag" if spec["real"] else
             "mag/phase", "SidecarUnits": spec.get("phase_units"),
             "PhaseSign": int(self.inputs.phase_sign),
             "Override": self.inputs.phase_units if isdefined(self.inputs.phase_units)
             else None}, units_info)
        return runtime


def _combine_channel_files(spec: dict, override: str | None):
    """Magnitude and phase of a run stored as uncombined coil channels, combined by
    MCPC-3D-S one channel at a time (each channel's phase scaled to radians alone)."""
    from qsmbids.recon.coil_combination import combine_channels
    from qsmbids.recon.phase_scaling import scale_phase_to_radians

    mags = [nib.load(p) for p in spec["magnitude"]]
    phases = [nib.load(p) for p in spec["phase"]]
    rules: set[str] = set()
    guessed = False

    def volume(images, channel, echo):
        if spec["four_d"]:
            return np.asarray(images[0].dataobj[..., echo, channel], np.float32)
        return np.asarray(images[echo].dataobj[..., channel], np.float32)

    def read(channel, echo):
        nonlocal guessed
        magnitude = np.nan_to_num(volume(mags, channel, echo))
        scaled = scale_phase_to_radians(np.nan_to_num(volume(phases, channel, echo)),
                                        spec.get("phase_units"), override)
        rules.add(scaled.rule)
        guessed |= scaled.guessed
        return magnitude, scaled.phase

    voxel = tuple(float(v) for v in mags[0].header.get_zooms()[:3])
    combined = combine_channels(read, int(spec["channels"]), spec["echo_times"], voxel)
    rule = "; ".join(sorted(rules)) + "; " + combined.description
    info = {"PhaseUnitsRule": rule, "PhaseUnitsGuessed": guessed,
            "CoilChannels": int(spec["channels"]), "CoilCombination": combined.description}
    if len(rules) > 1:
        info["PhaseUnitsWarning"] = ("the channels' phase values led to different unit "
                                     f"rules ({len(rules)}); pass --phase-units")
    return combined.magnitude, combined.phase, rule, info, mags[0]


# ----------------------------------------------------------------------------- mask


class BrainMaskInputSpec(BaseInterfaceInputSpec):
    magnitude = File(exists=True, mandatory=True)
    user_mask = File(exists=True, desc="user-supplied mask on the same grid (optional)")


class MaskOutputSpec(TraitedSpec):
    mask = File(exists=True)
    provenance = File(exists=True)


class BrainMask(MeasuredInterface):
    """Brain mask from the magnitude (no external tool), or a checked user mask."""

    input_spec = BrainMaskInputSpec
    output_spec = MaskOutputSpec

    def _compute(self, runtime):
        from qsmbids.recon.masking import brain_mask, user_mask

        magnitude, img = load_image(self.inputs.magnitude)
        voxel, _ = geometry(img)
        if isdefined(self.inputs.user_mask):
            mask_img = nib.load(self.inputs.user_mask)
            result = user_mask(np.asarray(mask_img.dataobj), magnitude.shape[:3], voxel,
                               source=Path(self.inputs.user_mask).name)
            params = {"File": Path(self.inputs.user_mask).name}
        else:
            result = brain_mask(magnitude, voxel)
            params = {"Threshold": float(result.threshold)}
        self._results["mask"] = save_like(result.mask.astype(np.uint8), img, _out("mask.nii"))
        self._results["provenance"] = write_provenance(
            _out("provenance.json"), "brain mask", result.method, params,
            {"VolumeMl": float(result.mask.sum() * np.prod(voxel) / 1000)})
        return runtime


# ----------------------------------------------------------------------------- field


class FieldInputSpec(_ThreadsInputSpec):
    magnitude = File(exists=True, mandatory=True)
    phase = File(exists=True, mandatory=True)
    mask = File(exists=True, mandatory=True)
    echo_times = traits.List(traits.Float, mandatory=True, desc="seconds")
    field_strength = traits.Float(mandatory=True, desc="tesla")
    unwrapping = traits.Enum(*registry.names("unwrapping"), usedefault=True)
    max_noise_ratio = traits.Float(
        desc="trim edge voxels whose field standard error exceeds this x the median "
             "(default qsmbids.recon.reliability.DEFAULT_MAX_NOISE_RATIO)")


class FieldOutputSpec(TraitedSpec):
    field = File(exists=True, desc="total field, ppm")
    field_noise = File(exists=True, desc="standard error of the field, ppm")
    mask = File(exists=True, desc="the mask without its unreliable edge voxels")
    provenance = File(exists=True)


class EstimateField(MeasuredInterface):
    """Phase offset removal, unwrapping and echo fit -> total field (ppm), and the mask
    without the edge voxels whose field is too noisy to be used as data."""

    input_spec = FieldInputSpec
    output_spec = FieldOutputSpec

    def _compute(self, runtime):
        from qsmbids.recon.field_estimation import FieldEstimationSettings, estimate_field
        from qsmbids.recon.reliability import DEFAULT_MAX_NOISE_RATIO, trim_unreliable
        from qsmbids.recon.unwrap import UnwrapSettings

        magnitude, img = load_image(self.inputs.magnitude)
        phase, _ = load_image(self.inputs.phase)
        mask = load_image(self.inputs.mask, bool)[0]
        voxel, _ = geometry(img)
        settings = FieldEstimationSettings(
            unwrap=UnwrapSettings(
                method=registry.method("unwrapping", self.inputs.unwrapping).recon_name))
        result = estimate_field(magnitude, phase, self.inputs.echo_times,
                                self.inputs.field_strength, mask, voxel, settings)
        del magnitude, phase
        ref3 = nib.Nifti1Image(np.zeros((1, 1, 1), np.float32), img.affine, img.header)
        fitted = result.field
        self._results["field"] = save_like(fitted.field_ppm, ref3, _out("field.nii"))
        noise = fitted.field_std_hz / np.float32(hz_per_ppm(self.inputs.field_strength))
        self._results["field_noise"] = save_like(noise, ref3, _out("field_noise.nii"))
        ratio = (self.inputs.max_noise_ratio if isdefined(self.inputs.max_noise_ratio)
                 else DEFAULT_MAX_NOISE_RATIO)
        trimmed, removed = trim_unreliable(mask, fitted.field_std_hz, ratio)
        self._results["mask"] = save_like(trimmed.astype(np.uint8), ref3, _out("mask_field.nii"))
        self._results["provenance"] = write_provenance(
            _out("provenance.json"), "field estimation",
            f"{result.description}; mask voxels connected to the edge whose field standard "
            f"error exceeds {ratio:g} x its median removed",
            {"Unwrapping": self.inputs.unwrapping,
             "MagneticFieldStrength": self.inputs.field_strength,
             "MaxNoiseRatio": ratio},
            {"NoiseSigma": float(fitted.noise_sigma), "TrimmedVoxels": removed,
             **_unwrapping_checks(result, trimmed, self.inputs.unwrapping,
                                  len(self.inputs.echo_times))})
        return runtime


def _unwrapping_checks(result, mask: np.ndarray, unwrapping: str, n_echoes: int) -> dict:
    """What the report checks the field estimation by: the wraps the spatial unwrapping
    left and the median and 95th percentile (rad) of the echo-fit residual in the mask.
    Only for ``romeo``: the Laplacian unwrapping returns a smooth phase that differs from
    the true one by a harmonic function per echo, so it leaves no wraps and its echo
    fit's residual measures that function, not the data; one echo has no residual."""
    if unwrapping != "romeo":
        return {}
    found = {"ResidualWraps": int(result.residual_wraps)}
    values = result.field.residual_rad[mask]
    values = values[np.isfinite(values)]
    if n_echoes >= 2 and values.size:
        found.update(EchoFitResidualMedianRad=float(np.median(values)),
                     EchoFitResidualP95Rad=float(np.percentile(values, 95)))
    return found


# ----------------------------------------------------------------------------- R2*


class RelaxometryInputSpec(BaseInterfaceInputSpec):
    magnitude = File(exists=True, mandatory=True)
    mask = File(exists=True, mandatory=True)
    echo_times = traits.List(traits.Float, mandatory=True, desc="seconds")


class RelaxometryOutputSpec(TraitedSpec):
    r2star = File(exists=True, desc="1/s")
    t2star = File(exists=True, desc="s")
    provenance = File(exists=True)


class Relaxometry(MeasuredInterface):
    """R2* (1/s) and T2* (s) maps from the multi-echo magnitude."""

    input_spec = RelaxometryInputSpec
    output_spec = RelaxometryOutputSpec

    def _compute(self, runtime):
        from qsmbids.recon.relaxometry import estimate_r2star

        magnitude, img = load_image(self.inputs.magnitude)
        mask = load_image(self.inputs.mask, bool)[0]
        maps = estimate_r2star(magnitude, self.inputs.echo_times, mask)
        ref3 = nib.Nifti1Image(np.zeros((1, 1, 1), np.float32), img.affine, img.header)
        self._results["r2star"] = save_like(maps.r2star, ref3, _out("r2star.nii"))
        self._results["t2star"] = save_like(maps.t2star, ref3, _out("t2star.nii"))
        self._results["provenance"] = write_provenance(
            _out("provenance.json"), "relaxometry", maps.method, {})
        return runtime


# ----------------------------------------------------------------------------- QSM


class BackgroundInputSpec(_ThreadsInputSpec):
    field = File(exists=True, mandatory=True, desc="total field, ppm")
    mask = File(exists=True, mandatory=True)
    method = traits.Enum(*registry.names("bg_removal"), usedefault=True)
    offset_term = traits.Bool(
        False, usedefault=True,
        desc="single echo: also remove the non-harmonic (r^2) part of a smooth phase "
             "offset (qsmbids.recon.background.offset_term)")


class BackgroundOutputSpec(TraitedSpec):
    local_field = File(exists=True, desc="ppm")
    mask = File(exists=True, desc="mask the local field is valid on")
    provenance = File(exists=True)


class RemoveBackground(MeasuredInterface):
    """Background field removal (V-SHARP, PDF, ...) -> local field and eroded mask."""

    input_spec = BackgroundInputSpec
    output_spec = BackgroundOutputSpec

    def _compute(self, runtime):
        from qsmbids.recon.methods import background_method

        field, img = load_image(self.inputs.field)
        mask = load_image(self.inputs.mask, bool)[0]
        voxel, b0 = geometry(img)
        method = background_method(self.inputs.method)
        result = method(field, mask, voxel, b0, workers=self.inputs.num_threads)
        local, params = result.local_field, dict(result.parameters)
        if self.inputs.offset_term:
            from qsmbids.recon.background.offset_term import remove_offset_term

            term = remove_offset_term(
                local, result.mask, voxel,
                lambda f, m: method(f, m, voxel, b0,
                                    workers=self.inputs.num_threads).local_field)
            local = term.local_field
            params["OffsetTerm"] = {"Basis": "r^2 about the mask centroid (single echo)",
                                    "CoefficientPpm": round(term.coefficient_ppm, 6)}
        self._results["local_field"] = save_like(local, img, _out("local_field.nii"))
        self._results["mask"] = save_like(result.mask.astype(np.uint8), img,
                                          _out("mask_local.nii"))
        self._results["provenance"] = write_provenance(
            _out("provenance.json"), "background field removal", result.method,
            params, result.info)
        return runtime


class InversionInputSpec(_ThreadsInputSpec):
    local_field = File(exists=True, mandatory=True, desc="ppm")
    mask = File(exists=True, mandatory=True)
    method = traits.Enum(*registry.names("inversion"), usedefault=True)
    field_noise = File(exists=True, desc="standard error of the field, ppm (TV weight "
                                         "follows its median)")
    edge_ramp_mm = traits.Float(
        desc="TV data weight ramps from edge_weight_floor at the mask edge to 1 at this "
             "depth, mm; 0: uniform (default qsmbids.recon.reliability."
             "DEFAULT_EDGE_RAMP_MM)")
    edge_weight_floor = traits.Float(
        desc="TV data weight at the mask edge (default "
             "qsmbids.recon.reliability.DEFAULT_EDGE_WEIGHT_FLOOR)")
    free_outside = traits.Bool(
        True, usedefault=True,
        desc="TV: chi outside the mask free (no TV), to take up the background that "
             "background removal left (see qsmbids.recon.inversion.tv_admm)")


class InversionOutputSpec(TraitedSpec):
    chi = File(exists=True, desc="ppm, mean arbitrary")
    provenance = File(exists=True)


class DipoleInversion(MeasuredInterface):
    """Dipole inversion (TV, TKD, ...) with the B0 direction from the affine."""

    input_spec = InversionInputSpec
    output_spec = InversionOutputSpec

    def _compute(self, runtime):
        from qsmbids.recon.methods import inversion_method

        field, img = load_image(self.inputs.local_field)
        mask = load_image(self.inputs.mask, bool)[0]
        voxel, b0 = geometry(img)
        options = {}
        if self.inputs.method == "tv" and isdefined(self.inputs.field_noise):
            from qsmbids.recon.inversion.tv_admm import noise_adapted_lambda

            noise = load_image(self.inputs.field_noise)[0][mask]
            options["lam"] = noise_adapted_lambda(float(np.median(noise)) if noise.size
                                                  else float("nan"))
        edge = {}
        if self.inputs.method == "tv":
            from qsmbids.recon import reliability

            ramp, floor = self.inputs.edge_ramp_mm, self.inputs.edge_weight_floor
            edge = {"EdgeRampMm": ramp if isdefined(ramp)
                    else reliability.DEFAULT_EDGE_RAMP_MM,
                    "EdgeWeightFloor": floor if isdefined(floor)
                    else reliability.DEFAULT_EDGE_WEIGHT_FLOOR}
            if edge["EdgeRampMm"] > 0:
                options["weight"] = reliability.edge_weight(
                    mask, voxel, edge["EdgeWeightFloor"], edge["EdgeRampMm"])
            options["free_outside"] = bool(self.inputs.free_outside)
        result = inversion_method(self.inputs.method)(
            field, mask, voxel, b0, workers=self.inputs.num_threads, **options)
        self._results["chi"] = save_like(result.chi, img, _out("chi.nii"))
        params = dict(result.parameters)
        params.update(edge)
        params["B0Direction"] = [round(float(v), 6) for v in b0]
        self._results["provenance"] = write_provenance(
            _out("provenance.json"), "dipole inversion", result.method, params, result.info)
        return runtime


class ReferenceInputSpec(BaseInterfaceInputSpec):
    chi = File(exists=True, mandatory=True, desc="ppm")
    mask = File(exists=True, mandatory=True)
    dseg = File(exists=True, desc="atlas labels on the subject grid (for --reference csf)")
    atlas_dir = traits.Str(desc="atlas folder (its CSF reference labels)")
    method = traits.Enum(*registry.names("reference"), usedefault=True)


class ReferenceOutputSpec(TraitedSpec):
    chi = File(exists=True, desc="ppm relative to the reference")
    provenance = File(exists=True)
    reference = traits.Dict(desc="region, value subtracted (ppm), voxels")


class ReferenceSusceptibility(MeasuredInterface):
    """Subtract the mean susceptibility of a reference region (whole brain, CSF)."""

    input_spec = ReferenceInputSpec
    output_spec = ReferenceOutputSpec

    def _compute(self, runtime):
        from qsmbids.recon.methods import reference_susceptibility

        chi, img = load_image(self.inputs.chi)
        mask = load_image(self.inputs.mask, bool)[0]
        reference_mask = None
        if isdefined(self.inputs.dseg) and isdefined(self.inputs.atlas_dir):
            from qsmbids.atlas.model import load_atlas

            labels = load_image(self.inputs.dseg, np.int32)[0]
            csf = load_atlas(self.inputs.atlas_dir, check_images=False).references.get(
                "CSF", ())
            reference_mask = np.isin(labels, list(csf)) if csf else None
        chi_ref, reference = reference_susceptibility(chi, mask, self.inputs.method,
                                                      reference_mask)
        self._results["chi"] = save_like(chi_ref, img, _out("chi_ref.nii"))
        self._results["reference"] = reference
        self._results["provenance"] = write_provenance(
            _out("provenance.json"), "referencing", reference["Region"], reference)
        return runtime
