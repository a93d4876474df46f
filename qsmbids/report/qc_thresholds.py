"""The limits of the automatic QC checks, each with the measurement behind its value.

:func:`qsmbids.report.qc_metrics.qc_warnings` raises a flag when a metric of
:class:`qsmbids.report.qc_metrics.RunQC` breaks one of these limits. Units: ml for
volumes, ppm for susceptibility, rad for phase.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class QCThresholds:
    """Limits above/below which a QC metric raises a warning.

    Attributes
    ----------
    plausible_chi_ppm
        (low, high) susceptibility range (ppm) expected inside the brain; veins and
        calcifications exceed it in a few voxels, streaking in many.
    max_fraction_outside_range
        Largest acceptable fraction of mask voxels outside ``plausible_chi_ppm``.
    max_mask_edge_fraction
        Largest acceptable fraction of mask voxels on the outer faces of the image
        (a brain cut by the field of view, or a mask that leaked into the background).
    min_mask_volume_ml, max_mask_volume_ml
        Plausible brain-mask volume (ml) of an adult head (adult brains are about
        1100-1700 ml; the limits leave room for large heads and CSF). A mask that
        touches the image edge (a cut field of view) is only held to the upper limit.
    min_template_dice
        Smallest acceptable Dice overlap between the registered template's brain and
        the subject's brain mask (a failed registration scores far lower).
    min_registration_similarity
        Smallest acceptable registration similarity as passed in by the registration
        step (``None``: report it without judging it, its scale depends on the metric).
    max_echo_fit_residual_rad
        Largest acceptable median residual (rad) of the phase-vs-echo-time fit in the
        mask (noise of a usable scan is a few hundredths of a radian).
    max_unwrap_residual_wrap_fraction
        Largest acceptable number of wraps the unwrapping left per mask voxel
        (:func:`qsmbids.recon.unwrap.residual_wraps`).
    min_nuclei_contrast_ppm
        Smallest acceptable mean susceptibility of the iron-rich nuclei (globus pallidus,
        putamen, substantia nigra, red nucleus, dentate) above the brain median: adults
        show about 0.1 ppm; atlas labels that miss the nuclei (a failed registration)
        or a failed inversion show about 0.
    min_chi_iqr_ppm
        Smallest acceptable interquartile range of the QSM in the mask. In-vivo maps
        spread over 0.02-0.08 ppm (grey/white matter contrast, veins, nuclei; the
        QSM-challenge and in-vivo heads of the ISMRM consensus, MRM 2024); a phase read
        in the wrong units (e.g. arbitrary units taken as radians) or a failed
        inversion gives a map flat to a few thousandths, so 0.005 ppm (a quarter of the
        lowest in-vivo spread) separates them.
    max_chi_zero_fraction
        Largest acceptable fraction of mask voxels that are exactly 0 (or not finite)
        in the QSM: an inverted map is a float field with essentially no exact zeros
        inside its mask; 5 % allows a sliver of the mask outside the solver's region.
    inverted_nuclei_ppm
        The globus pallidus, substantia nigra and red nucleus (the most iron-rich
        nuclei, +0.1 to +0.2 ppm above white matter in adults) flag an inverted phase
        sign when their mean lies more than this below the reference (white matter
        when the atlas has it, else the brain median). A failed registration gives
        about 0, a sign error about -0.1 to -0.2, so -0.03 sits beyond the first.
    min_chi_tail_ratio
        The map's positive tail over its negative one
        (:func:`qsmbids.stats.qc_images.chi_tail_ratio`, 3.5-22 on real and simulated
        heads, the inverse under a flipped phase sign) below which the phase sign is
        suspect; needs no atlas.
    min_mask_largest_fraction
        Smallest acceptable share of the mask in its largest connected part: a brain
        mask is one body; a mask of many separate pieces (noise, scalp) is not.
    max_mask_box_fill
        Largest acceptable fraction of its bounding box the mask fills when it does not
        touch the image edge: an ellipsoidal head fills pi/6 = 0.52 of its box and a
        brain about 0.5-0.6; a mask that fills the box (background included) is near 1.
    min_venous_oef, max_venous_oef
        Plausible oxygen extraction fraction from the veins: 0.3-0.4 in healthy adults
        at rest (Harada et al. 2022), 0.2-0.5 in disease and at the extremes of the
        literature. Outside 0.15-0.6 the venous measurement itself is suspect: too few
        or too thin veins (coarse voxels lower their peaks), a wrong haematocrit, or a
        susceptibility map off in scale (phase units, field strength).
    """

    plausible_chi_ppm: tuple[float, float] = (-0.3, 0.5)
    max_fraction_outside_range: float = 0.01
    max_mask_edge_fraction: float = 0.001
    min_mask_volume_ml: float = 800.0
    max_mask_volume_ml: float = 2200.0
    min_template_dice: float = 0.80
    min_registration_similarity: float | None = None
    max_echo_fit_residual_rad: float = 0.3
    max_unwrap_residual_wrap_fraction: float = 0.02
    min_nuclei_contrast_ppm: float = 0.03
    min_chi_iqr_ppm: float = 0.005
    max_chi_zero_fraction: float = 0.05
    inverted_nuclei_ppm: float = -0.03
    min_chi_tail_ratio: float = 0.5
    min_venous_oef: float = 0.15
    max_venous_oef: float = 0.6
    min_mask_largest_fraction: float = 0.95
    max_mask_box_fill: float = 0.8


#: the default QC limits
DEFAULT_THRESHOLDS = QCThresholds()
