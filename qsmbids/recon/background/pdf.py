"""PDF: projection onto dipole fields (Liu et al., NMR Biomed 2011).

The background field is modelled as the field of unknown susceptibility sources outside
the mask, fitted to the measured field inside it by weighted least squares::

    min_x || W M (f - Phi (1 - M) x) ||^2,      Phi = F^-1 D F (unit dipole convolution)

solved by conjugate gradients on the normal equations on a zero-padded grid around the
mask (so the fitted sources also fill the space beyond the field of view). Phi is
symmetric (D is real and even), so each iteration costs 4 real FFTs. The local field is
what the sources outside cannot explain; it is valid on the whole input mask.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from qsmbids.recon.background._result import LocalField
from qsmbids.recon.dipole import AXIAL
from qsmbids.recon.kspace import FFTGrid, check_inputs, conjugate_gradient

#: default relative residual at which CG stops
DEFAULT_TOL = 1e-2
#: default iteration cap
DEFAULT_MAX_ITER = 100


def pdf(
    field: np.ndarray,
    mask: np.ndarray,
    voxel_size: Sequence[float] = (1.0, 1.0, 1.0),
    b0_direction: Sequence[float] = AXIAL,
    *,
    weight: np.ndarray | None = None,
    tol: float = DEFAULT_TOL,
    max_iter: int = DEFAULT_MAX_ITER,
    pad_fraction: float = 0.25,
    workers: int | None = None,
) -> LocalField:
    """Remove the background field by projection onto dipole fields.

    Parameters
    ----------
    field
        Total field in ppm, (x, y, z).
    mask
        Brain mask, (x, y, z).
    voxel_size
        mm along (x, y, z).
    b0_direction
        B0 direction in the voxel frame (see
        :func:`qsmbids.recon.dipole.b0_direction_from_affine`).
    weight
        Optional data weight (e.g. inverse noise standard deviation of the field),
        (x, y, z); default uniform. Normalised to mean 1 in the mask.
    tol
        CG stops when the normal-equation residual falls below ``tol`` times its start.
    max_iter
        CG iteration cap.
    pad_fraction
        Zero padding of the mask's bounding box (space for sources outside).
    workers
        Threads for ``scipy.fft``.

    Returns
    -------
    LocalField
        Local field on the (uneroded) input mask.
    """
    field, mask, voxel_size = check_inputs(field, mask, voxel_size)
    if not 0 < tol < 1 or max_iter < 1:
        raise ValueError(f"need 0 < tol < 1 and max_iter >= 1, got {tol}, {max_iter}")
    grid = FFTGrid.around(mask, voxel_size, margin=4, pad_fraction=pad_fraction,
                          workers=workers)
    kernel = grid.dipole(b0_direction)
    inside = grid.pad(mask, bool)
    w2 = grid.pad(mask, np.float32)
    if weight is not None:
        weight = np.asarray(weight, np.float32)
        if weight.shape != mask.shape or not np.isfinite(weight[mask]).all():
            raise ValueError("weight must be finite on the mask and shaped like the field")
        w2 = grid.pad(np.where(mask, weight, 0.0) / np.abs(weight[mask]).mean())
        w2 *= w2
    f = grid.pad(field)

    def phi(x):
        return grid.convolve(x, kernel)

    def normal(x):
        x = np.where(inside, 0.0, x).astype(np.float32, copy=False)
        y = phi(x)
        y *= w2
        y = phi(y)
        y[inside] = 0.0
        return y

    rhs = phi(w2 * f)
    rhs[inside] = 0.0
    sources, iterations = conjugate_gradient(normal, rhs, tol, max_iter)
    background = phi(sources)
    local = np.where(inside, f - background, 0.0).astype(np.float32)
    return LocalField(
        grid.unpad(local),
        mask.copy(),
        "pdf",
        {"tol": tol, "max_iter": max_iter, "pad_fraction": pad_fraction,
         "b0_direction": [float(v) for v in np.asarray(b0_direction, float)
                          / np.linalg.norm(b0_direction)],
         "weighted": weight is not None},
        {"iterations": iterations},
    )
