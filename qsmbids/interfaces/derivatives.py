"""The nipype node that hands a run's results to :mod:`qsmbids.derivatives`."""

from __future__ import annotations

import json
from pathlib import Path

from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    TraitedSpec,
    isdefined,
    traits,
)

from qsmbids.derivatives.naming import NameContext
from qsmbids.derivatives.run_outputs import write_run_outputs
from qsmbids.derivatives.sidecars import image_sidecar
from qsmbids.interfaces.io import MeasuredInterface, read_provenance

#: provenance inputs, in pipeline order
STEPS = ("load", "mask", "field", "relax", "bg", "inv", "ref", "reg", "refine", "stats",
         "veins")
#: the steps that made each output kind
STEPS_FOR_KIND = {
    "totalfield": ("load", "mask", "field"),
    "fieldnoise": ("load", "mask", "field"),
    "localfield": ("load", "mask", "field", "bg"),
    "mask": ("mask", "bg"),
    "chi": ("load", "mask", "field", "bg", "inv", "ref"),
    "chi_template": ("load", "mask", "field", "bg", "inv", "ref", "reg", "refine"),
    "r2star": ("load", "mask", "relax"),
    "t2star": ("load", "mask", "relax"),
    "magnitude": ("load", "reg"),
    "dseg": ("reg", "refine"),
    "regions": ("load", "mask", "field", "bg", "inv", "ref", "reg", "refine", "stats"),
    "swi": ("load", "mask", "field", "bg", "veins"),
    "minip": ("load", "mask", "field", "bg", "veins"),
    "venogram": ("load", "mask", "field", "bg", "inv", "ref", "veins"),
    "veins": ("load", "mask", "field", "bg", "inv", "ref", "veins"),
    "veins_table": ("load", "mask", "field", "bg", "inv", "ref", "veins"),
}
FILE_KINDS = ("chi", "chi_template", "mask", "totalfield", "localfield", "fieldnoise",
              "r2star", "t2star", "magnitude", "dseg", "dseg_tsv", "regions", "swi", "minip",
              "venogram", "veins", "veins_table")


class DerivativesSinkInputSpec(BaseInterfaceInputSpec):
    output_dir = traits.Str(mandatory=True)
    run_spec = traits.Str(mandatory=True, desc="JSON of the run (entities, sources, TEs)")
    context = traits.Dict(mandatory=True, desc="NameContext fields")
    settings_hash = traits.Str(mandatory=True)
    settings_record = traits.Dict(desc="method settings for the manifest")
    num_threads = traits.Int(1, usedefault=True, desc="files written at once")
    reference = traits.Dict(desc="reference region and value")
    xfm_files = traits.List(File(exists=True))
    inverse_xfm_files = traits.List(File(exists=True))


for _kind in FILE_KINDS:
    DerivativesSinkInputSpec.add_class_trait(f"in_{_kind}", File(exists=True))
for _step in STEPS:
    DerivativesSinkInputSpec.add_class_trait(f"prov_{_step}", File(exists=True))


class DerivativesSinkOutputSpec(TraitedSpec):
    manifest = File(exists=True)


def _xfm_kind(path: str) -> str | None:
    name = Path(path).name
    if "refine" in name:
        return "xfm_refine_inverse_warp" if "InverseWarp" in name else "xfm_refine_warp"
    if "from-T1w_to-subject" in name and name.endswith(".mat"):
        return "xfm_t1w"
    if name.endswith(".mat"):
        return "xfm_affine"
    if "InverseWarp" in name:
        return "xfm_inverse_warp"
    if "Warp" in name:
        return "xfm_warp"
    return None


class DerivativesSink(MeasuredInterface):
    """Write the run's outputs with BIDS derivative names and sidecars, manifest last."""

    input_spec = DerivativesSinkInputSpec
    output_spec = DerivativesSinkOutputSpec

    def _compute(self, runtime):
        from qsmbids.derivatives.naming import manifest_path

        run = json.loads(self.inputs.run_spec)
        provenance = {}
        for step in STEPS:
            value = getattr(self.inputs, f"prov_{step}")
            if isdefined(value):
                provenance[step] = read_provenance([value])[0]
        files = {k: getattr(self.inputs, f"in_{k}") for k in FILE_KINDS
                 if isdefined(getattr(self.inputs, f"in_{k}"))}
        xfms = list(self.inputs.xfm_files or []) + list(self.inputs.inverse_xfm_files or [])
        for path in xfms:
            kind = _xfm_kind(path)
            if kind and kind not in files:
                files[kind] = path
        reference = self.inputs.reference if isdefined(self.inputs.reference) else None
        context = NameContext(**self.inputs.context)
        output_dir = Path(self.inputs.output_dir)
        sources = run["sources"]
        base_extra = {"EchoTime": run["echo_times"],
                      "MagneticFieldStrength": run["field_strength"]}
        sidecars = {}
        for kind in files:
            if kind == "dseg_tsv":
                continue
            steps = [provenance[s] for s in STEPS_FOR_KIND.get(kind, ()) if s in provenance]
            is_chi = kind in ("chi", "chi_template", "regions")
            extra = dict(base_extra) if kind not in ("dseg",) and not kind.startswith(
                "xfm") else {}
            if kind in ("chi", "chi_template"):
                extra["ReferenceRegion"] = context.ref
            if kind in ("regions", "veins_table"):  # the table's own sidecar: columns
                beside = Path(files[kind]).with_suffix(".json")
                if beside.is_file():
                    table_meta = json.loads(beside.read_text())
                    if not table_meta.get("Sources"):
                        table_meta.pop("Sources", None)
                    extra.update(table_meta)
            sidecars[kind] = image_sidecar(kind=kind, sources=sources, steps=steps,
                                           reference=reference if is_chi else None,
                                           extra=extra)
        write_run_outputs(output_dir, run["entities"], files, sidecars, context=context,
                          settings_hash=self.inputs.settings_hash,
                          settings=self.inputs.settings_record or {},
                          threads=self.inputs.num_threads)
        self._results["manifest"] = str(manifest_path(output_dir, run["entities"]))
        return runtime
