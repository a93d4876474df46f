"""Nipype interface for the vein outputs: SWI, minIP, QSM venogram, vein mask, OEF."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from nipype.interfaces.base import (
    File,
    TraitedSpec,
    isdefined,
    traits,
)

from qsmbids.interfaces.io import (
    MeasuredInterface,
    geometry,
    load_image,
    read_provenance,
    save_like,
    write_provenance,
)
from qsmbids.interfaces.recon import _out, _ThreadsInputSpec
from qsmbids.stats.tables import format_tsv

#: columns of the per-run venous table, with their description and units
VENOUS_COLUMNS: dict[str, tuple[str, str | None]] = {
    "venous_chi": ("Median susceptibility on the centre lines of the veins at least "
                   "min_diameter wide and 10 mm or more inside the brain mask, "
                   "relative to reference, from TV solved to convergence in cubes of "
                   "21 mm around the veins (the map's own TV stops earlier, where the "
                   "veins are still off). On a simulated head (qsm-forward, 1 mm, 3 T, "
                   "blood 0.498 ppm) 0.000-0.010 ppm low at peak SNR 80 and 0.010-0.023 "
                   "at SNR 30, along and across B0; the sinuses at the brain's surface, "
                   "left out, read 0.13-0.16 ppm low", "ppm"),
    "reference": ("What venous_chi is relative to: CSF (the atlas's CSF labels, water-like) "
                  "or the susceptibility map's own reference", None),
    "n_voxels": ("Centre-line voxels measured", None),
    "n_boxes": ("Cubes TV was solved to convergence in (0: the map's own values, as "
                "with a non-TV inversion)", None),
    "coverage": ("Fraction of the large veins' centre-line voxels those cubes held", None),
    "mask_coverage": ("Fraction of the vein mask's voxels those cubes held: the mask is "
                      "grown on the converged values there and on the map's own "
                      "elsewhere (where thin veins along B0 read low)", None),
    "min_diameter": ("Least vein diameter measured", "mm"),
    "vein_volume": ("Volume of the whole vein mask", "mm^3"),
    "hematocrit": ("Haematocrit used for the OEF (fraction)", None),
    "hematocrit_source": ("Where the haematocrit came from: participants.tsv or the "
                          "default (--hematocrit)", None),
    "oef": ("Oxygen extraction fraction: venous_chi / (3.39 ppm x hematocrit)", None),
    "note": ("Why venous_chi and oef are n/a, if they are", None),
}


class VenousImagesInputSpec(_ThreadsInputSpec):
    magnitude = File(exists=True, mandatory=True, desc="magnitude (x, y, z, echo)")
    local_field = File(exists=True, mandatory=True, desc="local field, ppm")
    chi = File(exists=True, mandatory=True, desc="susceptibility, ppm")
    mask = File(exists=True, mandatory=True)
    slab_mm = traits.Float(mandatory=True, desc="projection slab thickness, mm")


class VenousImagesOutputSpec(TraitedSpec):
    swi = File(exists=True)
    minip = File(exists=True)
    venogram = File(exists=True, desc="ppm")
    vesselness = File(exists=True, desc="Frangi vesselness of the vein candidates, 0..1")
    depth = File(exists=True, desc="distance of each voxel to the outside of the mask, mm")
    provenance = File(exists=True)


class VenousImages(MeasuredInterface):
    """SWI and its minIP, the QSM venogram, and the vesselness the vein mask starts from.

    Needs no atlas, so it runs while the atlas registration does.
    """

    input_spec = VenousImagesInputSpec
    output_spec = VenousImagesOutputSpec

    def _compute(self, runtime):
        from qsmbids.recon import swi, veins
        from qsmbids.recon.masking import distance_to_outside

        magnitude = load_image(self.inputs.magnitude)[0]
        field = load_image(self.inputs.local_field)[0]
        chi, chi_img = load_image(self.inputs.chi)
        mask = load_image(self.inputs.mask, bool)[0]
        voxel, _ = geometry(chi_img)
        axis = swi.superior_axis(chi_img.affine)
        image = swi.susceptibility_weighted_image(magnitude, field, mask)
        del magnitude, field
        minip = swi.slab_projection(image, mask, voxel, "min", axis=axis,
                                    slab_mm=self.inputs.slab_mm)
        venogram = swi.slab_projection(chi, mask, voxel, "max", axis=axis,
                                       slab_mm=self.inputs.slab_mm)
        # uncompressed: the derivatives writer gzips the final copies
        self._results["swi"] = save_like(image, chi_img, _out("swi.nii"))
        self._results["minip"] = save_like(minip, chi_img, _out("minip.nii"))
        self._results["venogram"] = save_like(venogram, chi_img, _out("venogram.nii"))
        # the brain's depth: for the candidates here, and for the vein node's edge rim,
        # 10 mm rule and cube solves (about 0.7 s at 1 mm, so computed once)
        depth = distance_to_outside(mask, voxel).astype(np.float32)
        self._results["depth"] = save_like(depth, chi_img, _out("depth.nii"))
        self._results["vesselness"] = save_like(
            veins.candidate_vesselness(chi, mask, voxel, depth_mm=depth,
                                       workers=self.inputs.num_threads), chi_img,
            _out("vesselness.nii"))
        self._results["provenance"] = write_provenance(
            _out("provenance.json"), "venous images",
            "CLEAR-SWI-style SWI (Eckstein 2021), slab minIP/MIP, Frangi vesselness",
            {"SlabThickness_mm": self.inputs.slab_mm, "ProjectionAxis": axis})
        return runtime


class VeinOutputsInputSpec(_ThreadsInputSpec):
    chi = File(exists=True, mandatory=True, desc="susceptibility, ppm")
    mask = File(exists=True, mandatory=True)
    vesselness = File(exists=True, mandatory=True, desc="from VenousImages")
    depth = File(exists=True, desc="the mask's depth, mm, from VenousImages (default: "
                                   "computed here)")
    images_provenance = File(exists=True, mandatory=True, desc="from VenousImages")
    dseg = File(exists=True, desc="atlas labels on the run's grid")
    local_field = File(exists=True, desc="local field the map was inverted from, ppm")
    inversion_provenance = File(exists=True, desc="the dipole inversion's provenance (a "
                                                  "TV one is solved again in cubes)")
    nucleus_labels = traits.List(traits.Int, desc="dseg labels excluded from the veins")
    csf_labels = traits.List(traits.Int, desc="dseg labels of CSF (the OEF's water level)")
    hematocrit = traits.Float(mandatory=True, desc="fraction")
    hematocrit_source = traits.Str("default")


class VeinOutputsOutputSpec(TraitedSpec):
    veins = File(exists=True, desc="vein mask")
    veins_table = File(exists=True, desc="one-row TSV (VENOUS_COLUMNS), sidecar beside it")
    provenance = File(exists=True, desc="the vein outputs' step, with VenousImages' too")


class VeinOutputs(MeasuredInterface):
    """The vein mask (the atlas's nuclei kept out) and the venous table (OEF)."""

    input_spec = VeinOutputsInputSpec
    output_spec = VeinOutputsOutputSpec

    def _compute(self, runtime):
        from qsmbids.recon import veins
        from qsmbids.recon.masking import distance_to_outside
        from qsmbids.recon.vein_refinement import find_veins

        chi, chi_img = load_image(self.inputs.chi)
        mask = load_image(self.inputs.mask, bool)[0]
        vesselness = load_image(self.inputs.vesselness)[0]
        images = read_provenance([self.inputs.images_provenance])[0]
        voxel, _ = geometry(chi_img)
        exclude, water, reference = None, 0.0, "map"
        if isdefined(self.inputs.dseg):
            labels = load_image(self.inputs.dseg, np.int32)[0]
            exclude = np.isin(labels, list(self.inputs.nucleus_labels or []))
            csf = mask & np.isin(labels, list(self.inputs.csf_labels or []))
            if csf.sum() >= 20:
                water, reference = float(np.median(chi[csf])), "CSF"
        # the mask's edge rim, the measure's depth and the cubes' data weight
        depth = load_image(self.inputs.depth)[0] if isdefined(self.inputs.depth) \
            else distance_to_outside(mask, voxel).astype(np.float32)
        measurable = float(np.mean(voxel)) <= veins.MAX_MEASURE_VOXEL_MM
        solve = None
        if (measurable and isdefined(self.inputs.local_field)
                and isdefined(self.inputs.inversion_provenance)):
            from qsmbids.recon.vein_boxes import solve_from_provenance

            solve = solve_from_provenance(
                read_provenance([self.inputs.inversion_provenance])[0],
                load_image(self.inputs.local_field)[0], mask, voxel,
                workers=self.inputs.num_threads, depth_mm=depth)
        # found on the map, then again on TV converged in cubes around those veins
        result = find_veins(chi - np.float32(water), mask, voxel, solve=solve,
                            exclude=exclude, vesselness_map=vesselness, depth_mm=depth)
        found = result.mask
        measure = veins.venous_measure(result.chi_ppm, found, voxel,
                                       hematocrit=self.inputs.hematocrit, depth_mm=depth,
                                       converged=result.cubes)
        note = None
        if not measurable:
            note = (f"voxels of {np.mean(voxel):.1f} mm: the veins' susceptibility is "
                    f"measured at {veins.MAX_MEASURE_VOXEL_MM:g} mm or finer")
            measure = veins.VenousMeasure(float("nan"), 0, measure.min_diameter_mm,
                                          measure.hematocrit, float("nan"))
        elif measure.n_voxels == 0:
            note = (f"no vein at least {measure.min_diameter_mm:g} mm wide was found "
                    f"{veins.DEFAULT_MEASURE_DEPTH_MM:g} mm or more inside the brain mask")
        self._results["veins"] = save_like(found.astype(np.uint8), chi_img, _out("veins.nii"))
        row = {"venous_chi": measure.chi_ppm, "reference": reference,
               "n_voxels": measure.n_voxels, "n_boxes": measure.n_boxes,
               "coverage": measure.coverage, "mask_coverage": result.mask_coverage,
               "min_diameter": measure.min_diameter_mm,
               "vein_volume": float(found.sum() * np.prod(voxel)),
               "hematocrit": measure.hematocrit,
               "hematocrit_source": self.inputs.hematocrit_source, "oef": measure.oef,
               "note": note}
        table = _out("veins_stats.tsv")
        Path(table).write_text(format_tsv([row], list(VENOUS_COLUMNS)), encoding="utf-8")
        with open(table.replace(".tsv", ".json"), "w", encoding="utf-8") as handle:
            json.dump({"Measure": "Veins", **{
                c: {"Description": d, **({"Units": u} if u else {})}
                for c, (d, u) in VENOUS_COLUMNS.items()}}, handle, indent=2)
        self._results["veins_table"] = table
        self._results["provenance"] = write_provenance(
            _out("provenance.json"), "veins",
            "CLEAR-SWI-style SWI (Eckstein 2021), slab minIP/MIP, Frangi vein mask, "
            "venous susceptibility and OEF",
            {**images["Parameters"], "Hematocrit": measure.hematocrit,
             "DeltaChiDeoxygenated_ppm": veins.DELTA_CHI_DO_PPM,
             "VenousChiSolve": ("the map's values" if solve is None else
                                "TV (the map's weight and data weight) to convergence "
                                "in cubes around the veins found on the map (the large "
                                "veins' centre lines first); the vein mask grown again "
                                "on those values")},
            {"VeinVoxels": int(found.sum()), "VeinVoxelsOnMap": int(result.first_mask.sum()),
             "VenousChi_ppm": measure.chi_ppm,
             "OEF": measure.oef, "VenousReference": reference,
             "VenousCubes": measure.n_boxes, "VenousCubeCoverage": measure.coverage,
             "VeinMaskCubeCoverage": result.mask_coverage})
        return runtime

