"""JSON sidecars of a run's outputs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from qsmbids.derivatives.naming import OUTPUT_KINDS


def image_sidecar(*, kind: str, sources: Sequence[str], steps: Sequence[Mapping[str, Any]],
                  reference: Mapping[str, Any] | None = None,
                  extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """JSON sidecar of a run output.

    Parameters
    ----------
    kind
        Key of :data:`OUTPUT_KINDS` (gives Units and Description).
    sources
        BIDS URIs of the files it comes from (``bids:raw:...`` or ``bids::...``).
    steps
        Processing steps that made it, in order, each ``{"Step", "Algorithm",
        "Parameters"}``.
    reference
        Susceptibility reference (region and value), for susceptibility outputs.
    extra
        Additional keys (e.g. EchoTime, MagneticFieldStrength).
    """
    spec = OUTPUT_KINDS[kind]
    sidecar: dict[str, Any] = {"Description": spec.description, "Sources": list(sources)}
    if spec.units is not None:
        sidecar["Units"] = spec.units
    if spec.extension == ".nii.gz" and spec.suffix not in ("xfm",):
        # every image output is masked to the brain except the labels (the registration
        # target, ``magnitude``, is zero outside the reconstruction mask)
        sidecar["SkullStripped"] = kind != "dseg"
    if steps:
        sidecar["ProcessingSteps"] = [dict(s) for s in steps]
        estimating = [s for s in steps if s.get("Step") not in ("referencing",)]
        sidecar["EstimationAlgorithm"] = (estimating or list(steps))[-1].get("Algorithm")
    if reference is not None:
        sidecar["Reference"] = dict(reference)
    if extra:
        sidecar.update(extra)
    return sidecar
