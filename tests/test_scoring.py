"""The validation scores themselves: qsm-ci metrics with chi's free reference constant."""

import numpy as np
import pytest

from qsmbids.validation.scoring import map_spread, score_peer_head

pytest.importorskip("qsm_ci", reason="needs the 'validation' extra (qsm-ci)")


def _truth():
    rng = np.random.default_rng(0)
    shape = (24, 24, 24)
    grid = np.indices(shape) - 11.5
    brain = (grid**2).sum(0) < 10**2
    seg = np.zeros(shape, np.int16)
    seg[brain] = 8
    seg[9:13, 9:13, 9:13] = 2  # a "pallidum" block (qsm-ci label 2)
    truth = np.where(brain, rng.normal(-0.015, 0.02, shape), 0).astype(np.float32)
    truth[seg == 2] += 0.15
    return truth, brain, seg


@pytest.mark.parametrize("offset", [0.0, 0.05, -0.3])
def test_a_perfect_map_scores_perfectly_on_any_reference(offset):
    truth, brain, seg = _truth()
    score = score_peer_head(np.where(brain, truth + offset, 0), truth, brain, seg)
    assert score.nrmse < 1e-3 and score.xsim > 0.999 and score.coverage == 1.0
    assert abs(score.nucleus_error_ppm["pallidum"]) < 1e-6


def test_a_noisy_map_scores_worse_and_its_nucleus_error_is_the_mean_difference():
    truth, brain, seg = _truth()
    recon = truth.copy()
    recon[seg == 2] -= 0.02
    recon += np.random.default_rng(1).normal(0, 0.02, truth.shape).astype(np.float32)
    score = score_peer_head(np.where(brain, recon, 0), truth, brain, seg)
    assert 20 < score.nrmse < 200 and score.xsim < 0.99
    assert score.nucleus_error_ppm["pallidum"] == pytest.approx(-0.02, abs=0.006)


def test_map_spread_reports_volume_and_percentiles():
    chi = np.zeros((10, 10, 10), np.float32)
    chi[:5] = 0.1
    spread = map_spread(chi, np.ones(chi.shape, bool), (2.0, 2.0, 2.0))
    assert spread.mask_ml == pytest.approx(8.0)
    assert spread.iqr_ppm == pytest.approx(0.1, abs=1e-6)
    assert spread.p01_ppm == pytest.approx(0.0) and spread.p99_ppm == pytest.approx(0.1)


def test_the_in_vivo_order_of_the_nuclei_is_checked_group_by_group():
    from qsmbids.validation.scoring import nuclei_order_holds

    philips = {"GlobusPallidus": 0.200, "SubstantiaNigra": 0.094, "RedNucleus": 0.111,
               "Putamen": 0.090, "Caudate": 0.069, "Thalamus": 0.018, "WhiteMatter": -0.014}
    holds, text = nuclei_order_holds(philips)
    assert holds and text.endswith("Wh -0.014")
    assert not nuclei_order_holds({**philips, "SubstantiaNigra": 0.085})[0]  # below putamen
    assert not nuclei_order_holds({**philips, "Thalamus": -0.02})[0]  # below white matter
    without_wm = {k: v for k, v in philips.items() if k != "WhiteMatter"}
    assert nuclei_order_holds(without_wm)[0]  # the brain mean (0) stands in
    assert not nuclei_order_holds({**without_wm, "Thalamus": -0.001})[0]
