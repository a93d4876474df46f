"""The one module that names and writes qsmbids derivatives.

``OUTPUT_DIR`` is a BIDS derivative dataset::

    dataset_description.json   DatasetType "derivative", GeneratedBy, DatasetLinks.raw
    CITATION.md                methods boilerplate of the settings used
    sub-<s>/[ses-<t>/]anat/<run>_space-orig_desc-<ref>_Chimap.nii.gz (+ .json) ...
    sub-<s>/log/<run>.log, <run>_manifest.json

Every file is written atomically and files shared by concurrent participant runs
(dataset_description, CITATION.md, group tables) under the output lock, both from
:mod:`qsmbids.atomic`. A run's *manifest* is written last: a run is complete
when its manifest exists, was made with the same settings and every file it lists
is present with the recorded size.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qsmbids import __version__
from qsmbids.atomic import (
    atomic_copy,
    atomic_gzip,
    atomic_write_json,
    atomic_write_text,
    output_lock,
    remove_stale_temporaries,
)

#: entity order in derivative names (BIDS entity table order; from/to/mode as in fMRIPrep)
ENTITY_ORDER = ("sub", "ses", "acq", "rec", "run", "from", "to", "mode", "space", "atlas",
                "desc")
CODE_URL = "https://github.com/qsmbids/qsmbids"
BIDS_VERSION = "1.10.0"


# ----------------------------------------------------------------------------- names


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
    ordered = [f"{k}-{entities[k]}" for k in ENTITY_ORDER if k in entities]
    return "_".join(ordered) + f"_{spec.suffix}{spec.extension}"


def run_folder(output_dir: Path, run_entities: Mapping[str, str]) -> Path:
    """``OUTPUT_DIR/sub-X[/ses-Y]/anat`` for a run."""
    folder = Path(output_dir) / f"sub-{run_entities['sub']}"
    if "ses" in run_entities:
        folder = folder / f"ses-{run_entities['ses']}"
    return folder / "anat"


def run_prefix(run_entities: Mapping[str, str]) -> str:
    """``sub-01_ses-1_run-2`` from entities."""
    return "_".join(f"{k}-{run_entities[k]}" for k in ENTITY_ORDER if k in run_entities)


def log_folder(output_dir: Path, run_entities: Mapping[str, str]) -> Path:
    """``OUTPUT_DIR/sub-X/log``: per-run logs and manifests (listed in ``.bidsignore``)."""
    return Path(output_dir) / f"sub-{run_entities['sub']}" / "log"


def log_path(output_dir: Path, run_entities: Mapping[str, str]) -> Path:
    """Log file of a run."""
    return log_folder(output_dir, run_entities) / f"{run_prefix(run_entities)}.log"


def manifest_path(output_dir: Path, run_entities: Mapping[str, str]) -> Path:
    """Manifest of a run (written last; marks the run complete)."""
    return log_folder(output_dir, run_entities) / f"{run_prefix(run_entities)}_manifest.json"


# ----------------------------------------------------------------------------- dataset files


def container_info() -> dict[str, str] | None:
    """The container qsmbids runs in, from ``QSMBIDS_CONTAINER_*`` variables set by the image."""
    kind = os.environ.get("QSMBIDS_CONTAINER_TYPE")
    if not kind:
        if Path("/.dockerenv").exists():
            kind = "docker"
        elif os.environ.get("APPTAINER_CONTAINER") or os.environ.get("SINGULARITY_CONTAINER"):
            kind = "apptainer"
        else:
            return None
    info = {"Type": kind}
    tag = os.environ.get("QSMBIDS_CONTAINER_TAG")
    if tag:
        info["Tag"] = tag
    return info


def dataset_description(bids_dir: Path | None, version: str = __version__) -> dict[str, Any]:
    """Content of the derivative ``dataset_description.json``."""
    generated = {"Name": "qsmbids", "Version": version, "CodeURL": CODE_URL}
    container = container_info()
    if container:
        generated["Container"] = container
    desc: dict[str, Any] = {
        "Name": "qsmbids: quantitative susceptibility maps and regional tables",
        "BIDSVersion": BIDS_VERSION,
        "DatasetType": "derivative",
        "GeneratedBy": [generated],
        "HowToAcknowledge": "Cite the methods listed in CITATION.md.",
    }
    if bids_dir is not None:
        desc["DatasetLinks"] = {"raw": Path(bids_dir).absolute().as_uri()}
        desc["SourceDatasets"] = [{"URL": Path(bids_dir).absolute().as_uri()}]
    return desc


def init_output_dir(output_dir: Path, bids_dir: Path | None, citation: str | None = None,
                    version: str = __version__) -> None:
    """Create OUTPUT_DIR's shared files under the lock (safe with concurrent runs).

    ``dataset_description.json`` is (re)written when absent or made by another
    qsmbids version (the GeneratedBy entry of this version is added, earlier ones
    are kept); ``CITATION.md`` when ``citation`` is given and differs; a
    ``.bidsignore`` listing the log folders.
    """
    output_dir = Path(output_dir)
    with output_lock(output_dir):
        path = output_dir / "dataset_description.json"
        desc = dataset_description(bids_dir, version)
        if path.is_file():
            try:
                old = json.loads(path.read_text())
            except json.JSONDecodeError:
                old = None
            if isinstance(old, dict):
                previous = [g for g in old.get("GeneratedBy", [])
                            if not (g.get("Name") == "qsmbids" and g.get("Version") == version)]
                desc["GeneratedBy"] = previous + desc["GeneratedBy"]
                if old == desc:
                    desc = None
        if desc is not None:
            atomic_write_json(path, desc)
        ignore = output_dir / ".bidsignore"
        if not ignore.is_file():
            atomic_write_text(ignore, "sub-*/log/\nlogs/\n")
        if citation is not None:
            cite = output_dir / "CITATION.md"
            if not cite.is_file() or cite.read_text() != citation:
                atomic_write_text(cite, citation)


# ----------------------------------------------------------------------------- sidecars


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


# ----------------------------------------------------------------------------- run outputs


@dataclass(frozen=True)
class RunState:
    """Whether a run's outputs are complete (see :func:`run_state`)."""

    complete: bool
    reason: str


def run_state(output_dir: Path, run_entities: Mapping[str, str], settings_hash: str) -> RunState:
    """Check whether a run's outputs are complete and were made with these settings.

    Returns
    -------
    RunState
        ``complete`` False with ``reason`` 'no manifest', 'settings differ: ...',
        'missing FILE' or 'size of FILE changed'.
    """
    path = manifest_path(output_dir, run_entities)
    if not path.is_file():
        return RunState(False, "no manifest")
    try:
        manifest = json.loads(path.read_text())
        files = manifest["Files"]
        old_hash = manifest["SettingsHash"]
    except (json.JSONDecodeError, KeyError, TypeError):
        return RunState(False, "unreadable manifest")
    if old_hash != settings_hash:
        return RunState(False, f"settings differ (outputs made with settings {old_hash}, "
                               f"now {settings_hash})")
    for rel, size in files.items():
        target = Path(output_dir) / rel
        if not target.is_file():
            return RunState(False, f"missing {rel}")
        if target.stat().st_size != size:
            return RunState(False, f"size of {rel} changed")
    return RunState(True, "complete")


def write_run_outputs(
    output_dir: Path,
    run_entities: Mapping[str, str],
    files: Mapping[str, Path],
    sidecars: Mapping[str, Mapping[str, Any]],
    *,
    context: NameContext,
    settings_hash: str,
    settings: Mapping[str, Any] | None = None,
) -> dict[str, Path]:
    """Copy a run's results into OUTPUT_DIR under their derivative names, then the manifest.

    Parameters
    ----------
    output_dir
        The derivative dataset root.
    run_entities
        Entities of the raw run.
    files
        Output kind (key of :data:`OUTPUT_KINDS`) -> produced file (in the work dir).
    sidecars
        Output kind -> sidecar content (see :func:`image_sidecar`); kinds without an
        entry get no sidecar.
    context
        Labels for the names.
    settings_hash, settings
        Identify the settings (stored in the manifest; see :func:`run_state`).

    Returns
    -------
    dict
        Output kind -> final path.
    """
    output_dir = Path(output_dir)
    folder = run_folder(output_dir, run_entities)
    remove_stale_temporaries(folder)
    manifest_file = manifest_path(output_dir, run_entities)
    manifest_file.unlink(missing_ok=True)  # incomplete until the new manifest is written
    written: dict[str, Path] = {}
    recorded: dict[str, int] = {}
    for kind, src in files.items():
        if kind not in OUTPUT_KINDS:
            raise KeyError(f"unknown output kind {kind!r}; add it to OUTPUT_KINDS")
        dst = folder / derivative_name(run_entities, kind, context)
        if str(src).endswith(".nii") and dst.name.endswith(".nii.gz"):
            atomic_gzip(Path(src), dst)
        else:
            atomic_copy(Path(src), dst)
        written[kind] = dst
        recorded[dst.relative_to(output_dir).as_posix()] = dst.stat().st_size
        if kind in sidecars:
            side = dst.with_name(dst.name[: -len(OUTPUT_KINDS[kind].extension)] + ".json")
            atomic_write_json(side, sidecars[kind])
            recorded[side.relative_to(output_dir).as_posix()] = side.stat().st_size
    atomic_write_json(manifest_file, {
        "Run": run_prefix(run_entities),
        "SettingsHash": settings_hash,
        "Settings": dict(settings or {}),
        "Version": __version__,
        "Files": recorded,
    })
    return written


def sidecar_path(output_dir: Path, run_entities: Mapping[str, str], kind: str,
                 context: NameContext = NameContext()) -> Path:
    """JSON sidecar of a run output (it may not exist)."""
    dst = run_folder(output_dir, run_entities) / derivative_name(run_entities, kind, context)
    return dst.with_name(dst.name[: -len(OUTPUT_KINDS[kind].extension)] + ".json")


def update_run_sidecar(output_dir: Path, run_entities: Mapping[str, str], kind: str,
                       fields: Mapping[str, Any], *,
                       context: NameContext = NameContext()) -> Path | None:
    """Set keys of a finished run's sidecar (after QC); keep its manifest entry exact.

    Keys whose value is None are removed. The sidecar is rewritten atomically and,
    when the run's manifest lists it, its recorded size is updated (also atomically),
    so :func:`run_state` still finds the run complete.

    Returns
    -------
    Path or None
        The sidecar, or None when the run has no such sidecar.
    """
    side = sidecar_path(output_dir, run_entities, kind, context)
    if not side.is_file():
        return None
    content = json.loads(side.read_text())
    for key, value in fields.items():
        if value is None:
            content.pop(key, None)
        else:
            content[key] = value
    atomic_write_json(side, content)
    manifest_file = manifest_path(output_dir, run_entities)
    try:
        manifest = json.loads(manifest_file.read_text())
    except (OSError, json.JSONDecodeError):
        return side
    rel = side.relative_to(Path(output_dir)).as_posix()
    if rel in manifest.get("Files", {}):
        manifest["Files"][rel] = side.stat().st_size
        atomic_write_json(manifest_file, manifest)
    return side
