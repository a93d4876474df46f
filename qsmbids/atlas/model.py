"""The atlas folder: a template image, an integer label image and its region map.

Layout (shared contract; the phantom atlas uses it too)::

    ATLAS_DIR/atlas.json
    ATLAS_DIR/tpl-<Space>_desc-brain_T1w.nii.gz        template image
    ATLAS_DIR/tpl-<Space>_desc-brain_mask.nii.gz       optional
    ATLAS_DIR/tpl-<Space>_atlas-<Name>_dseg.nii.gz     labels (integers)
    ATLAS_DIR/tpl-<Space>_atlas-<Name>_dseg.tsv        columns: index, name[, abbreviation]

``atlas.json`` holds ``Name``, ``Space``, ``Template``, ``TemplateMask`` (file or
null), ``Labels``, ``LabelTable``, ``Regions`` (region name -> label numbers),
``References`` (e.g. WhiteMatter, CSF -> label numbers), ``License``, ``Citation``,
optionally ``TemplateContrast`` (``T1w``, the default, or ``magnitude``: an
echo-combined GRE magnitude), which selects the registration metric, and
``SusceptibilityTemplate`` (``tpl-<Space>_desc-susceptibility_Chimap.nii.gz``, ppm,
painted from the labels by :mod:`qsmbids.atlas.chi_template` when qsmbids writes the
folder) with its ``SusceptibilityTemplateRecipe``.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np

from qsmbids.atlas import chi_template
from qsmbids.atomic import atomic_save_nifti, atomic_write_text

ATLAS_JSON = "atlas.json"
_REQUIRED_KEYS = ("Name", "Space", "Template", "Labels", "LabelTable", "Regions")
#: largest affine difference (mm) for two images to count as the same grid
_GRID_TOL_MM = 1e-3


class AtlasError(ValueError):
    """An atlas folder does not follow the expected layout; the message names the file."""


@dataclass(frozen=True)
class Atlas:
    """A validated atlas folder.

    Attributes
    ----------
    root
        The atlas folder.
    name, space
        Atlas name and template space (e.g. ``MNI152NLin2009cAsym``).
    template, template_mask, labels, label_table
        Absolute paths of the files (``template_mask`` may be ``None``).
    regions
        Region name -> label numbers of the ``dseg`` image that make it up.
    references
        Reference region name (``WhiteMatter``, ``CSF``, ...) -> label numbers.
    label_names
        Label number -> name, from the ``dseg.tsv``.
    license
        Licence statement of the atlas data.
    citation
        References to cite.
    template_contrast
        Contrast of the template image, from ``atlas.json`` ``TemplateContrast``:
        ``T1w`` (the default, e.g. MNI152) or ``magnitude`` (echo-combined GRE
        magnitude). It decides the registration metric: local correlation when the
        target has the same contrast, mutual information across contrasts.
    susceptibility_template
        The susceptibility-contrast template (ppm, on the template grid), or None for
        atlas folders made without one (:func:`susceptibility_template_image` then
        paints it on the fly).
    """

    root: Path
    name: str
    space: str
    template: Path
    template_mask: Path | None
    labels: Path
    label_table: Path
    regions: Mapping[str, tuple[int, ...]]
    references: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    label_names: Mapping[int, str] = field(default_factory=dict)
    license: str = ""
    citation: tuple[str, ...] = ()
    template_contrast: str = "T1w"
    susceptibility_template: Path | None = None

    def all_regions(self) -> dict[str, tuple[int, ...]]:
        """Regions followed by references, as one name -> labels mapping."""
        return {**self.regions, **self.references}


def read_label_table(path: str | os.PathLike) -> dict[int, str]:
    """Read a BIDS ``dseg.tsv`` (columns ``index``, ``name``, ...) into index -> name.

    Raises
    ------
    AtlasError
        Naming the file when a column is missing or an index is not an integer.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise AtlasError(f"cannot read label table {path}: {exc.strerror}") from None
    reader = csv.DictReader(io.StringIO(text), delimiter="\t")
    columns = reader.fieldnames or []
    missing = [c for c in ("index", "name") if c not in columns]
    if missing:
        raise AtlasError(f"label table {path} lacks column(s) {missing} (has {columns})")
    table: dict[int, str] = {}
    for line_no, row in enumerate(reader, start=2):
        try:
            index = int(row["index"])
        except (TypeError, ValueError):
            raise AtlasError(
                f"label table {path} line {line_no}: index {row['index']!r} is not an integer"
            ) from None
        if index in table:
            raise AtlasError(f"label table {path} line {line_no}: index {index} repeated")
        table[index] = row["name"]
    if not table:
        raise AtlasError(f"label table {path} has no rows")
    return table


def _label_sets(doc: dict, key: str, json_path: Path) -> dict[str, tuple[int, ...]]:
    value = doc.get(key) or {}
    if not isinstance(value, dict):
        raise AtlasError(f"{json_path}: '{key}' must map names to lists of label numbers")
    out = {}
    for name, labels in value.items():
        if isinstance(labels, int):
            labels = [labels]
        if (not isinstance(labels, list) or not labels
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in labels)):
            raise AtlasError(
                f"{json_path}: '{key}' entry {name!r} must be a non-empty list of label "
                f"integers, got {labels!r}"
            )
        out[str(name)] = tuple(int(v) for v in labels)
    return out


def _existing(root: Path, doc: dict, key: str, json_path: Path, *, optional: bool = False
              ) -> Path | None:
    name = doc.get(key)
    if name is None and optional:
        return None
    if not isinstance(name, str) or not name:
        raise AtlasError(f"{json_path}: '{key}' must be a file name, got {name!r}")
    path = root / name
    if not path.is_file():
        raise AtlasError(f"{json_path}: '{key}' file {path} does not exist")
    return path


def _load_image(path: Path, what: str) -> nib.Nifti1Image:
    try:
        image = nib.load(str(path))
    except Exception as exc:  # nibabel raises several types for bad files
        raise AtlasError(f"{what} {path} is not a readable NIfTI image: {exc}") from None
    if len(image.shape) != 3:
        raise AtlasError(f"{what} {path} must be 3D, has shape {image.shape}")
    return image


def same_grid(a: nib.Nifti1Image, b: nib.Nifti1Image, tol_mm: float = _GRID_TOL_MM) -> bool:
    """Whether two images share shape and affine (to ``tol_mm``)."""
    return a.shape[:3] == b.shape[:3] and bool(np.allclose(a.affine, b.affine, atol=tol_mm))


def load_atlas(atlas_dir: str | os.PathLike, *, check_images: bool = True) -> Atlas:
    """Read and validate an atlas folder.

    Parameters
    ----------
    atlas_dir
        Folder holding ``atlas.json`` and the files it names.
    check_images
        Also open the images: 3D, labels integer-valued, template and labels on
        the same grid, every label named in ``Regions``/``References`` listed in
        the ``dseg.tsv`` and present in the label image.

    Returns
    -------
    Atlas

    Raises
    ------
    AtlasError
        With a message naming the offending file and what is wrong.
    """
    root = Path(atlas_dir).resolve()
    if not root.is_dir():
        raise AtlasError(f"atlas folder {root} does not exist or is not a folder")
    json_path = root / ATLAS_JSON
    if not json_path.is_file():
        raise AtlasError(f"atlas folder {root} has no {ATLAS_JSON}")
    try:
        doc = json.loads(json_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise AtlasError(f"{json_path} is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise AtlasError(f"{json_path} must hold a JSON object")
    missing = [k for k in _REQUIRED_KEYS if k not in doc]
    if missing:
        raise AtlasError(f"{json_path} lacks key(s) {missing}")
    template = _existing(root, doc, "Template", json_path)
    mask = _existing(root, doc, "TemplateMask", json_path, optional=True)
    labels = _existing(root, doc, "Labels", json_path)
    table_path = _existing(root, doc, "LabelTable", json_path)
    regions = _label_sets(doc, "Regions", json_path)
    if not regions:
        raise AtlasError(f"{json_path}: 'Regions' is empty")
    references = _label_sets(doc, "References", json_path)
    label_names = read_label_table(table_path)
    for key, sets in (("Regions", regions), ("References", references)):
        for name, values in sets.items():
            unknown = sorted(set(values) - set(label_names))
            if unknown:
                raise AtlasError(
                    f"{json_path}: '{key}' {name!r} uses label(s) {unknown} that are not in "
                    f"{table_path.name}"
                )
    citation = doc.get("Citation") or []
    if isinstance(citation, str):
        citation = [citation]
    atlas = Atlas(
        root=root, name=str(doc["Name"]), space=str(doc["Space"]), template=template,
        template_mask=mask, labels=labels, label_table=table_path, regions=regions,
        references=references, label_names=label_names, license=str(doc.get("License", "")),
        citation=tuple(str(c) for c in citation),
        template_contrast=_template_contrast(doc, json_path),
        susceptibility_template=_existing(root, doc, "SusceptibilityTemplate", json_path,
                                          optional=True),
    )
    if check_images:
        _check_images(atlas)
    return atlas


#: template contrasts an atlas may declare (``atlas.json`` ``TemplateContrast``)
TEMPLATE_CONTRASTS = ("T1w", "magnitude")


def _template_contrast(doc: dict, json_path: Path) -> str:
    contrast = doc.get("TemplateContrast", "T1w")
    if contrast not in TEMPLATE_CONTRASTS:
        raise AtlasError(f"{json_path}: 'TemplateContrast' must be one of "
                         f"{list(TEMPLATE_CONTRASTS)}, got {contrast!r}")
    return str(contrast)


def _check_images(atlas: Atlas) -> None:
    tpl = _load_image(atlas.template, "template")
    lab = _load_image(atlas.labels, "label image")
    if not same_grid(tpl, lab):
        raise AtlasError(
            f"label image {atlas.labels} (shape {lab.shape}) is not on the grid of the "
            f"template {atlas.template} (shape {tpl.shape}); resample it onto the template"
        )
    if atlas.template_mask is not None:
        msk = _load_image(atlas.template_mask, "template mask")
        if not same_grid(tpl, msk):
            raise AtlasError(f"template mask {atlas.template_mask} is not on the template grid")
    if atlas.susceptibility_template is not None:
        chi = _load_image(atlas.susceptibility_template, "susceptibility template")
        if not same_grid(tpl, chi):
            raise AtlasError(f"susceptibility template {atlas.susceptibility_template} is "
                             "not on the template grid")
    data = np.asanyarray(lab.dataobj)
    if not np.issubdtype(data.dtype, np.integer):
        if not np.all(np.isfinite(data)) or not np.array_equal(data, np.round(data)):
            raise AtlasError(f"label image {atlas.labels} holds non-integer values")
    present = set(np.unique(data).astype(int).tolist())
    for name, values in atlas.all_regions().items():
        absent = sorted(set(values) - present)
        if len(absent) == len(values):
            raise AtlasError(
                f"label image {atlas.labels}: region {name!r} labels {list(values)} are all "
                "absent from the image"
            )


def _format_tsv(label_names: Mapping[int, str]) -> str:
    lines = ["index\tname"] + [f"{i}\t{n}" for i, n in sorted(label_names.items())]
    return "\n".join(lines) + "\n"


def atlas_file_names(name: str, space: str) -> dict[str, str]:
    """File names of an atlas folder for atlas ``name`` in template ``space``."""
    return {
        "Template": f"tpl-{space}_desc-brain_T1w.nii.gz",
        "SusceptibilityTemplate": f"tpl-{space}_{chi_template.FILE_SUFFIX}",
        "TemplateMask": f"tpl-{space}_desc-brain_mask.nii.gz",
        "Labels": f"tpl-{space}_atlas-{name}_dseg.nii.gz",
        "LabelTable": f"tpl-{space}_atlas-{name}_dseg.tsv",
    }


def write_atlas(
    atlas_dir: str | os.PathLike,
    *,
    name: str,
    space: str,
    template: nib.Nifti1Image,
    labels: nib.Nifti1Image,
    label_names: Mapping[int, str],
    regions: Mapping[str, Sequence[int]],
    references: Mapping[str, Sequence[int]] | None = None,
    template_mask: nib.Nifti1Image | None = None,
    license: str = "",
    citation: Sequence[str] = (),
    extra: Mapping[str, object] | None = None,
) -> Atlas:
    """Write an atlas folder in the shared layout and return it validated.

    Parameters
    ----------
    atlas_dir
        Output folder (created).
    name, space
        Atlas name (alphanumeric, goes into ``atlas-<name>``) and template space.
    template, labels, template_mask
        Images on one grid; ``labels`` is stored as int16.
    label_names
        Label number -> name for the ``dseg.tsv``.
    regions, references
        Region name -> label numbers.
    license, citation
        Licence statement and references.
    extra
        Further keys for ``atlas.json`` (e.g. provenance).

    Returns
    -------
    Atlas
    """
    if not name.isalnum() or not space.isalnum():
        raise ValueError(f"atlas name and space must be alphanumeric, got {name!r}, {space!r}")
    root = Path(atlas_dir)
    root.mkdir(parents=True, exist_ok=True)
    files = atlas_file_names(name, space)
    lab = nib.Nifti1Image(np.asarray(labels.dataobj).astype(np.int16), labels.affine)
    lab.header.set_xyzt_units("mm")
    tpl = nib.Nifti1Image(np.asarray(template.dataobj, dtype=np.float32), template.affine)
    tpl.header.set_xyzt_units("mm")
    atomic_save_nifti(tpl, root / files["Template"])
    atomic_save_nifti(lab, root / files["Labels"])
    if template_mask is not None:
        msk = nib.Nifti1Image(np.asarray(template_mask.dataobj).astype(np.uint8),
                              template_mask.affine)
        msk.header.set_xyzt_units("mm")
        atomic_save_nifti(msk, root / files["TemplateMask"])
    atomic_write_text(root / files["LabelTable"], _format_tsv(label_names))
    label_ppm = chi_template.label_susceptibility(label_names, regions, references or {})
    chi = chi_template.paint_susceptibility(np.asarray(lab.dataobj), label_ppm,
                                            lab.header.get_zooms()[:3])
    chi_img = nib.Nifti1Image(chi, lab.affine)
    chi_img.header.set_xyzt_units("mm")
    atomic_save_nifti(chi_img, root / files["SusceptibilityTemplate"])
    doc = {
        "Name": name,
        "Space": space,
        "Template": files["Template"],
        "TemplateMask": files["TemplateMask"] if template_mask is not None else None,
        "Labels": files["Labels"],
        "LabelTable": files["LabelTable"],
        "SusceptibilityTemplate": files["SusceptibilityTemplate"],
        "SusceptibilityTemplateRecipe": chi_template.recipe(label_ppm),
        "Regions": {k: [int(v) for v in vals] for k, vals in regions.items()},
        "References": {k: [int(v) for v in vals] for k, vals in (references or {}).items()},
        "License": license,
        "Citation": list(citation),
        **(extra or {}),
    }
    atomic_write_text(root / ATLAS_JSON, json.dumps(doc, indent=2) + "\n")
    return load_atlas(root)


def susceptibility_template_image(atlas: Atlas) -> nib.Nifti1Image:
    """The atlas's susceptibility-contrast template (ppm): its file, or, for a folder
    written without one, painted now from the labels (:mod:`qsmbids.atlas.chi_template`)."""
    if atlas.susceptibility_template is not None:
        return nib.load(str(atlas.susceptibility_template))
    labels = nib.load(str(atlas.labels))
    label_ppm = chi_template.label_susceptibility(atlas.label_names, atlas.regions,
                                                  atlas.references)
    chi = chi_template.paint_susceptibility(np.asarray(labels.dataobj), label_ppm,
                                            labels.header.get_zooms()[:3])
    return nib.Nifti1Image(chi, labels.affine)


def nuclei_mask_image(atlas: Atlas) -> nib.Nifti1Image:
    """Template-grid mask (float32 0/1) of every label of the atlas's ``Regions``: the
    nuclei a susceptibility refinement is for."""
    labels = nib.load(str(atlas.labels))
    wanted = sorted({v for values in atlas.regions.values() for v in values})
    return nib.Nifti1Image(np.isin(np.asarray(labels.dataobj), wanted).astype(np.float32),
                           labels.affine)
