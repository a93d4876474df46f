"""Adapters from command-line method names to the :mod:`qsmbids.recon` functions.

Every background method is called as ``f(field_ppm, mask, voxel_size, b0_direction,
workers=n) -> LocalField`` and every inversion as the same with the local field,
returning ``Susceptibility``; the recon modules differ slightly (V-SHARP needs no
B0 direction), which is absorbed here.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import numpy as np

#: CLI name -> (module, function) in qsmbids.recon.background
_BACKGROUND = {
    "vsharp": ("qsmbids.recon.background.vsharp", "vsharp", False),
    "pdf": ("qsmbids.recon.background.pdf", "pdf", True),
    "resharp": ("qsmbids.recon.background.resharp", "resharp", False),
    "lbv": ("qsmbids.recon.background.lbv", "lbv", False),
}
#: CLI name -> (module, function) in qsmbids.recon.inversion
_INVERSION = {
    "tv": ("qsmbids.recon.inversion.tv_admm", "tv_admm"),
    "tkd": ("qsmbids.recon.inversion.tkd", "tkd"),
    "tikhonov": ("qsmbids.recon.inversion.tikhonov", "tikhonov"),
    "rts": ("qsmbids.recon.inversion.rts", "rts"),
}


class MethodUnavailable(RuntimeError):
    """A method chosen on the command line is not part of this build."""


def _import(module: str, name: str, method: str) -> Callable:
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        raise MethodUnavailable(
            f"method '{method}' is not available in this version of qsmbids "
            f"({module}.{name} is missing)") from None



def background_method(name: str) -> Callable[..., Any]:
    """``f(field, mask, voxel_size, b0_direction, *, workers)`` for a background method."""
    if name not in _BACKGROUND:
        raise MethodUnavailable(f"unknown background removal method {name!r}")
    module, func, takes_b0 = _BACKGROUND[name]
    impl = _import(module, func, name)

    def run(field, mask, voxel_size, b0_direction, *, workers=None):
        if takes_b0:
            return impl(field, mask, voxel_size, b0_direction, workers=workers)
        return impl(field, mask, voxel_size, workers=workers)

    return run


def inversion_method(name: str) -> Callable[..., Any]:
    """``f(local_field, mask, voxel_size, b0_direction, *, workers)`` for an inversion."""
    if name not in _INVERSION:
        raise MethodUnavailable(f"unknown dipole inversion method {name!r}")
    return _import(*_INVERSION[name], name)


def reference_susceptibility(chi: np.ndarray, mask: np.ndarray, method: str,
                             reference_mask: np.ndarray | None = None
                             ) -> tuple[np.ndarray, dict[str, Any]]:
    """Reference a susceptibility map (ppm) to a region; return it and what was subtracted.

    ``wholebrain`` subtracts the mean over the mask, ``csf`` the mean over
    ``reference_mask`` (CSF labels of the atlas warped to the subject), ``none`` nothing
    (see :func:`qsmbids.recon.referencing.reference_susceptibility`).

    Returns
    -------
    chi, reference
        Referenced map (0 outside the mask) and ``{"Region", "Value", "Voxels",
        "Description"}`` (Value in ppm).
    """
    from qsmbids.recon.referencing import reference_susceptibility as recon_reference

    name = {"wholebrain": "whole_brain"}.get(method, method)
    if name == "csf" and reference_mask is None:
        raise MethodUnavailable("--reference csf needs an atlas with a CSF reference region "
                                "(use --atlas/--atlas-dir, or --reference wholebrain)")
    chi_ref, ref = recon_reference(chi, mask, name, reference_mask=reference_mask)
    return chi_ref, {"Region": method, "Value": ref.value_ppm, "Voxels": ref.n_voxels,
                     "Description": ref.description}
