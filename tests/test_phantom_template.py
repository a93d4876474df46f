"""The phantom template and atlas: a valid atlas folder whose labels are the phantom's."""

import json

import nibabel as nib
import numpy as np

from qsmbids.atlas.model import load_atlas
from qsmbids.atlas.regions import DEFAULT_REGION_LABELS
from qsmbids.sim.phantom import make_head_phantom
from qsmbids.sim.template import PHANTOM_SPACE, write_phantom_atlas
from qsmbids.sim.tissues import LABELS

CONTRACT_KEYS = {"Name", "Space", "Template", "TemplateMask", "Labels", "LabelTable",
                 "Regions", "References", "License", "Citation"}


def test_phantom_atlas_folder(tmp_path):
    atlas = write_phantom_atlas(tmp_path / "atlas", 3.0)
    reread = load_atlas(tmp_path / "atlas")  # the project's validating loader
    assert reread.space == PHANTOM_SPACE and reread.template_mask is not None
    doc = json.loads((tmp_path / "atlas" / "atlas.json").read_text())
    assert CONTRACT_KEYS <= set(doc)
    assert {k: list(v) for k, v in atlas.regions.items()} == {
        k: [v] for k, v in DEFAULT_REGION_LABELS.items()}
    assert dict(atlas.references) == {"WhiteMatter": (20,), "GreyMatter": (21,), "CSF": (22,)}
    tpl, lab = nib.load(atlas.template), nib.load(atlas.labels)
    np.testing.assert_allclose(tpl.affine, lab.affine)
    t1, labels = tpl.get_fdata(), np.asarray(lab.dataobj)
    # the labels are the phantom's inside the brain, nothing outside it
    phantom = make_head_phantom(3.0, calcification=False)
    np.testing.assert_allclose(lab.affine, phantom.affine)
    inside = phantom.brain_mask
    np.testing.assert_array_equal(labels[inside], phantom.labels[inside])
    assert not labels[~inside].any() and not t1[~inside].any()
    for label in DEFAULT_REGION_LABELS.values():
        assert (labels == label).any()
    # T1w-like contrast: WM > deep GM > cortex > CSF
    med = {name: np.median(t1[labels == LABELS[name]]) for name in
           ("WhiteMatter", "GreyMatter", "CSF", "Thalamus_L", "Putamen_L")}
    assert med["WhiteMatter"] > med["Thalamus_L"] > med["Putamen_L"] > med["GreyMatter"]
    assert med["GreyMatter"] > med["CSF"]


def test_magnitude_contrast_option(tmp_path):
    atlas = write_phantom_atlas(tmp_path / "mag", 3.0, contrast="magnitude", echo_times_s=0.02)
    image = nib.load(atlas.template).get_fdata()
    labels = np.asarray(nib.load(atlas.labels).dataobj)
    med = {name: np.median(image[labels == LABELS[name]]) for name in
           ("WhiteMatter", "CSF", "GlobusPallidus_L")}
    assert med["CSF"] > med["WhiteMatter"] > med["GlobusPallidus_L"]  # T2*w: iron is dark
    assert json.loads((tmp_path / "mag" / "atlas.json").read_text())["TemplateContrast"] == \
        "magnitude"
