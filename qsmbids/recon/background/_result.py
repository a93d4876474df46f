"""The result type shared by the background-field removal methods."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class LocalField:
    """A local (tissue) field and the mask it is valid on.

    Attributes
    ----------
    local_field
        Local field in ppm (relative to B0), float32, (x, y, z); 0 outside ``mask``.
    mask
        bool, (x, y, z): where ``local_field`` is valid (the input mask, eroded by the
        method where it needs to).
    method
        Method name as registered in :data:`qsmbids.recon.background.BACKGROUND_METHODS`.
    parameters
        The parameters used (JSON-serialisable), for provenance sidecars.
    info
        Diagnostics (iterations, final residual, ...), JSON-serialisable.
    """

    local_field: np.ndarray
    mask: np.ndarray
    method: str
    parameters: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)
