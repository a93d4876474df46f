"""Dispatch from command-line method names to the :mod:`qsmbids.recon` functions, through
the registry (:mod:`qsmbids.recon.registry`).

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

from qsmbids.recon import registry


class MethodUnavailable(RuntimeError):
    """A method chosen on the command line is not part of this build."""


def _import(module: str, name: str, method: str) -> Callable:
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        raise MethodUnavailable(
            f"method '{method}' is not available in this version of qsmbids "
            f"({module}.{name} is missing)") from None


def _registered(step: str, name: str, what: str) -> registry.Method:
    try:
        return registry.method(step, name)
    except KeyError:
        raise MethodUnavailable(f"unknown {what} method {name!r}") from None


def background_method(name: str) -> Callable[..., Any]:
    """``f(field, mask, voxel_size, b0_direction, *, workers)`` for a background method."""
    spec = _registered("bg_removal", name, "background removal")
    impl = _import(spec.module, spec.function, name)

    def run(field, mask, voxel_size, b0_direction, *, workers=None):
        if spec.needs_b0:
            return impl(field, mask, voxel_size, b0_direction, workers=workers)
        return impl(field, mask, voxel_size, workers=workers)

    return run


def inversion_method(name: str) -> Callable[..., Any]:
    """``f(local_field, mask, voxel_size, b0_direction, *, workers)`` for an inversion."""
    spec = _registered("inversion", name, "dipole inversion")
    return _import(spec.module, spec.function, name)


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

    spec = _registered("reference", method, "reference")
    name = spec.recon_name or spec.name
    if name == "csf" and reference_mask is None:
        raise MethodUnavailable("--reference csf needs an atlas with a CSF reference region "
                                "(use --atlas/--atlas-dir, or --reference wholebrain)")
    chi_ref, ref = recon_reference(chi, mask, name, reference_mask=reference_mask)
    return chi_ref, {"Region": method, "Value": ref.value_ppm, "Voxels": ref.n_voxels,
                     "Description": ref.description}
