"""Background field removal: local field from the total field, with the mask it is valid on.

Methods are registered by command-line name in :data:`BACKGROUND_METHODS`; each takes
``(field, mask, voxel_size, ...)`` with keyword-only parameters and returns a
:class:`LocalField`. PDF also needs ``b0_direction``; use :func:`remove_background` to
call any of them with the B0 direction passed only where it is used.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from qsmbids.recon.background._result import LocalField
from qsmbids.recon.background.lbv import lbv
from qsmbids.recon.background.pdf import pdf
from qsmbids.recon.background.resharp import resharp
from qsmbids.recon.background.vsharp import default_radii, mask_depth_mm, vsharp
from qsmbids.recon.dipole import AXIAL

#: command-line name -> function
BACKGROUND_METHODS: dict[str, Callable[..., LocalField]] = {
    "vsharp": vsharp,
    "pdf": pdf,
    "resharp": resharp,
    "lbv": lbv,
}
#: methods whose model needs the B0 direction
NEEDS_B0_DIRECTION = frozenset({"pdf"})
#: default method. Measured on the head phantom (benchmarks/bench_background_inversion.py,
#: tests/test_background.py): PDF leaves 1.0% of the background energy at 1 mm (V-SHARP
#: 3.6%, RESHARP 2.2%), keeps the whole mask (V-SHARP 96%, RESHARP 83%), and after TV the
#: basal-ganglia nuclei are within 0.005 ppm (V-SHARP 0.016) for similar CPU time.
DEFAULT_BACKGROUND_METHOD = "pdf"


def remove_background(
    field: np.ndarray,
    mask: np.ndarray,
    voxel_size: Sequence[float] = (1.0, 1.0, 1.0),
    b0_direction: Sequence[float] = AXIAL,
    method: str = DEFAULT_BACKGROUND_METHOD,
    *,
    workers: int | None = None,
    **parameters,
) -> LocalField:
    """Run the background removal ``method`` (a key of :data:`BACKGROUND_METHODS`).

    ``parameters`` are passed on as keyword arguments of that method.
    """
    if method not in BACKGROUND_METHODS:
        raise ValueError(f"unknown background method {method!r}; choose one of "
                         f"{sorted(BACKGROUND_METHODS)}")
    if method in NEEDS_B0_DIRECTION:
        parameters["b0_direction"] = b0_direction
    return BACKGROUND_METHODS[method](field, mask, voxel_size, workers=workers, **parameters)


__all__ = ["BACKGROUND_METHODS", "DEFAULT_BACKGROUND_METHOD", "LocalField", "default_radii",
           "lbv", "mask_depth_mm", "pdf", "remove_background", "resharp", "vsharp"]
