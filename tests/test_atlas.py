"""The atlas folder model: writing, loading and the errors for malformed folders."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from qsmbids.atlas.model import AtlasError, load_atlas, read_label_table, write_atlas
from qsmbids.atlas.regions import (
    DEFAULT_REGIONS,
    bilateral_name,
    group_bilateral,
    hemisphere,
    phantom_references,
    phantom_regions,
)


def _images(shape=(8, 9, 10)):
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    tpl = nib.Nifti1Image(np.random.default_rng(0).random(shape).astype(np.float32), affine)
    lab = np.zeros(shape, np.int16)
    for i in range(1, len(DEFAULT_REGIONS) + 1):
        lab.flat[i * 20] = i
    lab[0, 0, :] = 20
    return tpl, nib.Nifti1Image(lab, affine)


@pytest.fixture
def atlas_dir(tmp_path):
    tpl, lab = _images()
    names = {i: n for i, n in enumerate(DEFAULT_REGIONS, start=1)} | {20: "WhiteMatter"}
    write_atlas(tmp_path / "atlas", name="Toy", space="Phantom", template=tpl, labels=lab,
                label_names=names, regions=phantom_regions(),
                references={"WhiteMatter": [20]},
                template_mask=nib.Nifti1Image(np.ones(tpl.shape, np.uint8), tpl.affine),
                license="CC0", citation=["nobody"])
    return tmp_path / "atlas"


def test_roundtrip(atlas_dir):
    atlas = load_atlas(atlas_dir)
    assert atlas.name == "Toy" and atlas.space == "Phantom"
    assert atlas.template.name == "tpl-Phantom_desc-brain_T1w.nii.gz"
    assert atlas.labels.name == "tpl-Phantom_atlas-Toy_dseg.nii.gz"
    assert atlas.template_mask is not None and atlas.template_mask.is_file()
    assert atlas.regions["GlobusPallidus_L"] == (5,)
    assert atlas.references == {"WhiteMatter": (20,)}
    assert atlas.label_names[14] == "Dentate_R"
    assert atlas.citation == ("nobody",)
    assert set(atlas.all_regions()) == {*DEFAULT_REGIONS, "WhiteMatter"}


def _edit(atlas_dir, **changes):
    path = atlas_dir / "atlas.json"
    doc = json.loads(path.read_text())
    for k, v in changes.items():
        if v is None:
            doc.pop(k, None)
        else:
            doc[k] = v
    path.write_text(json.dumps(doc))


@pytest.mark.parametrize("changes, message", [
    ({"Labels": None}, r"lacks key\(s\) \['Labels'\]"),
    ({"Template": "nope.nii.gz"}, "'Template' file .*nope.nii.gz does not exist"),
    ({"Regions": {"Caudate_L": [99]}}, r"uses label\(s\) \[99\] that are not in"),
    ({"Regions": {"Caudate_L": "one"}}, "must be a non-empty list"),
    ({"Regions": {}}, "'Regions' is empty"),
])
def test_bad_json_entries(atlas_dir, changes, message):
    _edit(atlas_dir, **changes)
    with pytest.raises(AtlasError, match=message):
        load_atlas(atlas_dir)


def test_missing_and_invalid_files(tmp_path, atlas_dir):
    with pytest.raises(AtlasError, match="does not exist"):
        load_atlas(tmp_path / "missing")
    with pytest.raises(AtlasError, match=r"has no atlas\.json"):
        load_atlas(tmp_path)
    (atlas_dir / "atlas.json").write_text("{oops")
    with pytest.raises(AtlasError, match=r"atlas\.json is not valid JSON"):
        load_atlas(atlas_dir)


def test_bad_label_table(atlas_dir):
    tsv = next(atlas_dir.glob("*_dseg.tsv"))
    tsv.write_text("label\tname\n1\tx\n")
    with pytest.raises(AtlasError, match=r"lacks column\(s\) \['index'\]"):
        load_atlas(atlas_dir)
    tsv.write_text("index\tname\none\tx\n")
    with pytest.raises(AtlasError, match="line 2: index 'one' is not an integer"):
        read_label_table(tsv)


def test_bad_images(atlas_dir):
    lab_path = next(atlas_dir.glob("*_dseg.nii.gz"))
    lab = nib.load(lab_path)
    data = np.asarray(lab.dataobj)
    nib.save(nib.Nifti1Image(data[:-1].astype(np.int16), lab.affine), lab_path)
    with pytest.raises(AtlasError, match="is not on the grid of the template"):
        load_atlas(atlas_dir)
    nib.save(nib.Nifti1Image(data.astype(np.float32) + 0.5, lab.affine), lab_path)
    with pytest.raises(AtlasError, match="non-integer"):
        load_atlas(atlas_dir)
    gone = data.copy()
    gone[gone == 3] = 0
    nib.save(nib.Nifti1Image(gone, lab.affine), lab_path)
    with pytest.raises(AtlasError, match="'Putamen_L' labels \\[3\\] are all absent"):
        load_atlas(atlas_dir)
    assert load_atlas(atlas_dir, check_images=False).name == "Toy"
    lab_path.write_bytes(b"not a nifti")
    with pytest.raises(AtlasError, match="not a readable NIfTI"):
        load_atlas(atlas_dir)


def test_region_helpers():
    assert hemisphere("Caudate_L") == "L" and hemisphere("CSF") is None
    assert bilateral_name("RedNucleus_R") == "RedNucleus"
    both = group_bilateral({"GlobusPallidus_L": [5, 6], "GlobusPallidus_R": [105, 106],
                            "Lonely_L": [1], "CSF": [250]})
    assert both == {"GlobusPallidus": (5, 6, 105, 106)}
    assert phantom_references()["CSF"] == [22]


def test_template_contrast_is_read_and_checked(tmp_path):
    import json

    from qsmbids.atlas.model import AtlasError, load_atlas
    from qsmbids.sim.template import write_phantom_atlas

    atlas = write_phantom_atlas(tmp_path / "a", 4.0, contrast="magnitude")
    assert atlas.template_contrast == "magnitude"
    doc_path = atlas.root / "atlas.json"
    doc = json.loads(doc_path.read_text())
    doc.pop("TemplateContrast")
    doc_path.write_text(json.dumps(doc))
    assert load_atlas(atlas.root).template_contrast == "T1w"  # the default
    doc["TemplateContrast"] = "T2w"
    doc_path.write_text(json.dumps(doc))
    with pytest.raises(AtlasError, match="TemplateContrast"):
        load_atlas(atlas.root)
