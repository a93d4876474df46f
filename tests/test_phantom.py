"""Head phantom: labels, maps and tables agree; nuclei where atlases put them; age trends."""

import itertools
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import scipy.ndimage as ndi

from qsmbids.sim.phantom import (
    QSMCI_LABELS,
    evaluate_head,
    grid_coordinates,
    make_head_phantom,
    phantom_grid,
    to_qsmci_seg,
)
from qsmbids.sim.tissues import (
    BRAIN_LABELS,
    IRON_AGE_MODELS,
    LABEL_NAMES,
    LABELS,
    NUCLEI,
    r2star_at_field,
    tissue_table,
)

ATLASES = Path(os.environ.get("QSMBIDS_SHARED_ATLASES",
                              Path(__file__).resolve().parents[2] / "shared" / "atlases"))


@pytest.fixture(scope="module")
def phantom2():
    return make_head_phantom(2.0, microbleed=True)


def _centroid_mm(mask, affine):
    return affine[:3, :3] @ np.argwhere(mask).mean(0) + affine[:3, 3]


def test_contract_types_and_grid(phantom2):
    p = phantom2
    assert p.chi.dtype == np.float32 and p.m0.dtype == np.float32
    assert p.r2star.dtype == np.float32 and p.labels.dtype == np.int16
    assert p.brain_mask.dtype == bool
    assert p.chi.shape == p.labels.shape == p.m0.shape == p.r2star.shape == (91, 109, 91)
    assert p.voxel_size == (2.0, 2.0, 2.0)
    np.testing.assert_allclose(p.affine[:3, :3], np.diag([2.0] * 3))  # axial RAS+
    assert set(np.unique(p.labels)) == {0, *LABEL_NAMES}  # every tissue is present
    assert p.label_names == LABEL_NAMES


@pytest.mark.parametrize("voxel", [1.0, 1.5, 3.0])
def test_grid_from_physical_extent(voxel):
    shape, affine = phantom_grid(voxel)
    extent = (np.asarray(shape) - 1) * voxel
    fov = np.array([180.0, 216.0, 180.0])
    assert np.all(extent <= fov) and np.all(extent > fov - voxel)
    corner = affine @ [*(np.asarray(shape) - 1), 1]
    np.testing.assert_allclose(corner[:3] - affine[:3, 3], extent)


def test_sharp_maps_equal_tissue_table_everywhere():
    """With (nearly) sharp edges, chi, M0 and R2* are the label's table values (voxel centres
    lying on a surface, within float precision, excepted)."""
    shape, affine = phantom_grid(3.0)
    maps = evaluate_head(grid_coordinates(shape, affine), edge_sigma_mm=1e-4, age_years=25.0,
                         microbleed=True)
    table = tissue_table(25.0)
    lut = np.zeros((3, max(LABEL_NAMES) + 1), np.float32)
    for label, props in table.items():
        lut[:, label] = props.chi_ppm, props.m0, props.r2star_3t
    for row, values in enumerate((maps.chi, maps.m0, maps.r2star)):
        expected = lut[row][maps.labels]
        agree = np.isclose(values, expected, rtol=1e-5, atol=1e-6)
        assert agree.mean() > 0.999, f"map {row}: {(~agree).sum()} voxels disagree"


def test_interior_maps_equal_tissue_table(phantom2):
    """Soft edges: >= 6 mm (4 edge widths) inside a brain label, maps are its table values.

    The tolerance is 0.2% of each map's range over the brain tissues: first-order
    distances at the corners of combined shapes and thin structures whose blur reaches
    beyond their labelled voxels at 2 mm leave tails of that order.
    """
    p, table = phantom2, tissue_table(40.0)
    brain = {label: props for label, props in table.items() if label in BRAIN_LABELS}
    ranges = [np.ptp([getattr(props, field) for props in brain.values()])
              for field in ("chi_ppm", "m0", "r2star_3t")]
    checked = 0
    boxes = ndi.find_objects(p.labels)
    for label, props in brain.items():
        box = tuple(slice(max(s.start - 4, 0), s.stop + 4) for s in boxes[label - 1])
        interior = np.zeros(p.labels.shape, bool)
        interior[box] = ndi.distance_transform_edt(p.labels[box] == label,
                                                   sampling=p.voxel_size) >= 6
        if interior.sum() < 3:
            continue  # small structures have no voxel 6 mm inside at 2 mm
        checked += 1
        for values, expected, span in zip((p.chi, p.m0, p.r2star),
                                          (props.chi_ppm, props.m0, props.r2star_3t),
                                          ranges, strict=True):
            error = np.abs(values[interior] - expected)
            assert np.percentile(error, 95) <= 2e-3 * span, LABEL_NAMES[label]
            assert abs(values[interior].mean() - expected) <= 1e-3 * span, LABEL_NAMES[label]
    assert checked >= 7
    outside = ndi.distance_transform_edt(p.labels == 0, sampling=p.voxel_size) > 6
    outside[..., :4] = False  # the neck leaves the grid at the bottom
    assert np.abs(p.chi[outside]).max() < 1e-4 and np.abs(p.m0[outside]).max() < 1e-4


def test_small_inclusions_are_strong(phantom2):
    p = phantom2
    assert p.chi[p.labels == LABELS["Calcification"]].min() < -0.4
    assert p.chi[p.labels == LABELS["Microbleed"]].max() > 0.4
    assert p.chi[p.labels == LABELS["AirCavity"]].max() > 8


def test_edges_are_soft():
    """A profile across the putamen edge goes through intermediate values."""
    p = make_head_phantom(3.0)
    values = np.unique(np.round(p.chi[p.brain_mask], 4))
    assert values.size > 100  # binary maps would give one value per tissue (about 20)


def test_brain_mask(phantom2):
    p = phantom2
    inside = p.labels[p.brain_mask]
    for name in ("Bone", "SoftTissue", "AirCavity"):
        assert not np.any(inside == LABELS[name])
    for label in range(1, 15):
        assert np.all(p.brain_mask[p.labels == label]), LABEL_NAMES[label]
    volume_ml = p.brain_mask.sum() * 8 / 1000
    assert 1200 < volume_ml < 2000  # an MNI-sized brain incl. ventricles and sulci


# volume ranges (mL, one side) of adult nuclei from MRI segmentation studies, widened
VOLUME_ML = {"Caudate": (3.0, 6.0), "Putamen": (4.0, 7.0), "GlobusPallidus": (1.0, 2.5),
             "Thalamus": (5.0, 9.0), "SubstantiaNigra": (0.3, 0.9), "RedNucleus": (0.2, 0.5),
             "Dentate": (1.0, 2.5)}


def test_nuclei_sizes_and_symmetry(phantom2):
    p = phantom2
    for name in NUCLEI:
        left, right = p.labels == LABELS[f"{name}_L"], p.labels == LABELS[f"{name}_R"]
        vol = left.sum() * 8 / 1000
        lo, hi = VOLUME_ML[name]
        assert lo <= vol <= hi, f"{name}: {vol:.2f} mL"
        assert right.sum() == left.sum()
        cl, cr = _centroid_mm(left, p.affine), _centroid_mm(right, p.affine)
        np.testing.assert_allclose(cl * [-1, 1, 1], cr, atol=1e-3)
        assert cl[0] < 0  # RAS+: left is negative x


def _atlas_centroid(path, labels):
    img = nib.load(path)
    return _centroid_mm(np.isin(np.asarray(img.dataobj), labels), img.affine)


@pytest.mark.skipif(not ATLASES.is_dir(), reason="shared atlases not available")
def test_nuclei_positions_match_real_atlases(phantom2):
    """Left-nucleus centroids within 4 mm of CIT168 / AAL3 / Diedrichsen's (5 mm: other MNI)."""
    cit = ATLASES / "tpl-MNI152NLin2009cAsym_atlas-CIT168_dseg.nii.gz"
    aal = ATLASES / "atlas-AAL3_dseg.nii.gz"
    dent = ATLASES / "tpl-MNI152NLin6AsymC_atlas-Diedrichsen2009_dseg.nii.gz"
    refs = {"Caudate": (cit, [2], 4.0), "Putamen": (cit, [1], 4.0),
            "GlobusPallidus": (cit, [5, 6], 4.0), "SubstantiaNigra": (cit, [7, 9], 4.0),
            "RedNucleus": (cit, [8], 4.0), "Thalamus": (aal, list(range(121, 151, 2)), 4.0),
            "Dentate": (dent, [29], 5.0)}
    for name, (path, labels, tol) in refs.items():
        mine = _centroid_mm(phantom2.labels == LABELS[f"{name}_L"], phantom2.affine)
        ref = _atlas_centroid(path, labels)
        assert np.linalg.norm(mine - ref) < tol, f"{name}: {mine} vs {ref}"


def test_age_trends():
    ages = np.array([2.0, 10, 20, 30, 40, 60, 80])
    chi = {n: np.array([IRON_AGE_MODELS[n].chi(a) for a in ages]) for n in NUCLEI}
    for name in ("Putamen", "SubstantiaNigra", "RedNucleus", "Dentate", "GlobusPallidus",
                 "Caudate"):
        assert np.all(np.diff(chi[name]) > 0), name  # iron never falls in these
    for name in ("Putamen", "SubstantiaNigra", "RedNucleus", "Dentate"):
        assert chi[name][-1] - chi[name][3] > 0.015, name  # still rising after 30
    gp = chi["GlobusPallidus"]
    assert gp[3] - gp[0] > 5 * (gp[-1] - gp[3])  # fast rise in childhood, plateau by 30
    th = chi["Thalamus"]
    assert th[-1] < th[4]  # thalamus declines late
    # adult values inside the in-vivo 3 T ranges of REFERENCE.md section 4
    adult = {n: IRON_AGE_MODELS[n].chi(40) for n in NUCLEI}
    ranges = {"GlobusPallidus": (0.13, 0.20), "SubstantiaNigra": (0.10, 0.18),
              "RedNucleus": (0.08, 0.15), "Dentate": (0.07, 0.15), "Putamen": (0.03, 0.09),
              "Caudate": (0.04, 0.08), "Thalamus": (0.0, 0.04)}
    for name, (lo, hi) in ranges.items():
        assert lo <= adult[name] <= hi, name
    # GP > SN > RN > dentate > putamen/caudate > thalamus, as in vivo
    order = ["GlobusPallidus", "SubstantiaNigra", "RedNucleus", "Dentate", "Putamen", "Thalamus"]
    assert all(adult[a] > adult[b] for a, b in itertools.pairwise(order))
    with pytest.raises(ValueError, match="age"):
        IRON_AGE_MODELS["Putamen"].chi(-1)


def test_phantom_follows_age():
    young = make_head_phantom(3.0, age_years=10.0, calcification=False)
    old = make_head_phantom(3.0, age_years=70.0, calcification=False)
    np.testing.assert_array_equal(young.labels, old.labels)
    gp = young.labels == LABELS["GlobusPallidus_L"]
    assert old.chi[gp].mean() > young.chi[gp].mean() + 0.02
    assert old.r2star[gp].mean() > young.r2star[gp].mean() + 3


def test_r2star_scaling():
    assert r2star_at_field(20.0, 7.0) == pytest.approx(20 * 7 / 3)
    with pytest.raises(ValueError, match="field strength"):
        r2star_at_field(20.0, 0.0)


def test_evaluate_on_scattered_points_matches_grid():
    shape, affine = phantom_grid(3.0)
    coords = grid_coordinates(shape, affine)
    grid = evaluate_head(coords, edge_sigma_mm=2.1, spacing_mm=3.0)
    pts = coords[:, 20:40, 30:35, 25:31].reshape(3, -1)
    scattered = evaluate_head(pts, edge_sigma_mm=2.1)
    np.testing.assert_array_equal(scattered.labels, grid.labels[20:40, 30:35, 25:31].ravel())
    np.testing.assert_allclose(scattered.chi, grid.chi[20:40, 30:35, 25:31].ravel(), atol=1e-6)


def test_to_qsmci_seg():
    labels = np.array([0, 1, 2, 3, 5, 7, 9, 11, 13, 20, 21, 22, 23, 24, 25, 30, 31, 32],
                      dtype=np.int16)
    expected = [0, 1, 1, 3, 2, 7, 6, 4, 5, 8, 9, 10, 11, 16, 0, 13, 15, 14]
    np.testing.assert_array_equal(to_qsmci_seg(labels), expected)
    assert set(QSMCI_LABELS.values()) <= set(range(1, 17))
    with pytest.raises(ValueError, match="phantom labels"):
        to_qsmci_seg(np.array([99]))
