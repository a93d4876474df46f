"""Referencing of susceptibility maps: chi is only known up to a constant.

The dipole kernel is 0 at k = 0, so a reconstruction fixes no absolute level; maps are
reported relative to a reference region whose mean is set to 0. The default is the
whole-brain mean (over the mask); CSF (e.g. the lateral ventricles) is the common
alternative. The reference used is returned so it can be written in the sidecar.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: registered reference methods
REFERENCE_METHODS = ("whole_brain", "csf", "none")
#: default reference
DEFAULT_REFERENCE = "whole_brain"
#: fewest voxels a reference region may have
MIN_REFERENCE_VOXELS = 20


@dataclass(frozen=True)
class Reference:
    """The reference applied to a susceptibility map.

    Attributes
    ----------
    method
        One of :data:`REFERENCE_METHODS`.
    value_ppm
        Mean of the unreferenced map over the reference region (subtracted), ppm.
    n_voxels
        Voxels in the reference region.
    description
        Human-readable description for sidecars (e.g. ``"mean over the brain mask"``).
    """

    method: str
    value_ppm: float
    n_voxels: int
    description: str

    def to_sidecar(self) -> dict:
        """BIDS-sidecar-style entries describing the reference."""
        return {"SusceptibilityReference": self.method,
                "SusceptibilityReferenceDescription": self.description,
                "SusceptibilityReferenceValue": self.value_ppm,
                "SusceptibilityReferenceVoxels": self.n_voxels}


def reference_susceptibility(
    chi: np.ndarray,
    mask: np.ndarray,
    method: str = DEFAULT_REFERENCE,
    *,
    reference_mask: np.ndarray | None = None,
) -> tuple[np.ndarray, Reference]:
    """Shift ``chi`` so that its mean over the reference region is 0.

    Parameters
    ----------
    chi
        Susceptibility in ppm, (x, y, z).
    mask
        Brain mask, (x, y, z); the output is 0 outside it.
    method
        ``"whole_brain"`` (mean over ``mask``), ``"csf"`` (mean over ``reference_mask``,
        e.g. lateral ventricles from an atlas or segmentation, intersected with
        ``mask``) or ``"none"`` (no shift).
    reference_mask
        Region for ``"csf"``, (x, y, z) bool.

    Returns
    -------
    tuple[numpy.ndarray, Reference]
        Referenced chi (float32, ppm) and the reference used.
    """
    chi = np.asarray(chi)
    mask = np.asarray(mask, bool)
    if chi.shape != mask.shape:
        raise ValueError(f"chi shape {chi.shape} does not match mask shape {mask.shape}")
    if method not in REFERENCE_METHODS:
        raise ValueError(f"unknown reference {method!r}; choose one of {REFERENCE_METHODS}")
    if not mask.any():
        raise ValueError("brain mask is empty")
    if method == "none":
        region, description = None, "no referencing"
    elif method == "whole_brain":
        region, description = mask, "mean over the brain mask"
    else:
        if reference_mask is None:
            raise ValueError("reference 'csf' needs reference_mask (e.g. lateral ventricles)")
        reference_mask = np.asarray(reference_mask, bool)
        if reference_mask.shape != mask.shape:
            raise ValueError(f"reference_mask shape {reference_mask.shape} does not match "
                             f"mask shape {mask.shape}")
        region = reference_mask & mask
        description = "mean over the CSF reference region within the brain mask"
    if region is None:
        value, count = 0.0, 0
    else:
        count = int(region.sum())
        if count < MIN_REFERENCE_VOXELS:
            raise ValueError(f"reference region '{method}' has {count} voxels inside the brain "
                             f"mask; need at least {MIN_REFERENCE_VOXELS}")
        values = chi[region].astype(np.float64)
        if not np.isfinite(values).all():
            raise ValueError(f"chi has NaN/inf values in the '{method}' reference region")
        value = float(values.mean())
    out = np.where(mask, chi - value, 0.0).astype(np.float32)
    return out, Reference(method, value, count, description)
