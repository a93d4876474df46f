"""The large veins' susceptibility from TV solved to convergence in cubes around them,
on a field made by the peer simulator's forward model (qsm-forward), not the pipeline's."""

import numpy as np
import pytest
import scipy.ndimage as ndi
from vein_helpers import BLOOD_PPM, TISSUE_PPM, tubes

from qsmbids.recon import veins
from qsmbids.recon.inversion.tv_admm import tv_admm
from qsmbids.recon.vein_boxes import converged_centre_line_values

qsm_forward = pytest.importorskip("qsm_forward", reason="needs the 'validation' extra")

SHAPE = (64, 64, 64)
#: a 4 mm vein along B0 (z) and one across it (along x)
TUBES = ((2, (22.3, 22.2), 4.0), (0, (44.3, 40.2), 4.0))


@pytest.fixture(scope="module")
def vein_field():
    blood = np.max([tubes(SHAPE, [t]) for t in TUBES], axis=0)
    chi = (TISSUE_PPM + blood * (BLOOD_PPM - TISSUE_PPM)).astype(np.float32)
    brain = np.zeros(SHAPE, bool)
    brain[4:-4, 4:-4, 4:-4] = True
    field = np.asarray(qsm_forward.generate_field(chi, voxel_size=[1, 1, 1],
                                                  B0_dir=[0, 0, 1]), np.float32)
    field += np.random.default_rng(1).normal(0, 0.002, SHAPE).astype(np.float32)
    delivered = tv_admm(field * brain, brain, (1, 1, 1), (0, 0, 1), free_outside=True).chi
    tissue = brain & (blood == 0)
    delivered = delivered - np.median(delivered[tissue]) + TISSUE_PPM  # on the truth's level
    found = veins.vein_mask(delivered, brain, (1, 1, 1), edge_margin_mm=1.0)
    return field * brain, brain, delivered, found


@pytest.mark.parametrize("axis", [2, 0], ids=["along B0", "across B0"])
def test_converged_cubes_read_the_blood(vein_field, axis):
    field, brain, delivered, found = vein_field
    near = ndi.binary_dilation(tubes(SHAPE, [t for t in TUBES if t[0] == axis]) > 0,
                               iterations=3)
    core = veins.centre_lines(found & near, (1, 1, 1), 2.0)
    assert core.sum() >= 30
    boxed = converged_centre_line_values(field, brain, core, found, delivered, (1, 1, 1),
                                         (0, 0, 1), lam=2e-4)
    assert boxed.coverage == 1.0 and boxed.values_ppm.size == core.sum()
    assert max(boxed.iterations) > 60  # converged, well past the delivered map's stop
    assert float(np.median(boxed.values_ppm)) == pytest.approx(BLOOD_PPM, abs=0.01)


def test_the_cube_count_is_capped_and_the_coverage_says_so(vein_field):
    field, brain, delivered, found = vein_field
    core = veins.centre_lines(found, (1, 1, 1), 2.0)
    boxed = converged_centre_line_values(field, brain, core, found, delivered, (1, 1, 1),
                                         (0, 0, 1), lam=2e-4, max_boxes=1, half_width_mm=8)
    assert boxed.n_boxes == 1 and len(boxed.iterations) == 1
    assert 0 < boxed.coverage < 1
    assert boxed.values_ppm.size == pytest.approx(boxed.coverage * core.sum())
