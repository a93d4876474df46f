"""Dipole inversion from the true local field of the anatomical head phantom.

Avoiding the inverse crime where it is cheap: the local field is simulated in float64 on
a grid padded to twice the field of view (the inversions use float32 on the mask's box
padded by 25%), Gaussian noise of 0.001 ppm is added (about the field noise of a 3 T
multi-echo scan), and scoring covers the whole brain mask (qsm-ci's scorer, which counts
the mask edge). The phantom and the field are both made at the same resolution.

The default suite runs the acceptance assertions at 2 mm (the phantom takes seconds to
build there); the 1 mm case is under ``@pytest.mark.slow``.
"""

import numpy as np
import pytest
import scipy.fft
import scipy.ndimage as ndi
from qsm_ci.qsm_eval import score_arrays
from recon_phantoms import nucleus_errors, realistic_head, true_local_field

from qsmbids.recon.dipole import AXIAL, forward_field
from qsmbids.recon.inversion import (
    DEFAULT_INVERSION_METHOD,
    INVERSION_METHODS,
    invert_dipole,
    morphology_weight,
)
from qsmbids.recon.referencing import reference_susceptibility

NOISE_PPM = 0.001
TILT = np.deg2rad(20.0)
TILTED = (0.0, np.sin(TILT), np.cos(TILT))
_cache: dict = {}


def _case(voxel_size_mm, b0_direction=AXIAL):
    key = (voxel_size_mm, tuple(b0_direction))
    if key not in _cache:
        head = realistic_head(voxel_size_mm)
        field = true_local_field(head.chi, head.brain_mask, head.voxel_size, b0_direction,
                                 noise_ppm=NOISE_PPM)
        _cache[key] = (head, field)
    return _cache[key]


def _invert(voxel_size_mm, method, b0_sim=AXIAL, b0_recon=AXIAL, **kw):
    key = ("chi", voxel_size_mm, method, tuple(b0_sim), tuple(b0_recon), tuple(kw))
    if key not in _cache:
        head, field = _case(voxel_size_mm, b0_sim)
        _cache[key] = invert_dipole(field, head.brain_mask, head.voxel_size, b0_recon,
                                    method=method, workers=2, **kw)
    return _cache[key]


def _scores(result, head):
    from qsmbids.sim.phantom import to_qsmci_seg

    mask = head.brain_mask
    chi, _ = reference_susceptibility(result.chi, mask)
    truth, _ = reference_susceptibility(head.chi, mask)
    metrics, _ = score_arrays(chi, truth, mask, kind="chi", seg=to_qsmci_seg(head.labels))
    errors = nucleus_errors(chi, head.chi, mask, head.labels)
    return metrics, errors


def _check_acceptance(voxel_size_mm):
    head, _ = _case(voxel_size_mm)
    default = _scores(_invert(voxel_size_mm, DEFAULT_INVERSION_METHOD), head)
    baseline = _scores(_invert(voxel_size_mm, "tkd"), head)
    worst = max(abs(e) for e in default[1].values())
    print(f"{voxel_size_mm} mm: {DEFAULT_INVERSION_METHOD} NRMSE {default[0]['nrmse']:.1f}% "
          f"XSIM {default[0]['xsim']:.3f} worst nucleus {worst:.4f} ppm; TKD NRMSE "
          f"{baseline[0]['nrmse']:.1f}% XSIM {baseline[0]['xsim']:.3f}")
    assert default[0]["nrmse"] <= 30.0
    assert default[0]["xsim"] >= 0.80
    assert worst <= 0.015, default[1]
    assert default[0]["nrmse"] < baseline[0]["nrmse"]


def test_default_inversion_accuracy_2mm():
    _check_acceptance(2.0)


@pytest.mark.slow
def test_default_inversion_accuracy_1mm():
    _check_acceptance(1.0)


def _oblique_deviation(voxel_size_mm, b0_recon):
    head, _ = _case(voxel_size_mm)
    straight = _scores(_invert(voxel_size_mm, DEFAULT_INVERSION_METHOD), head)[1]
    tilted = _scores(_invert(voxel_size_mm, DEFAULT_INVERSION_METHOD, TILTED, b0_recon),
                     head)[1]
    return max(abs(tilted[k] - straight[k]) for k in straight)


def test_oblique_b0_gives_the_straight_nucleus_means_when_the_direction_is_used():
    used = _oblique_deviation(2.0, TILTED)
    ignored = _oblique_deviation(2.0, AXIAL)
    print(f"20 deg tilt: nucleus means deviate by {used:.4f} ppm with the true direction, "
          f"{ignored:.4f} ppm assuming B0 along z")
    assert used <= 0.01
    assert ignored > used


@pytest.mark.slow
def test_oblique_b0_1mm():
    used = _oblique_deviation(1.0, TILTED)
    ignored = _oblique_deviation(1.0, AXIAL)
    print(f"1 mm, 20 deg: {used:.4f} ppm with the direction, {ignored:.4f} ppm without")
    assert used <= 0.01
    assert ignored > used


# Measured at 2 mm (2026-12, phantom revision 2, whose medulla leaves the skull through
# a CSF canal instead of ending in bone): TKD NRMSE 46% (worst nucleus 0.026 ppm),
# closed-form Tikhonov 51% (0.035), RTS 38% (0.020; 0.018 on
# revision 1, whose NRMSE was 39%). QSM-CI anchors on the challenge phantom: TKD 36,
# RTS 38. The bounds guard against regressions and say each method recovers the nuclei
# to within a few hundredths of a ppm.
_METHOD_BOUNDS = {"tkd": (55.0, 0.03), "tikhonov": (60.0, 0.04), "rts": (42.0, 0.022)}


@pytest.mark.parametrize("method", sorted(_METHOD_BOUNDS))
def test_other_methods_recover_the_nuclei(method):
    head, _ = _case(2.0)
    metrics, errors = _scores(_invert(2.0, method), head)
    worst = max(abs(e) for e in errors.values())
    print(f"{method}: NRMSE {metrics['nrmse']:.1f}% XSIM {metrics['xsim']:.3f} "
          f"worst nucleus {worst:.4f}")
    nrmse_bound, nucleus_bound = _METHOD_BOUNDS[method]
    assert metrics["nrmse"] <= nrmse_bound
    assert worst <= nucleus_bound


def test_every_registered_method_is_tested():
    assert set(INVERSION_METHODS) == set(_METHOD_BOUNDS) | {DEFAULT_INVERSION_METHOD}


def _ellipsoid_case(voxel_size):
    """A band-limited paramagnetic ellipsoid in a spherical mask, anisotropic voxels."""
    shape = (56, 56, 28) if voxel_size[2] == 2.0 else (56, 56, 56)
    mm = [(c - (n - 1) / 2) * dx for c, n, dx in
          zip(np.indices(shape, dtype=float), shape, voxel_size, strict=True)]
    mask = np.sqrt(sum(m**2 for m in mm)) < 24
    blob = (mm[0] / 8) ** 2 + (mm[1] / 6) ** 2 + (mm[2] / 10) ** 2 <= 1
    chi = ndi.gaussian_filter(blob * 0.1, [0.7 / dx for dx in voxel_size])
    field = forward_field(chi * mask, voxel_size, pad_fraction=1.0)
    return chi, field, mask, blob


def _ellipsoid_core_mean(method, voxel_size):
    chi, field, mask, blob = _ellipsoid_case(voxel_size)
    result = invert_dipole(field, mask, voxel_size, method=method)
    recon, _ = reference_susceptibility(result.chi, mask)
    truth, _ = reference_susceptibility(chi, mask)
    core = ndi.binary_erosion(blob, iterations=2)
    return recon[core].mean(), truth[core].mean()


@pytest.mark.parametrize("method", sorted(INVERSION_METHODS))
def test_anisotropic_voxels_give_the_isotropic_answer(method):
    """The same ellipsoid on 1 mm and 1x1x2 mm voxels: each method returns the same core
    mean (within 10% of the true value), and the default is within 5% of the truth."""
    aniso, truth = _ellipsoid_core_mean(method, (1.0, 1.0, 2.0))
    iso, _ = _ellipsoid_core_mean(method, (1.0, 1.0, 1.0))
    print(f"{method}: ellipsoid core mean {aniso:.4f} (1x1x2 mm), {iso:.4f} (1 mm), "
          f"truth {truth:.4f} ppm")
    assert abs(aniso - iso) <= 0.1 * truth
    if method == DEFAULT_INVERSION_METHOD:
        assert abs(aniso - truth) <= 0.05 * truth


def test_morphology_weight_marks_the_steepest_edges():
    head, field = _case(2.0)
    weight = morphology_weight(head.m0, head.brain_mask, head.voxel_size, edge_fraction=0.3)
    assert weight.shape == (3, *head.brain_mask.shape)
    assert set(np.unique(weight)) == {0.0, 1.0}
    for axis in range(3):
        share = 1 - weight[axis][head.brain_mask].mean()
        assert share == pytest.approx(0.3, abs=0.02)
    result = invert_dipole(field, head.brain_mask, head.voxel_size,
                           gradient_weight=weight, workers=2)
    assert result.parameters["gradient_weighted"]
    errors = nucleus_errors(result.chi, head.chi, head.brain_mask, head.labels)
    print("morphology-weighted TV worst nucleus", max(abs(e) for e in errors.values()))
    assert max(abs(e) for e in errors.values()) <= 0.015


def test_bad_inputs_are_reported_clearly():
    field = np.zeros((8, 8, 8), np.float32)
    mask = np.zeros((8, 8, 8), bool)
    mask[2:6, 2:6, 2:6] = True
    with pytest.raises(ValueError, match="unknown inversion method"):
        invert_dipole(field, mask, method="medi9")
    with pytest.raises(ValueError, match="threshold"):
        invert_dipole(field, mask, method="tkd", threshold=0.5)
    with pytest.raises(ValueError, match="voxel_size"):
        invert_dipole(field, mask, (1.0, 0.0, 1.0))
    with pytest.raises(ValueError, match="b0_direction"):
        invert_dipole(field, mask, b0_direction=(0, 0, 0))
    with pytest.raises(ValueError, match="3D"):
        invert_dipole(field[..., None], mask[..., None])


def test_over_relaxed_and_plain_admm_agree():
    _, field, mask, blob = _ellipsoid_case((1.0, 1.0, 1.0))
    core = ndi.binary_erosion(blob, iterations=2)
    means = {}
    for relaxation, tol in ((1.0, 0.02), (1.5, 0.05)):
        result = invert_dipole(field, mask, relaxation=relaxation, tol=tol)
        recon, _ = reference_susceptibility(result.chi, mask)
        means[relaxation] = recon[core].mean()
        assert result.parameters["relaxation"] == relaxation
    assert means[1.5] == pytest.approx(means[1.0], abs=0.003)
    with pytest.raises(ValueError, match="relaxation"):
        invert_dipole(field, mask, relaxation=2.0)


def test_finite_differences_match_their_kspace_form_and_the_fused_kernels():
    from qsmbids.recon.inversion import _tv_kernels as kern
    from qsmbids.recon.kspace import gradient, gradient_adjoint, laplacian_kernel

    rng = np.random.default_rng(0)
    voxel_size = (1.0, 0.7, 2.0)
    x = rng.standard_normal((9, 10, 12)).astype(np.float32)
    y = rng.standard_normal((3, 9, 10, 12)).astype(np.float32)
    inv_dx = np.asarray([1 / v for v in voxel_size], np.float32)
    assert np.sum(gradient(x, voxel_size) * y) == pytest.approx(
        np.sum(x * gradient_adjoint(y, voxel_size)), rel=1e-4)
    fused = kern.gradient_adjoint_scaled(y, inv_dx, np.float32(2.0), np.empty_like(x))
    np.testing.assert_allclose(fused, 2 * gradient_adjoint(y, voxel_size), atol=1e-5)
    laplacian = scipy.fft.irfftn(scipy.fft.rfftn(x) * laplacian_kernel(x.shape, voxel_size),
                                 s=x.shape)
    np.testing.assert_allclose(laplacian, gradient_adjoint(gradient(x, voxel_size), voxel_size),
                               atol=1e-4)


def test_tv_weight_follows_the_field_noise():
    from qsmbids.recon.inversion.tv_admm import DEFAULT_LAMBDA, noise_adapted_lambda

    assert noise_adapted_lambda(0.0005) == DEFAULT_LAMBDA  # where it was tuned
    assert noise_adapted_lambda(0.005) == pytest.approx(1e-3)
    assert noise_adapted_lambda(float("nan")) == DEFAULT_LAMBDA
    assert noise_adapted_lambda(0.0) == DEFAULT_LAMBDA
