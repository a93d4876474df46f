"""Total-variation dipole inversion by ADMM (linear FANSI; Bilgic et al., MRM 2014;
Milovic et al., MRM 2018).

Solves ``min_chi 1/2 ||W (Phi chi - f)||^2 + lam ||grad chi||_1`` (anisotropic TV) with
the splittings ``z = grad chi`` and ``y = Phi chi``. Then every sub-problem is exact:

* ``chi``: ``(mu1 |E|^2 + mu2 D^2) chi_hat = mu1 E^H F(z - u) + mu2 D F(y - v)``, diagonal
  in k-space (2 forward FFTs, the gradient adjoint is taken in image space);
* ``chi`` and ``Phi chi`` back in image space: 2 inverse FFTs;
* ``z``: soft thresholding; ``y``: a voxel-wise weighted average of data and model, so
  the data term only counts inside the mask (no fitting of the unknown field outside).

4 FFTs per iteration; both splittings are over-relaxed (default 1.5). Stops when the
relative change of ``chi`` falls below ``tol``.

With ``free_outside`` the sources outside the mask are unknowns without TV, as in total
field inversion (Liu et al., MRM 2017, doi:10.1002/mrm.26331), but starting from a
background-removed field: for a given chi inside, the best outside sources take up the
part of the residual that fields of outside sources can explain, so the problem becomes
TV inversion of the local field with that part projected out. A background removal such
as PDF leaves exactly such a part (it projects onto the same fields, and removes with the
background the local field's share that outside sources mimic); then the inside chi is no
longer bent to fit it near the mask edge.

``lam`` is in the units of the field (ppm) times mm, tuned for local fields in ppm
(the data weights are normalised to mean 1 in the mask, so weighting does not change
its scale).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from qsmbids.recon.dipole import AXIAL
from qsmbids.recon.inversion import _tv_kernels as kern
from qsmbids.recon.inversion._common import (
    DEFAULT_PAD_FRACTION,
    Susceptibility,
    finish,
    setup,
    unit_direction,
)

#: default TV weight (tuned on the head phantoms, see the benchmark/test notes)
DEFAULT_LAMBDA = 2e-4
#: TV weight per ppm of field noise (:func:`noise_adapted_lambda`)
LAMBDA_PER_NOISE = 0.2
#: default ADMM penalty of the data splitting
DEFAULT_MU_DATA = 0.1
#: default ADMM penalty of the data splitting with ``free_outside``: the free sources
#: outside need a looser data coupling to move (on qsm-forward heads at 2 mm, about 35
#: iterations reach NRMSE 37.6 % on average with 0.01, 37.7 % with 0.03, 41.1 % with
#: 0.003)
DEFAULT_MU_DATA_FREE = 0.01
#: default over-relaxation of the splittings (1: plain ADMM); 1.5 reaches the quality of
#: plain ADMM in about 40% fewer iterations on the head phantom (27 vs 44 at 1 mm)
DEFAULT_RELAXATION = 1.5
#: default relative-update tolerance (with the default over-relaxation)
DEFAULT_TOL = 5e-2
#: default tolerance with ``free_outside``, where the update is measured over the mask
#: only (the outside sources are not part of the map): about 35 iterations at 2 mm, 30 at
#: 1 mm; 1e-2 takes 50-70 for 1 point of NRMSE on qsm-forward heads (36.8 vs 37.6 %)
DEFAULT_TOL_FREE = 2e-2
#: default iteration cap
DEFAULT_MAX_ITER = 150


def noise_adapted_lambda(noise_ppm: float) -> float:
    """TV weight for a local field whose noise standard error is ``noise_ppm`` (median
    over the mask): ``max(DEFAULT_LAMBDA, LAMBDA_PER_NOISE * noise_ppm)``.

    Measured on qsm-forward heads (benchmarks/bench_accuracy.py, 2 mm, 3 T), the NRMSE-
    optimal weight grows with the noise: 2e-4 at 0.0011 ppm (4 echoes, SNR 80), 5e-4 to
    1e-3 at 0.0028 ppm (SNR 30), 2e-3 or more at 0.0045 ppm (2 echoes of 2.3/4.6 ms). A
    factor of 0.2 keeps the default where it was tuned and follows the noisier cases
    (NRMSE 67 -> 62 % at SNR 30, 133 -> 91 % with 2 echoes), with less of the nuclei
    flattening that larger weights bring.
    """
    if not np.isfinite(noise_ppm) or noise_ppm <= 0:
        return DEFAULT_LAMBDA
    return max(DEFAULT_LAMBDA, LAMBDA_PER_NOISE * float(noise_ppm))


def tv_admm(
    field: np.ndarray,
    mask: np.ndarray,
    voxel_size: Sequence[float] = (1.0, 1.0, 1.0),
    b0_direction: Sequence[float] = AXIAL,
    *,
    lam: float = DEFAULT_LAMBDA,
    weight: np.ndarray | None = None,
    gradient_weight: np.ndarray | None = None,
    mu_gradient: float | None = None,
    mu_data: float | None = None,
    relaxation: float = DEFAULT_RELAXATION,
    free_outside: bool = False,
    tol: float | None = None,
    max_iter: int = DEFAULT_MAX_ITER,
    pad_fraction: float = DEFAULT_PAD_FRACTION,
    workers: int | None = None,
) -> Susceptibility:
    """TV-regularised dipole inversion (ADMM).

    Parameters
    ----------
    field
        Local field in ppm, (x, y, z).
    mask
        Mask the local field is valid on, (x, y, z).
    voxel_size
        mm along (x, y, z).
    b0_direction
        B0 direction in the voxel frame.
    lam
        TV weight.
    weight
        Data weight W (e.g. magnitude or inverse field noise), (x, y, z); default 1 in
        the mask. Normalised to mean 1 in the mask; 0 outside.
    gradient_weight
        Optional per-voxel TV weight (x, y, z) or per-direction (3, x, y, z), e.g.
        :func:`qsmbids.recon.inversion.morphology.morphology_weight` (MEDI-style: 0 on
        edges of the magnitude so they are not smoothed).
    mu_gradient
        ADMM penalty of the gradient splitting (default ``100 * lam``).
    mu_data
        ADMM penalty of the data splitting (default :data:`DEFAULT_MU_DATA`, or
        :data:`DEFAULT_MU_DATA_FREE` with ``free_outside``).
    relaxation
        Over-relaxation factor ``alpha`` in [1, 2) of both splittings (Eckstein and
        Bertsekas): the constraints use ``alpha * (new) + (1 - alpha) * (old split
        variable)``; 1 is plain ADMM.
    free_outside
        Leave chi outside the mask (and the differences that cross its edge) without TV,
        so that sources outside can take up what background removal left of the
        background field; otherwise that residual, which is harmonic in the mask, is
        fitted by chi just inside the edge (a bias there and in edge-near nuclei such as
        the dentate). Use it for a local field from background removal (whole pipeline
        on eight qsm-forward heads at 2 mm: NRMSE 46.6-57.8 -> 31.2-47.9 %, worst nucleus
        0.035 -> 0.029 ppm; PDF local field of the own 1 mm phantom: 47.4 -> 33.6 %); not
        for an exact local field, whose edge-near part outside sources would then take
        up (own 2 mm phantom, true local field: 18.8 -> 34.4 %). False (default): TV on
        the whole padded grid.
    tol
        Stop when ``||chi_k - chi_{k-1}|| / ||chi_k||`` falls below ``tol`` (default
        :data:`DEFAULT_TOL`); with ``free_outside`` it is measured over the mask
        (default :data:`DEFAULT_TOL_FREE`).
    max_iter
        Iteration cap.
    pad_fraction
        Zero padding of the mask's bounding box.
    workers
        Threads for ``scipy.fft``.

    Returns
    -------
    Susceptibility
        ``info`` holds ``iterations`` and the last ``relative_update``.
    """
    if mu_data is None:
        mu_data = DEFAULT_MU_DATA_FREE if free_outside else DEFAULT_MU_DATA
    if tol is None:
        tol = DEFAULT_TOL_FREE if free_outside else DEFAULT_TOL
    if not lam > 0 or not tol > 0 or max_iter < 1 or not mu_data > 0:
        raise ValueError(f"need lam > 0, tol > 0, max_iter >= 1, mu_data > 0; got "
                         f"{lam}, {tol}, {max_iter}, {mu_data}")
    if not 1 <= relaxation < 2:
        raise ValueError(f"relaxation must be in [1, 2), got {relaxation}")
    relax = np.float32(relaxation)
    mu1 = np.float32(100.0 * lam if mu_gradient is None else mu_gradient)
    mu2 = np.float32(mu_data)
    f, inside, grid = setup(field, mask, voxel_size, pad_fraction, workers)
    vs = grid.voxel_size
    w2 = inside.astype(np.float32)
    if weight is not None:
        weight = np.asarray(weight, np.float32)
        if weight.shape != grid.full_shape or not np.isfinite(weight[grid.unpad(inside)]).all():
            raise ValueError("weight must be finite on the mask and shaped like the field")
        w2 = grid.pad(np.abs(weight))
        w2[~inside] = 0.0
        w2 /= w2[inside].mean()
        w2 *= w2
    threshold = np.float32(lam / mu1)
    tw, use_tw = kern.no_weight(), False
    if gradient_weight is not None:
        gw = np.asarray(gradient_weight, np.float32)
        if gw.shape == grid.full_shape:
            gw = grid.pad(gw, fill=1.0)
        elif gw.shape == (3, *grid.full_shape):
            gw = np.stack([grid.pad(g, fill=1.0) for g in gw])
        else:
            raise ValueError(f"gradient_weight shape {gw.shape} is neither (x, y, z) nor "
                             f"(3, x, y, z) of the field {grid.full_shape}")
        tw = np.ascontiguousarray(np.broadcast_to(gw, (3, *grid.shape)), np.float32)
        use_tw = True

    kernel = grid.dipole(b0_direction)
    denominator = mu1 * grid.laplacian() + mu2 * kernel * kernel
    denominator[0, 0, 0] = 1.0  # chi's mean is not determined: keep it at 0
    inv_den = np.float32(1.0) / denominator
    inv_den[0, 0, 0] = 0.0
    del denominator
    w2f = w2 * f  # W^2 f
    inv_w = np.float32(1.0) / (w2 + mu2)
    del w2
    inv_dx = np.asarray([1.0 / dx for dx in vs], np.float32)

    inside_u8 = inside.view(np.uint8) if inside.dtype == np.bool_ else inside.astype(np.uint8)
    chi_old = np.zeros(grid.shape, np.float32)
    u = np.zeros((3, *grid.shape), np.float32)
    d = np.zeros_like(u)  # z - u
    v = np.zeros(grid.shape, np.float32)
    e = mu2 * f  # mu2 (y - v), with y = f to start
    reg = np.empty(grid.shape, np.float32)
    update = np.inf
    iteration = 0
    with kern.numba_threads(workers):
        for iteration in range(1, max_iter + 1):  # noqa: B007 - reported below
            spectrum = grid.rfft(kern.gradient_adjoint_scaled(d, inv_dx, mu1, reg))
            data_spec = grid.rfft(e)
            kern.combine_spectra(spectrum, data_spec, kernel, inv_den)
            chi = grid.irfft(spectrum)
            model = grid.irfft(data_spec)  # Phi chi
            del spectrum, data_spec
            change, norm = kern.tv_update(chi, chi_old, inv_dx, u, d, threshold, tw, use_tw,
                                          relax, inside_u8, free_outside)
            kern.data_update(model, v, e, w2f, inv_w, mu2, relax)
            update = float(np.sqrt(change / norm)) if norm > 0 else 0.0
            chi_old = chi
            if update < tol:
                break
    return finish(chi_old, inside, grid, mask, "tv",
                  {"lam": float(lam), "mu_gradient": float(mu1), "mu_data": float(mu2),
                   "relaxation": float(relaxation), "free_outside": bool(free_outside),
                   "tol": tol, "max_iter": max_iter,
                   "pad_fraction": pad_fraction,
                   "weighted": weight is not None,
                   "gradient_weighted": gradient_weight is not None,
                   "b0_direction": unit_direction(b0_direction)},
                  {"iterations": iteration, "relative_update": update})
