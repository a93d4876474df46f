"""Referencing: the reported reference region has mean 0 and the reference is returned."""

import numpy as np
import pytest

from qsmbids.recon.referencing import MIN_REFERENCE_VOXELS, reference_susceptibility


def _maps():
    rng = np.random.default_rng(3)
    chi = rng.normal(0.05, 0.02, (12, 12, 12)).astype(np.float32)
    mask = np.zeros(chi.shape, bool)
    mask[2:10, 2:10, 2:10] = True
    csf = np.zeros(chi.shape, bool)
    csf[4:7, 4:7, 4:7] = True
    chi[csf] += 0.1
    return chi, mask, csf


def test_whole_brain_mean_is_the_default_and_is_returned():
    chi, mask, _ = _maps()
    out, ref = reference_susceptibility(chi, mask)
    assert ref.method == "whole_brain"
    assert ref.value_ppm == pytest.approx(float(chi[mask].mean()), abs=1e-7)
    assert ref.n_voxels == mask.sum()
    assert abs(out[mask].mean()) < 1e-6
    assert np.all(out[~mask] == 0)
    np.testing.assert_allclose(out[mask], chi[mask] - ref.value_ppm, atol=1e-7)


def test_csf_reference_zeroes_the_csf_mean_and_keeps_differences():
    chi, mask, csf = _maps()
    out, ref = reference_susceptibility(chi, mask, "csf", reference_mask=csf)
    assert ref.method == "csf" and ref.n_voxels == csf.sum()
    assert abs(out[csf].mean()) < 1e-6
    assert ref.value_ppm == pytest.approx(float(chi[csf].mean()), abs=1e-7)
    whole, _ = reference_susceptibility(chi, mask)
    # a constant shift only: regional differences are unchanged
    np.testing.assert_allclose(out[mask] - whole[mask], -(ref.value_ppm - chi[mask].mean()),
                               atol=1e-6)
    sidecar = ref.to_sidecar()
    assert sidecar["SusceptibilityReference"] == "csf"
    assert sidecar["SusceptibilityReferenceValue"] == ref.value_ppm


def test_none_leaves_values_and_reports_it():
    chi, mask, _ = _maps()
    out, ref = reference_susceptibility(chi, mask, "none")
    np.testing.assert_array_equal(out[mask], chi[mask])
    assert ref.value_ppm == 0.0 and ref.description == "no referencing"


def test_bad_references_are_reported_clearly():
    chi, mask, csf = _maps()
    with pytest.raises(ValueError, match="needs reference_mask"):
        reference_susceptibility(chi, mask, "csf")
    with pytest.raises(ValueError, match="unknown reference"):
        reference_susceptibility(chi, mask, "white_matter_mean")
    tiny = np.zeros_like(csf)
    tiny[5, 5, 5] = True
    with pytest.raises(ValueError, match=f"at least {MIN_REFERENCE_VOXELS}"):
        reference_susceptibility(chi, mask, "csf", reference_mask=tiny)
    outside = np.zeros_like(csf)
    outside[0:2, 0:12, 0:12] = True  # all outside the brain mask
    with pytest.raises(ValueError, match="0 voxels inside the brain"):
        reference_susceptibility(chi, mask, "csf", reference_mask=outside)
    with pytest.raises(ValueError, match="does not match"):
        reference_susceptibility(chi, mask[:-1])
    bad = chi.copy()
    bad[3, 3, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        reference_susceptibility(bad, mask)
