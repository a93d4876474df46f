"""Physics of the simulator, checked on what it writes: dipole field on an oblique grid,
phase = field * 2*pi*TE after reading the NIfTIs back, and truth files that agree."""

import json

import nibabel as nib
import numpy as np
import pytest

from qsmbids.recon.dipole import b0_direction_from_affine, forward_field
from qsmbids.recon.units import hz_per_ppm
from qsmbids.sim.bids_writer import SimulationSettings, save_nifti, simulate_dataset
from qsmbids.sim.phantom import grid_coordinates
from qsmbids.sim.shapes import rotation_matrix
from qsmbids.sim.signal import simulate_multi_echo_gre
from qsmbids.sim.subject import SubjectSpec, make_subject_anatomy, subject_grid
from qsmbids.sim.tissues import LABEL_NAMES, tissue_table
from qsmbids.sim.vendor_phase import decode_phase, encode_phase

TES = (0.005, 0.011)


def _wrap(x):
    return np.angle(np.exp(1j * x))


def test_sphere_on_oblique_grid_matches_world_frame_dipole():
    """A sphere sampled on a tilted grid: the simulated field, with B0 taken from the affine,
    matches the analytic dipole field computed in world coordinates (B0 = world z), within 2%."""
    n, voxel, radius, chi_in = 72, 1.0, 7.0, 0.1
    affine = np.eye(4)
    affine[:3, :3] = rotation_matrix((25.0, 10.0, 0.0)) * voxel
    affine[:3, 3] = -affine[:3, :3] @ np.full(3, (n - 1) / 2)
    xyz = grid_coordinates((n, n, n), affine).astype(np.float64)
    r = np.sqrt((xyz**2).sum(0))
    # band-limited sphere (see test_dipole): a soft edge of 0.7 voxel
    from scipy.special import erfc
    chi = (chi_in * 0.5 * erfc((r - radius) / (0.7 * np.sqrt(2)))).astype(np.float32)
    sim = simulate_multi_echo_gre(chi, np.ones_like(chi), np.zeros_like(chi), TES, 3.0,
                                  (voxel,) * 3, b0_direction_from_affine(affine), pad_fraction=1.0)
    a = (3 * chi.sum() * voxel**3 / chi_in / (4 * np.pi)) ** (1 / 3)
    with np.errstate(divide="ignore", invalid="ignore"):
        cos = xyz[2] / r  # world z is B0
        analytic = chi_in / 3 * (a / r) ** 3 * (3 * cos**2 - 1)
    peak = 2 * chi_in / 3
    far = (r >= 1.6 * a) & (r <= 28)
    assert np.max(np.abs(sim.total_field_ppm[far] - analytic[far])) <= 0.02 * peak
    assert np.max(np.abs(sim.total_field_ppm[r <= 0.6 * a])) <= 0.02 * peak
    # and the phase of each echo is that field times 2*pi*TE
    for e, te in enumerate(TES):
        expected = 2 * np.pi * hz_per_ppm(3.0) * sim.total_field_ppm * te
        assert np.abs(_wrap(sim.phase[..., e] - expected)).max() < 1e-3


def test_oblique_subject_affine_tilts_b0():
    _, affine = subject_grid((3.0, 3.0, 3.0), oblique_deg=20.0)
    b = b0_direction_from_affine(affine)
    assert np.degrees(np.arccos(b[2])) > 15  # B0 is not along the third voxel axis
    assert abs(b[0]) > 0.01 and abs(b[1]) > 0.1
    _, axial = subject_grid((3.0, 3.0, 3.0), oblique_deg=0.0)
    np.testing.assert_allclose(b0_direction_from_affine(axial), [0, 0, 1], atol=1e-12)


@pytest.mark.parametrize("units", ["rad", "siemens", "arbitrary"])
def test_phase_units_round_trip_through_nifti(tmp_path, units):
    phase = np.random.default_rng(0).uniform(-np.pi, np.pi, (8, 7, 6)).astype(np.float32)
    data, scaling, sidecar_units = encode_phase(phase, units)
    save_nifti(data, np.eye(4), tmp_path / "p.nii.gz", scaling)
    img = nib.load(tmp_path / "p.nii.gz")
    back = decode_phase(img.get_fdata(), units)
    step = {"rad": 1e-6, "siemens": np.pi / 4096 + 1e-6, "arbitrary": 1e-4}[units]
    assert np.abs(_wrap(back - phase)).max() <= step
    assert sidecar_units == ("rad" if units == "rad" else "arbitrary")
    if units == "siemens":  # dcm2niix convention: stored 0..4095, slope 2, inter -4096
        raw = np.asarray(img.dataobj.get_unscaled())
        assert img.get_data_dtype() == np.uint16 and raw.min() >= 0 and raw.max() <= 4095
        assert (img.dataobj.slope, img.dataobj.inter) == (2.0, -4096.0)
        assert img.get_fdata().min() >= -4096 and img.get_fdata().max() <= 4094


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """A noise-free oblique 3 mm subject at 7 T in Siemens units, without shim/offset terms."""
    root = tmp_path_factory.mktemp("physics")
    settings = SimulationSettings(n_subjects=1, voxel_size_mm=3.0, field_strength_t=7.0,
                                  echo_times_s=TES, snr=None, oblique_deg=15.0,
                                  phase_units="siemens", phase_offset=False,
                                  residual_shim_ppm=0.0, ages=(62.0,), microbleed=True,
                                  compress=False)
    return simulate_dataset(root, settings)


def _load(path):
    img = nib.load(path)
    return img.get_fdata(), img.affine


def test_written_phase_is_field_times_2pi_te(written):
    run, truth = written.runs[0], written.groundtruth
    field, affine = _load(truth / run.truth["totalfield"])
    r2star, _ = _load(truth / run.truth["r2star"])
    mask = _load(truth / run.truth["mask"])[0] > 0
    mags = []
    for e, te in enumerate(TES):
        raw, phase_affine = _load(written.root / run.phase[e])
        np.testing.assert_allclose(phase_affine, affine)
        side = json.loads((written.root / run.phase[e].replace(".nii", ".json")).read_text())
        assert side["EchoTime"] == te and side["MagneticFieldStrength"] == 7.0
        phase = decode_phase(raw, "siemens")
        expected = 2 * np.pi * hz_per_ppm(side["MagneticFieldStrength"]) * field * te
        err = np.abs(_wrap(phase - expected))[mask]
        assert err.max() <= np.pi / 4096 + 1e-4  # Siemens quantisation step
        mags.append(_load(written.root / run.magnitude[e])[0])
    # magnitude decays with the written R2* (at 7 T) between the echoes
    tissue = mask & (mags[0] > 1)
    ratio = mags[1][tissue] / mags[0][tissue]
    np.testing.assert_allclose(ratio, np.exp(-r2star[tissue] * (TES[1] - TES[0])), rtol=1e-4)


def test_written_fields_are_dipole_fields_of_written_chi(written):
    """Total field = D * chi over the FOV, local field = D * (chi in mask), with B0 from the
    written (oblique) affine."""
    run, truth = written.runs[0], written.groundtruth
    chi, affine = _load(truth / run.truth["chi"])
    mask = _load(truth / run.truth["mask"])[0] > 0
    total, _ = _load(truth / run.truth["totalfield"])
    local, _ = _load(truth / run.truth["localfield"])
    b0 = b0_direction_from_affine(affine)
    vox = np.linalg.norm(affine[:3, :3], axis=0)
    np.testing.assert_allclose(total, forward_field(chi.astype(np.float32), vox, b0),
                               atol=1e-5)
    expected_local = forward_field(np.where(mask, chi, 0).astype(np.float32), vox, b0)
    np.testing.assert_allclose(local[mask], expected_local[mask], atol=1e-5)
    assert np.all(local[~mask] == 0)
    # the oblique B0 matters: an axial kernel gives a visibly different local field
    axial = forward_field(np.where(mask, chi, 0).astype(np.float32), vox, (0, 0, 1))
    assert np.abs(axial - expected_local)[mask].max() > 0.01
    # and the background (bone, air) field dominates near the sinuses
    assert np.abs(total - local)[mask].max() > 5 * np.abs(local[mask]).std()


def test_written_labels_chi_and_tables_agree(written):
    run, truth = written.runs[0], written.groundtruth
    chi, _ = _load(truth / run.truth["chi"])
    labels = _load(truth / run.truth["dseg"])[0].astype(int)
    mask = _load(truth / run.truth["mask"])[0] > 0
    age = float(written.participants[0]["age"])
    table = tissue_table(age)
    # the dseg.tsv names every label used
    rows = [line.split("\t") for line in
            (truth / run.truth["dseg"].replace(".nii", ".tsv")).read_text().splitlines()]
    assert rows[0] == ["index", "name"]
    names = {int(i): n for i, n in rows[1:]}
    assert set(np.unique(labels)) - {0} <= set(names) and names == LABEL_NAMES
    # label interiors carry the tissue value at the participant's age (written truth)
    # (3 mm voxels and 2 mm soft edges: only the cores of the nuclei reach the pure value)
    for label in (3, 5, 7, 13, 20):
        values = chi[labels == label]
        assert np.abs(values - table[label].chi_ppm).min() < 2e-3, LABEL_NAMES[label]
        if label != 20:  # partial volume pulls the median towards WM, but not past halfway
            assert np.median(values) > (table[label].chi_ppm + table[20].chi_ppm) / 2
    assert np.median(chi[labels == 20]) == pytest.approx(table[20].chi_ppm, abs=1e-3)
    # regions table = means recomputed from the written images
    lines = (truth / run.truth["regions"]).read_text().splitlines()
    header = lines[0].split("\t")
    for line in lines[1:]:
        row = dict(zip(header, line.split("\t"), strict=True))
        inside = labels == int(row["index"])
        assert int(row["n_voxels"]) == inside.sum()
        if inside.any():
            assert float(row["chi_mean_ppm"]) == pytest.approx(chi[inside].mean(), abs=1e-4)
        assert float(row["chi_tissue_ppm"]) == pytest.approx(
            table[int(row["index"])].chi_ppm, abs=1e-5)
    # the mask holds the brain labels and none of bone/air/scalp
    assert not np.isin(labels[mask], [30, 31, 32]).any()
    assert mask[np.isin(labels, range(1, 15))].all()


def test_subject_maps_are_consistent_and_warped():
    """Warped subjects keep labels consistent with chi and differ from the template."""
    a = make_subject_anatomy(SubjectSpec(seed=1, warp_mm=3.0), (3.0, 3.0, 3.0))
    b = make_subject_anatomy(SubjectSpec(seed=2, warp_mm=3.0), (3.0, 3.0, 3.0))
    assert a.labels.shape == b.labels.shape
    assert (a.labels != b.labels).mean() > 0.02  # different anatomy / pose
    for anat in (a, b):
        for name in ("Putamen_L", "GlobusPallidus_R", "Thalamus_L", "Dentate_R"):
            label = {v: k for k, v in LABEL_NAMES.items()}[name]
            vol = (anat.labels == label).sum() * 27 / 1000
            assert 0.5 < vol < 10, f"{name}: {vol} mL"  # survives the warp at 3 mm
