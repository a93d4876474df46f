"""Vendor quirks on loading: a pi phase alternation from slice to slice (GE real/imaginary
exports) is found and undone, smooth and noisy data are left alone; a NaN background is
set to 0 and counted."""

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from qsmbids.recon.slice_alternation import neighbour_coherence, undo_slice_alternation


def _smooth_signal(shape=(24, 20, 16, 3), seed=0):
    grid = np.indices(shape[:3]).astype(float)
    field = 0.3 * np.sin(grid[0] / 5) + 0.2 * np.cos(grid[1] / 4) + 0.1 * grid[2] / 4
    tes = np.arange(1, shape[3] + 1)
    phase = field[..., None] * tes + 0.4
    rng = np.random.default_rng(seed)
    magnitude = 1.0 + 0.02 * rng.standard_normal(shape)
    return magnitude * np.exp(1j * phase)


@pytest.mark.parametrize("axis", [2, 0])
def test_alternation_is_found_along_its_axis_and_undone(axis):
    signal = _smooth_signal()
    alternated = signal.copy()
    index = [slice(None)] * 4
    index[axis] = slice(1, None, 2)
    alternated[tuple(index)] *= -1  # GE: every other slice carries an extra pi
    result = undo_slice_alternation(alternated.real, alternated.imag)
    assert result.axes == (axis,)
    assert result.coherence[axis] < -0.9
    np.testing.assert_allclose(result.real + 1j * result.imaginary, signal, atol=1e-5)


def test_smooth_and_noise_data_are_left_alone():
    signal = _smooth_signal()
    result = undo_slice_alternation(signal.real, signal.imag)
    assert result.axes == () and min(result.coherence) > 0.9
    rng = np.random.default_rng(1)
    noise = rng.standard_normal((16, 16, 16)) + 1j * rng.standard_normal((16, 16, 16))
    assert abs(neighbour_coherence(noise, 2)) < 0.1
    assert undo_slice_alternation(noise.real, noise.imag).axes == ()


def test_load_gre_undoes_the_alternation_of_a_real_imaginary_run(tmp_path, monkeypatch):
    from qsmbids.interfaces.recon import LoadGre

    signal = _smooth_signal()
    alternated = signal.copy()
    alternated[:, :, 1::2] *= -1
    paths = {}
    for part, data in (("real", alternated.real), ("imag", alternated.imag)):
        paths[part] = str(tmp_path / f"{part}.nii.gz")
        nib.save(nib.Nifti1Image(data.astype(np.float32), np.eye(4)), paths[part])
    spec = {"real": [paths["real"]], "imag": [paths["imag"]], "magnitude": [], "phase": [],
            "four_d": True, "echo_times": [0.004, 0.008, 0.012], "phase_units": None}
    monkeypatch.chdir(tmp_path)
    result = LoadGre(run_spec=json.dumps(spec)).run()
    phase = nib.load(result.outputs.phase).get_fdata()
    np.testing.assert_allclose(np.angle(np.exp(1j * (phase - np.angle(signal)))), 0,
                               atol=1e-4)
    record = json.loads(Path(result.outputs.provenance).read_text())
    assert record["Info"]["SliceAlternationAxes"] == [2]
    assert "pi alternation" in record["Algorithm"]


def test_a_nan_background_is_set_to_zero_and_counted(tmp_path, monkeypatch):
    from qsmbids.interfaces.recon import LoadGre

    signal = _smooth_signal()
    background = np.zeros(signal.shape[:3], bool)
    background[:3] = True
    paths = {}
    for part, data in (("mag", np.abs(signal)), ("phase", np.angle(signal))):
        data = data.astype(np.float32)
        data[background] = np.nan
        paths[part] = str(tmp_path / f"{part}.nii.gz")
        nib.save(nib.Nifti1Image(data, np.eye(4)), paths[part])
    spec = {"real": [], "imag": [], "magnitude": [paths["mag"]], "phase": [paths["phase"]],
            "four_d": True, "echo_times": [0.004, 0.008, 0.012], "phase_units": "rad"}
    monkeypatch.chdir(tmp_path)
    result = LoadGre(run_spec=json.dumps(spec)).run()
    magnitude = nib.load(result.outputs.magnitude).get_fdata()
    assert np.isfinite(magnitude).all() and np.all(magnitude[background] == 0)
    record = json.loads(Path(result.outputs.provenance).read_text())
    counted = record["Info"]["NaNVoxelsSetToZero"]
    assert counted == {"mag.nii.gz": int(background.sum()) * 3,
                       "phase.nii.gz": int(background.sum()) * 3}
