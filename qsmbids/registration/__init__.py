"""Template -> subject registration (antspyx) and warping of labels and maps."""

from qsmbids.registration.core import (
    PRESETS,
    RegistrationResult,
    RegistrationSettings,
    TransformChain,
    apply_transforms,
    combine_echoes,
    prepare_target,
    register_template_to_subject,
    warp_labels_to_subject,
    warp_to_template,
)

__all__ = [
    "PRESETS",
    "RegistrationResult",
    "RegistrationSettings",
    "TransformChain",
    "apply_transforms",
    "combine_echoes",
    "prepare_target",
    "register_template_to_subject",
    "warp_labels_to_subject",
    "warp_to_template",
]
