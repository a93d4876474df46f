"""Derivative names: entities in BIDS order, file names and folders of a run's outputs."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from qsmbids.entities import join_entities


@dataclass(frozen=True)
class OutputKind:
    """How one kind of run output is named and described.

    Attributes
    ----------
    entities
        Extra entities, values may use ``{ref}``, ``{atlas}``, ``{template}`` placeholders.
    suffix, extension
        BIDS suffix and file extension (with dot).
    units
        ``Units`` for the sidecar (None for none).
    description
        Sidecar ``Description``.
    """

    entities: tuple[tuple[str, str], ...]
    suffix: str
    extension: str
    units: str | None
    description: str


#: every per-run output qsmbids writes; keys are what workflows hand to the sink
OUTPUT_KINDS: dict[str, OutputKind] = {
    "chi": OutputKind((("space", "orig"), ("desc", "{ref}")), "Chimap", ".nii.gz", "ppm",
                      "Magnetic susceptibility relative to the reference region"),
    "chi_template": OutputKind((("space", "{template}"), ("desc", "{ref}")), "Chimap",
                               ".nii.gz", "ppm",
                               "Magnetic susceptibility resampled to the template space"),
    "mask": OutputKind((("space", "orig"), ("desc", "brain")), "mask", ".nii.gz", None,
                       "Brain mask the susceptibility map is valid on"),
    "totalfield": OutputKind((("space", "orig"), ("desc", "totalfield")), "fieldmap",
                             ".nii.gz", "ppm",
                             "Total field from the multi-echo fit (relative to B0)"),
    "localfield": OutputKind((("space", "orig"), ("desc", "localfield")), "fieldmap",
                             ".nii.gz", "ppm",
                             "Local (tissue) field after background field removal"),
    "fieldnoise": OutputKind((("space", "orig"), ("desc", "fieldnoise")), "fieldmap",
                             ".nii.gz", "ppm", "Noise standard deviation of the field fit"),
    "r2star": OutputKind((("space", "orig"),), "R2starmap", ".nii.gz", "1/s",
                         "Effective transverse relaxation rate"),
    "t2star": OutputKind((("space", "orig"),), "T2starmap", ".nii.gz", "s",
                         "Effective transverse relaxation time"),
    "magnitude": OutputKind((("space", "orig"), ("desc", "combined")), "magnitude",
                            ".nii.gz", "arbitrary",
                            "Echo-combined, bias-corrected magnitude inside the brain mask "
                            "(registration target)"),
    "dseg": OutputKind((("space", "orig"), ("atlas", "{atlas}")), "dseg", ".nii.gz", None,
                       "Atlas labels warped to the subject (ANTs genericLabel)"),
    "dseg_tsv": OutputKind((("space", "orig"), ("atlas", "{atlas}")), "dseg", ".tsv", None,
                           "Label table of the dseg image"),
    "xfm_affine": OutputKind((("from", "{template}"), ("to", "orig"), ("mode", "image"),
                              ("desc", "affine")), "xfm", ".mat", None,
                             "Template-to-subject affine (ITK)"),
    "xfm_warp": OutputKind((("from", "{template}"), ("to", "orig"), ("mode", "image"),
                            ("desc", "warp")), "xfm", ".nii.gz", None,
                           "Template-to-subject displacement field (ITK)"),
    "xfm_inverse_warp": OutputKind((("from", "orig"), ("to", "{template}"), ("mode", "image"),
                                    ("desc", "warp")), "xfm", ".nii.gz", None,
                                   "Subject-to-template displacement field (ITK)"),
    "xfm_refine_warp": OutputKind((("from", "{template}"), ("to", "orig"), ("mode", "image"),
                                   ("desc", "chirefine")), "xfm", ".nii.gz", None,
                                  "Susceptibility refinement of the deep grey nuclei, "
                                  "displacement field on the subject grid (ITK); "
                                  "template-to-subject it comes first in "
                                  "antsApplyTransforms order: refinement, warp, affine"),
    "xfm_refine_inverse_warp": OutputKind((("from", "orig"), ("to", "{template}"),
                                           ("mode", "image"), ("desc", "chirefine")), "xfm",
                                          ".nii.gz", None,
                                          "Inverse of the susceptibility refinement (ITK); "
                                          "subject-to-template it comes last: inverse "
                                          "affine, inverse warp, inverse refinement"),
    "xfm_t1w": OutputKind((("from", "T1w"), ("to", "orig"), ("mode", "image"),
                           ("desc", "rigid")), "xfm", ".mat", None,
                          "T1w-to-subject GRE rigid transform (ITK)"),
    "regions": OutputKind((("space", "orig"), ("atlas", "{atlas}"), ("desc", "{ref}")),
                          "stats", ".tsv", "ppm",
                          "Regional susceptibility statistics"),
    # suffixes swi and minIP as proposed for BIDS (bids-specification PR 2343, 2538)
    "swi": OutputKind((("space", "orig"),), "swi", ".nii.gz", "arbitrary",
                      "Susceptibility-weighted image: SNR-weighted echo magnitudes times a "
                      "tanh phase mask from the local field (CLEAR-SWI style)"),
    "minip": OutputKind((("space", "orig"),), "minIP", ".nii.gz", "arbitrary",
                        "Minimum-intensity projection of the SWI over sliding slabs"),
    "venogram": OutputKind((("space", "orig"), ("desc", "venogram")), "Chimap", ".nii.gz",
                           "ppm", "QSM venogram: maximum-intensity projection of the "
                           "susceptibility map over sliding slabs"),
    "veins": OutputKind((("space", "orig"), ("desc", "veins")), "mask", ".nii.gz", None,
                        "Veins: Frangi vesselness seeds grown to their half maximum"),
    "veins_table": OutputKind((("space", "orig"), ("desc", "veins")), "stats", ".tsv",
                              None, "Venous susceptibility and oxygen extraction fraction"),
}


def _clean_label(value: str) -> str:
    label = re.sub(r"[^A-Za-z0-9]", "", str(value))
    if not label:
        raise ValueError(f"cannot make a BIDS label from {value!r}")
    return label


@dataclass(frozen=True)
class NameContext:
    """Setting-dependent labels that enter derivative names.

    Attributes
    ----------
    ref
        Reference region label, e.g. ``wholebrain`` or ``csf`` (desc of the Chimap).
    atlas
        Atlas name (e.g. ``qsmbids``, ``phantom``).
    template
        Template space (e.g. ``MNI152NLin2009cAsym``).
    """

    ref: str = "wholebrain"
    atlas: str = "qsmbids"
    template: str = "MNI152NLin2009cAsym"

    def fill(self, value: str) -> str:
        return _clean_label(value.format(ref=self.ref, atlas=self.atlas,
                                         template=self.template))


def derivative_name(run_entities: Mapping[str, str], kind: str,
                    context: NameContext = NameContext()) -> str:
    """File name of a run output, e.g. ``sub-01_run-1_space-orig_desc-wholebrain_Chimap.nii.gz``.

    Parameters
    ----------
    run_entities
        Entities of the raw run (short keys: sub, ses, acq, rec, run).
    kind
        A key of :data:`OUTPUT_KINDS`.
    context
        Labels depending on the settings.
    """
    spec = OUTPUT_KINDS[kind]
    entities = dict(run_entities)
    entities.update({k: context.fill(v) for k, v in spec.entities})
    return join_entities(entities) + f"_{spec.suffix}{spec.extension}"


def run_folder(output_dir: Path, run_entities: Mapping[str, str]) -> Path:
    """``OUTPUT_DIR/sub-X[/ses-Y]/anat`` for a run."""
    folder = Path(output_dir) / f"sub-{run_entities['sub']}"
    if "ses" in run_entities:
        folder = folder / f"ses-{run_entities['ses']}"
    return folder / "anat"


def run_prefix(run_entities: Mapping[str, str]) -> str:
    """``sub-01_ses-1_run-2`` from entities."""
    return join_entities(run_entities)


def log_folder(output_dir: Path, run_entities: Mapping[str, str]) -> Path:
    """``OUTPUT_DIR/sub-X/log``: per-run logs and manifests (listed in ``.bidsignore``)."""
    return Path(output_dir) / f"sub-{run_entities['sub']}" / "log"


def log_path(output_dir: Path, run_entities: Mapping[str, str]) -> Path:
    """Log file of a run."""
    return log_folder(output_dir, run_entities) / f"{run_prefix(run_entities)}.log"


def manifest_path(output_dir: Path, run_entities: Mapping[str, str]) -> Path:
    """Manifest of a run (written last; marks the run complete)."""
    return log_folder(output_dir, run_entities) / f"{run_prefix(run_entities)}_manifest.json"
