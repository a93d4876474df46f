"""The r^2 part of a single echo's phase offset (qsmbids.recon.background.offset_term).

A ball of tissue with blobs of known chi; its total field is the blobs' dipole field plus
a phase offset converted to ppm at one echo time: an anisotropic quadratic (as
qsm-forward makes it) of 0.1 ppm across the ball, plus a tilt. PDF removes the harmonic
part; the offset term must take the rest without touching the local field.
"""

import numpy as np
import pytest

from qsmbids.recon.background.offset_term import normalised_bowl, remove_offset_term
from qsmbids.recon.background.pdf import pdf
from qsmbids.recon.dipole import forward_field

VOXEL = (2.0, 2.0, 2.5)
SHAPE = (48, 48, 40)


@pytest.fixture(scope="module")
def ball():
    grid = np.indices(SHAPE).astype(float) - (np.array(SHAPE)[:, None, None, None] - 1) / 2
    mm = grid * np.array(VOXEL)[:, None, None, None]
    mask = np.sqrt((mm ** 2).sum(0)) <= 40
    chi = np.zeros(SHAPE)
    for centre, value in (((0, 0, 0), 0.1), ((0, 20, 0), 0.08), ((14, -12, 8), -0.05)):
        chi[np.sqrt(((mm - np.array(centre)[:, None, None, None]) ** 2).sum(0)) <= 6] = value
    local = forward_field(chi, VOXEL, pad_fraction=1.0)
    quadratic = (mm[0] / 40) ** 2 + (mm[1] / 55) ** 2 + 0.5 * (mm[2] / 40) ** 2
    offset = 0.1 * quadratic / quadratic[mask].max() + 0.002 * mm[0] / 40
    return mask, local, offset


def _rms(a, mask):
    a = a[mask] - a[mask].mean()
    return float(np.sqrt(np.mean(a ** 2)))


def _pdf(field, mask):
    return pdf(np.where(mask, field, 0).astype(np.float32), mask, VOXEL).local_field


def test_the_offset_term_takes_what_pdf_leaves_of_a_quadratic_offset(ball):
    mask, local, offset = ball
    with_offset = _pdf(local + offset, mask)
    clean = _pdf(local, mask)
    term = remove_offset_term(with_offset, mask, VOXEL, _pdf)
    before, after = _rms(with_offset - clean, mask), _rms(term.local_field - clean, mask)
    print(f"residual offset after PDF {before:.5f} ppm RMS, after the term {after:.5f} "
          f"(local field RMS {_rms(clean, mask):.5f}); coefficient {term.coefficient_ppm:.4f}")
    assert before > 0.005  # PDF alone leaves a bowl as large as the local field
    assert after < 0.1 * before
    assert term.coefficient_ppm > 0


def test_the_offset_term_leaves_a_field_without_offset_nearly_unchanged(ball):
    mask, local, _ = ball
    clean = _pdf(local, mask)
    term = remove_offset_term(clean, mask, VOXEL, _pdf)
    assert _rms(term.local_field - clean, mask) < 0.05 * _rms(clean, mask)
    assert np.all(term.local_field[~mask] == 0)


def test_normalised_bowl_is_one_at_the_farthest_voxel_and_zero_outside():
    mask = np.zeros((9, 9, 9), bool)
    mask[2:7, 2:7, 2:7] = True
    bowl = normalised_bowl(mask, (1.0, 1.0, 2.0))
    assert bowl[mask].max() == pytest.approx(1.0)
    assert bowl[4, 4, 4] == pytest.approx(0.0)
    assert np.all(bowl[~mask] == 0)
    with pytest.raises(ValueError, match="empty"):
        normalised_bowl(np.zeros((3, 3, 3), bool), (1, 1, 1))
