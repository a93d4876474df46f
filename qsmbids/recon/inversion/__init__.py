"""Dipole inversion: susceptibility (ppm) from the local field (ppm).

Every method takes ``(field, mask, voxel_size, b0_direction, ...)`` with keyword-only
parameters, builds the dipole kernel for the true B0 direction on a zero-padded grid
around the mask, and returns a :class:`Susceptibility`. Methods are registered by
command-line name in :data:`INVERSION_METHODS`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence

import numpy as np

from qsmbids.recon.dipole import AXIAL
from qsmbids.recon.inversion._common import Susceptibility
from qsmbids.recon.inversion.morphology import morphology_weight
from qsmbids.recon.inversion.rts import rts
from qsmbids.recon.inversion.tikhonov import tikhonov
from qsmbids.recon.inversion.tkd import tkd
from qsmbids.recon.inversion.tv_admm import tv_admm
from qsmbids.recon.registry import METHODS

#: command-line name -> function, for the inversions of the registry
#: (:mod:`qsmbids.recon.registry`, where each is named once)
INVERSION_METHODS: dict[str, Callable[..., Susceptibility]] = {
    spec.name: getattr(importlib.import_module(spec.module), spec.function)
    for spec in METHODS if spec.step == "inversion"}
#: default method. From the true local field of the 1 mm head phantom: TV NRMSE 19%, XSIM
#: 0.93, nuclei within 0.007 ppm; TKD 47% / 0.36 / 0.026; RTS 40% / 0.39 / 0.020;
#: closed-form Tikhonov 52% / 0.39 / 0.034 (benchmarks/bench_background_inversion.py).
DEFAULT_INVERSION_METHOD = next(iter(INVERSION_METHODS))  # the registry's first: "tv"


def invert_dipole(
    field: np.ndarray,
    mask: np.ndarray,
    voxel_size: Sequence[float] = (1.0, 1.0, 1.0),
    b0_direction: Sequence[float] = AXIAL,
    method: str = DEFAULT_INVERSION_METHOD,
    *,
    workers: int | None = None,
    **parameters,
) -> Susceptibility:
    """Run the inversion ``method`` (a key of :data:`INVERSION_METHODS`).

    ``parameters`` are passed on as keyword arguments of that method.
    """
    if method not in INVERSION_METHODS:
        raise ValueError(f"unknown inversion method {method!r}; choose one of "
                         f"{sorted(INVERSION_METHODS)}")
    return INVERSION_METHODS[method](field, mask, voxel_size, b0_direction, workers=workers,
                                     **parameters)


__all__ = ["DEFAULT_INVERSION_METHOD", "INVERSION_METHODS", "Susceptibility", "invert_dipole",
           "morphology_weight", "rts", "tikhonov", "tkd", "tv_admm"]
