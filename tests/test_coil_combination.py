"""Coil-channel combination (MCPC-3D-S, qsmbids.recon.coil_combination) against a
single-coil acquisition of the same object.

A ball of tissue at 2 mm with a field of blobs' dipole fields plus a linear gradient;
32 channels on a shell around it, each with a Gaussian sensitivity profile and its own
phase offset (a constant, a linear and a quadratic term), with complex noise per
channel. The reference is one coil of uniform sensitivity and no offset, with the noise
of the channels' root-sum-of-squares. Both go through the pipeline's field estimation;
issue #15's target: the combined field within 0.002 ppm RMS of the single-coil one.
"""

import numpy as np
import pytest

from qsmbids.recon.coil_combination import combine_channels
from qsmbids.recon.dipole import forward_field
from qsmbids.recon.field_estimation import estimate_field

VOXEL = (2.0, 2.0, 2.0)
SHAPE = (48, 48, 40)
TES = (0.004, 0.008, 0.012, 0.016)
B0 = 3.0
GAMMA_HZ_PER_PPM = 42.577478 * B0


def _object(rng):
    grid = np.indices(SHAPE).astype(float) - (np.array(SHAPE)[:, None, None, None] - 1) / 2
    mm = grid * np.array(VOXEL)[:, None, None, None]
    ball = np.sqrt((mm ** 2).sum(0)) <= 36
    chi = np.zeros(SHAPE)
    for centre, value in (((0, 0, 0), 0.15), ((12, 14, -6), 0.1), ((-15, -8, 8), -0.08)):
        chi[np.sqrt(((mm - np.array(centre)[:, None, None, None]) ** 2).sum(0)) <= 6] = value
    field_ppm = forward_field(chi, VOXEL, pad_fraction=1.0) + 0.05 * mm[0] / 36
    return mm, ball, field_ppm


def _channels(mm, ball, field_ppm, rng, n=32, noise=0.02):
    tissue = np.where(ball, 1.0, 0.0)
    directions = rng.normal(size=(n, 3))
    directions /= np.linalg.norm(directions, axis=1)[:, None]
    signals = np.empty((n, len(TES), *SHAPE), np.complex64)
    for c, d in enumerate(directions):
        distance2 = ((mm - 70 * d[:, None, None, None]) ** 2).sum(0)
        sensitivity = np.exp(-distance2 / (2 * 55.0 ** 2))
        a, b, q = rng.uniform(-np.pi, np.pi), rng.normal(0, 1.0, 3), rng.normal(0, 0.5)
        offset = a + (b[:, None, None, None] * mm).sum(0) / 36 + q * (mm[2] / 36) ** 2
        for e, te in enumerate(TES):
            clean = sensitivity * tissue * np.exp(1j * (offset + 2 * np.pi * GAMMA_HZ_PER_PPM
                                                        * field_ppm * te))
            signals[c, e] = clean + noise * (rng.standard_normal(SHAPE)
                                             + 1j * rng.standard_normal(SHAPE))
    return signals


@pytest.fixture(scope="module")
def case():
    rng = np.random.default_rng(5)
    mm, ball, field_ppm = _object(rng)
    signals = _channels(mm, ball, field_ppm, rng)
    return mm, ball, field_ppm, signals, rng


def _field(magnitude, phase, mask):
    return estimate_field(magnitude, phase, TES, B0, mask, VOXEL).field.field_ppm


def test_32_channels_combine_to_the_single_coil_field(case):
    mm, ball, field_ppm, signals, rng = case
    reads = []

    def read(channel, echo):
        reads.append((channel, echo))
        z = signals[channel, echo]
        return np.abs(z), np.angle(z)

    combined = combine_channels(read, len(signals), TES, VOXEL)
    assert combined.magnitude.shape == (*SHAPE, len(TES))
    assert "MCPC-3D-S" in combined.description and "32 coil channels" in combined.description
    # streamed: each channel read twice for the offsets' pair, then once per other echo
    assert len(reads) == len(signals) * (2 + len(TES))
    # the single-coil reference: the channels' RSS magnitude, no offset, matched noise
    mask = ball & (np.sqrt((mm ** 2).sum(0)) <= 32)
    single = np.empty((*SHAPE, len(TES)), np.complex64)
    for e, te in enumerate(TES):
        single[..., e] = combined.magnitude[..., e] * np.exp(
            1j * 2 * np.pi * GAMMA_HZ_PER_PPM * field_ppm * te)
    single += 0.02 * (rng.standard_normal(single.shape) + 1j * rng.standard_normal(single.shape))
    f_combined = _field(combined.magnitude, combined.phase, mask)
    f_single = _field(np.abs(single), np.angle(single), mask)
    difference = (f_combined - f_single)[mask]
    difference -= np.median(difference)
    rms = float(np.sqrt(np.mean(difference ** 2)))
    truth = (field_ppm - np.median(field_ppm[mask]))[mask]
    error = f_combined[mask] - np.median(f_combined[mask]) - truth
    print(f"combined vs single-coil field: {rms:.5f} ppm RMS; combined vs truth "
          f"{np.sqrt(np.mean(error ** 2)):.5f} ppm")
    assert rms <= 0.002


def test_plain_sum_without_offsets_fails_where_the_combination_holds(case):
    """The channels' own offsets cancel in a plain complex sum (the reason to combine)."""
    mm, ball, _, signals, _ = case
    plain = np.abs(signals[:, 0].sum(axis=0))
    rss = np.sqrt((np.abs(signals[:, 0]) ** 2).sum(axis=0))
    inside = ball & (np.sqrt((mm ** 2).sum(0)) <= 32)
    assert np.percentile((plain / rss)[inside], 5) < 0.5  # deep cancellations

    def read(channel, echo):
        z = signals[channel, echo]
        return np.abs(z), np.angle(z)

    combined = combine_channels(read, len(signals), TES, VOXEL, echoes=(0, 1))
    # after removing each channel's offset the channels add up coherently: the phase
    # is smooth (no open-ended fringes) wherever the plain sum cancelled
    phase = combined.phase[..., 0]
    step = np.angle(np.exp(1j * np.diff(phase, axis=0)))
    both = inside[1:] & inside[:-1]
    assert np.percentile(np.abs(step[both]), 99) < 0.5
    assert np.isfinite(combined.phase).all()


def test_one_echo_is_refused():
    with pytest.raises(ValueError, match="two distinct echoes"):
        combine_channels(lambda c, e: (np.ones((4, 4, 4)), np.zeros((4, 4, 4))), 2,
                         (0.01,), VOXEL)


def _write_channel_dataset(root, signals, stem="sub-01_acq-coils"):
    import json

    import nibabel as nib

    anat = root / "sub-01" / "anat"
    anat.mkdir(parents=True)
    (root / "dataset_description.json").write_text(
        json.dumps({"Name": "coils", "BIDSVersion": "1.9.0"}))
    affine = np.diag([*VOXEL, 1.0])
    for e, te in enumerate(TES, start=1):
        for part, values in (("mag", np.abs(signals[:, e - 1])),
                             ("phase", np.angle(signals[:, e - 1]))):
            path = anat / f"{stem}_echo-{e}_part-{part}_MEGRE.nii.gz"
            data = np.moveaxis(values, 0, -1).astype(np.float32)  # (x, y, z, channel)
            nib.save(nib.Nifti1Image(data, affine), str(path))
            meta = {"EchoTime": te, "MagneticFieldStrength": B0}
            if part == "phase":
                meta["Units"] = "rad"
            path.with_name(path.name.replace(".nii.gz", ".json")).write_text(json.dumps(meta))
    return root


def test_per_echo_channel_files_are_discovered_and_combined(case, tmp_path):
    """``sub-X_echo-N_part-{mag,phase}_MEGRE`` files of shape (x, y, z, channel), as raw
    exports give them: discovered as 8 channels of 4 echoes (not 32 echoes), combined
    before field estimation, recorded in the sidecar; the map matches the truth's
    structure."""
    import json

    import nibabel as nib

    from qsmbids.bids.discovery import discover_runs, validate_run
    from qsmbids.validation.realdata import run_participant

    mm, ball, field_ppm, signals, _ = case
    bids = _write_channel_dataset(tmp_path / "bids", signals[:8])
    found = discover_runs(bids)
    assert not found.problems, found.problems
    run = found.runs[0]
    assert run.channels == 8 and run.n_echoes == 4
    assert any("8 uncombined coil channels" in n for n in run.notes)
    assert validate_run(run) == []
    result = run_participant(bids, tmp_path / "out", tmp_path / "work",
                             ["--atlas", "none", "--field-strength", str(B0)])
    assert result.returncode == 0, result.log[-3000:]
    assert "coil channels" in result.log
    total = result.find("*_desc-totalfield_fieldmap.nii.gz")[0]
    sidecar = json.loads(total.with_name(total.name.replace(".nii.gz", ".json")).read_text())
    load = next(s for s in sidecar["ProcessingSteps"] if s["Step"] == "phase scaling")
    assert load["Info"]["CoilChannels"] == 8 and "MCPC-3D-S" in load["Info"]["CoilCombination"]
    field = np.asarray(nib.load(total).dataobj, np.float32)
    inner = ball & (np.sqrt((mm ** 2).sum(0)) <= 30)
    error = (field - np.median(field[inner])) - (field_ppm - np.median(field_ppm[inner]))
    print(f"8-channel run, total field error {np.sqrt(np.mean(error[inner] ** 2)):.5f} ppm")
    assert np.sqrt(np.mean(error[inner] ** 2)) < 0.003


def test_a_5d_file_per_part_is_echoes_by_channels(case, tmp_path, monkeypatch):
    """One (x, y, z, echo, channel) file per part with an EchoTime list: 4 echoes of 4
    channels; the loader combines them (the same field as the per-echo layout)."""
    import json

    import nibabel as nib

    from qsmbids.bids.discovery import discover_runs, validate_run
    from qsmbids.interfaces.recon import LoadGre
    from qsmbids.workflows.base import run_spec

    _, ball, _, signals, _ = case
    anat = tmp_path / "bids" / "sub-01" / "anat"
    anat.mkdir(parents=True)
    (tmp_path / "bids" / "dataset_description.json").write_text(
        json.dumps({"Name": "c", "BIDSVersion": "1.9.0"}))
    for part, values in (("mag", np.abs(signals[:4])), ("phase", np.angle(signals[:4]))):
        data = np.transpose(values, (2, 3, 4, 1, 0)).astype(np.float32)  # x, y, z, e, c
        path = anat / f"sub-01_part-{part}_MEGRE.nii.gz"
        nib.save(nib.Nifti1Image(data, np.diag([*VOXEL, 1.0])), str(path))
        meta = {"EchoTime": list(TES), "MagneticFieldStrength": B0}
        path.with_name(path.name.replace(".nii.gz", ".json")).write_text(json.dumps(meta))
    run = discover_runs(tmp_path / "bids").runs[0]
    assert run.four_d and run.channels == 4 and run.n_echoes == 4
    assert validate_run(run) == []
    monkeypatch.chdir(tmp_path)
    result = LoadGre(run_spec=run_spec(run)).run()
    phase = nib.load(result.outputs.phase).get_fdata()
    assert phase.shape == (*SHAPE, 4)
    record = json.loads(open(result.outputs.provenance).read())
    assert record["Info"]["CoilChannels"] == 4
    # echo 2 minus echo 1 follows the field where there is tissue (channels combined)
    step = np.angle(np.exp(1j * (phase[..., 1] - phase[..., 0])))
    assert np.isfinite(step[ball]).all()


def test_channels_of_a_single_echo_are_set_aside(tmp_path):
    import json

    import nibabel as nib

    from qsmbids.bids.discovery import discover_runs

    anat = tmp_path / "sub-01" / "anat"
    anat.mkdir(parents=True)
    (tmp_path / "dataset_description.json").write_text(json.dumps({"Name": "c"}))
    for part in ("mag", "phase"):
        path = anat / f"sub-01_echo-1_part-{part}_MEGRE.nii.gz"
        nib.save(nib.Nifti1Image(np.ones((8, 8, 8, 4), np.float32), np.eye(4)), str(path))
        path.with_name(path.name.replace(".nii.gz", ".json")).write_text(
            json.dumps({"EchoTime": 0.01, "MagneticFieldStrength": 3}))
    found = discover_runs(tmp_path)
    assert not found.runs
    assert "coil channels of a single echo" in found.problems[0].message
    assert "needs two echoes" in found.problems[0].message
