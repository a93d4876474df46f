"""Template -> subject registration (antspyx) and warping of labels and maps."""

from qsmbids.registration.core import (
    PRESETS,
    SCHEDULES,
    RegistrationResult,
    RegistrationSettings,
    TransformChain,
    apply_transforms,
    combine_echoes,
    metric_for_contrasts,
    prepare_target,
    register_template_to_subject,
    warp_labels_to_subject,
    warp_to_template,
)

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
