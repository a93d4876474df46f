"""The susceptibility template repainted with the subject's own regional values
(:mod:`qsmbids.atlas.subject_template`): the interior medians on analytic label
images, and the repainted template of a phantom subject whose values are known."""

import nibabel as nib
import numpy as np
import pytest

from qsmbids.atlas import chi_template
from qsmbids.atlas.subject_template import (
    MIN_VOXELS,
    interior_medians,
    subject_susceptibility_template,
)
from qsmbids.registration.core import TransformChain
from qsmbids.sim.template import write_phantom_atlas


def test_interior_medians_ignore_the_blurred_rim():
    """Two blocks of 0.2 and -0.03 ppm whose common boundary is blurred: the interior
    median of each is its own value, the plain median of the thin one is not."""
    labels = np.zeros((12, 12, 12), np.int16)
    labels[2:10, 2:10, 2:5] = 1  # 3 voxels thick: one interior layer
    labels[2:10, 2:10, 5:10] = 2
    chi = np.where(labels == 1, 0.2, -0.03)
    chi[:, :, 4] = chi[:, :, 5] = 0.085  # the boundary layers are partial-volumed,
    chi[:, :, 2] = 0.1  # and so is the thin block's outer face
    brain = labels > 0
    values = interior_medians(chi, brain, labels)
    assert values[1] == pytest.approx(0.2) and values[2] == pytest.approx(-0.03)
    assert np.median(chi[labels == 1]) == pytest.approx(0.1)  # the rim's value


def test_small_labels_are_read_whole_and_tiny_ones_not_at_all():
    labels = np.zeros((10, 10, 10), np.int16)
    labels[1:3, 1:7, 1:7] = 1  # 2 voxels thick: no interior, 72 voxels
    labels[6, 6, 6:6 + MIN_VOXELS - 1] = 2  # fewer voxels than MIN_VOXELS
    chi = np.where(labels == 1, 0.1, 0.05)
    values = interior_medians(chi, labels > 0, labels)
    assert values == {1: pytest.approx(0.1)}
    # outside the brain mask a label is not read
    assert interior_medians(chi, np.zeros_like(labels, bool), labels) == {}


def test_template_of_a_subject_carries_its_regional_values(tmp_path):
    """The phantom atlas on itself (identity registration), with a map whose pallidum
    and nigra are brighter than the literature and on another reference: measured
    labels get the map's values, the rest the literature's shifted by the offset."""
    atlas = write_phantom_atlas(tmp_path / "atlas", 2.0)
    labels_img = nib.load(str(atlas.labels))
    labels = np.asarray(labels_img.dataobj).astype(np.int64)
    literature = chi_template.label_susceptibility(atlas.label_names, atlas.regions,
                                                   atlas.references)
    offset = -0.02  # the subject's map is referenced differently
    chosen = {**{k: v + offset for k, v in literature.items()}}
    for region, value in (("GlobusPallidus_L", 0.21), ("SubstantiaNigra_R", 0.17)):
        for label in atlas.regions[region]:
            chosen[label] = value
    chi = np.zeros(labels.shape, np.float32)
    for label, value in chosen.items():
        chi[labels == label] = value
    brain = labels > 0
    chi_img = nib.Nifti1Image(chi, labels_img.affine)
    mask_img = nib.Nifti1Image(brain.astype(np.uint8), labels_img.affine)
    identity = TransformChain((), ())
    result = subject_susceptibility_template(atlas, chi_img, mask_img, identity)
    regions = result.region_values(atlas.regions)
    assert regions["GlobusPallidus_L"] == pytest.approx(0.21, abs=1e-6)
    assert regions["SubstantiaNigra_R"] == pytest.approx(0.17, abs=1e-6)
    assert regions["GlobusPallidus_R"] == pytest.approx(literature[
        atlas.regions["GlobusPallidus_R"][0]] + offset, abs=1e-6)
    assert result.offset_ppm == pytest.approx(offset, abs=1e-6)
    assert set(result.measured) <= set(literature)
    painted = np.asarray(result.image.dataobj)
    inside = np.isin(labels, atlas.regions["GlobusPallidus_L"])
    assert np.median(painted[inside]) == pytest.approx(0.21, abs=0.01)
    assert np.all(painted[labels == 0] == 0)
    # the labels already on the subject (the anatomical registration's dseg) give the
    # same values without a second warp; a dseg on another grid is refused
    given = subject_susceptibility_template(atlas, chi_img, mask_img, identity,
                                            labels_on_subject=labels_img)
    assert given.region_values(atlas.regions) == pytest.approx(regions)
    with pytest.raises(ValueError, match="grid"):
        subject_susceptibility_template(atlas, chi_img, mask_img, identity,
                                        labels_on_subject=nib.Nifti1Image(
                                            labels[:-1].astype(np.int16), labels_img.affine))
