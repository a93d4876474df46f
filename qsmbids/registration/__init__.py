"""Template -> subject registration (antspyx) and warping of labels and maps.

The names below come from :mod:`qsmbids.registration.core` on first use, so that
importing a light submodule (:mod:`~qsmbids.registration.schedules`, the presets)
does not import ANTs.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "PRESETS",
    "SCHEDULES",
    "RegistrationResult",
    "RegistrationSettings",
    "TransformChain",
    "apply_transforms",
    "combine_echoes",
    "metric_for_contrasts",
    "prepare_target",
    "register_template_to_subject",
    "warp_labels_to_subject",
    "warp_to_template",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module("qsmbids.registration.core"), name)
    raise AttributeError(f"module 'qsmbids.registration' has no attribute {name!r}")
