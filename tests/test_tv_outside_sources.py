"""TV inversion with free sources outside the mask (``tv_admm(free_outside=True)``).

A background removal leaves a residual that fields of outside sources can explain; with
TV over the whole grid that residual is fitted by chi just inside the mask edge. The
cases here are a ball of tissue with blobs of known chi, one near its edge, whose local
field carries such a residual: the field of a strongly diamagnetic slab (bone-like) just
outside the ball. Fields are simulated in float64 on a grid padded to three times the
object (the inversion works in float32 on the mask's box padded by 25 %).
"""

import numpy as np
import pytest

from qsmbids.recon.dipole import forward_field
from qsmbids.recon.inversion.tv_admm import DEFAULT_MU_DATA, DEFAULT_MU_DATA_FREE, tv_admm

VOXEL = (2.0, 2.0, 2.0)
SHAPE = (48, 48, 48)


def _ball_case():
    grid = np.indices(SHAPE).astype(float) - (np.array(SHAPE)[:, None, None, None] - 1) / 2
    radius = np.sqrt((grid ** 2).sum(0))
    mask = radius <= 18
    chi = np.where(mask, 0.01, 0.0)
    blobs = []
    for centre, value in (((0, 0, 0), 0.10), ((0, 12, 0), 0.08), ((9, -8, 4), -0.05)):
        blob = np.sqrt(((grid - np.array(centre)[:, None, None, None]) ** 2).sum(0)) <= 3
        chi[blob] = value
        blobs.append(blob)
    chi = chi.astype(np.float64)
    local = forward_field(chi, VOXEL, pad_fraction=1.0)
    slab = (radius > 19.5) & (radius <= 22) & (grid[1] > 10)  # bone-like shell, one side
    residual = forward_field(np.where(slab, -2.0, 0.0), VOXEL, pad_fraction=1.0)
    residual -= residual[mask].mean()
    return chi, mask, local, residual, blobs


@pytest.fixture(scope="module")
def ball():
    return _ball_case()


def _errors(result, chi, mask, blobs):
    recon = result.chi - result.chi[mask].mean() + chi[mask].mean()
    nrmse = 100 * np.linalg.norm(recon[mask] - chi[mask]) / np.linalg.norm(chi[mask])
    blob_errors = [abs(recon[b].mean() - chi[b].mean()) for b in blobs]
    return nrmse, blob_errors


def test_free_outside_sources_take_up_a_residual_background(ball):
    chi, mask, local, residual, blobs = ball
    field = (local + residual).astype(np.float32)
    assert np.abs(residual[mask]).max() > 0.02  # a residual as large as the local field
    bounded = _errors(tv_admm(field, mask, VOXEL, max_iter=300), chi, mask, blobs)
    free = _errors(tv_admm(field, mask, VOXEL, free_outside=True, max_iter=300),
                   chi, mask, blobs)
    print(f"NRMSE bounded {bounded[0]:.1f} %, free {free[0]:.1f} %; blob errors (ppm) "
          f"bounded {np.round(bounded[1], 4)}, free {np.round(free[1], 4)}")
    assert free[0] < 0.6 * bounded[0]
    # the blob near the slab side (12 voxels up y) is where the bounded fit bends most
    assert free[1][1] < 0.5 * bounded[1][1]
    assert max(free[1]) <= 0.01


def test_free_outside_changes_little_without_residual(ball):
    chi, mask, local, _, blobs = ball
    field = local.astype(np.float32)
    bounded = _errors(tv_admm(field, mask, VOXEL, max_iter=300), chi, mask, blobs)
    free = _errors(tv_admm(field, mask, VOXEL, free_outside=True, max_iter=300),
                   chi, mask, blobs)
    print(f"exact local field: NRMSE bounded {bounded[0]:.1f} %, free {free[0]:.1f} %")
    assert max(free[1]) <= 0.01
    assert max(bounded[1]) <= 0.01


def test_free_outside_is_recorded_with_its_default_penalty():
    mask = np.zeros((16, 16, 16), bool)
    mask[4:12, 4:12, 4:12] = True
    field = np.where(mask, 0.01, 0.0).astype(np.float32)
    free = tv_admm(field, mask, VOXEL, free_outside=True, max_iter=3)
    bounded = tv_admm(field, mask, VOXEL, max_iter=3)
    assert free.parameters["free_outside"] is True
    assert free.parameters["mu_data"] == pytest.approx(DEFAULT_MU_DATA_FREE)
    assert bounded.parameters["free_outside"] is False
    assert bounded.parameters["mu_data"] == pytest.approx(DEFAULT_MU_DATA)
    assert np.all(free.chi[~mask] == 0)  # the outside sources are not part of the map
