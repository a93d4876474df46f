"""The one registry of reconstruction methods: every choice of every step, defined once.

Each :class:`Method` names its command-line value, the recon function that implements
it (imported on use), what that function is called with, and the sentence that cites
it. The command line's choices, the settings' checks, the nodes' dispatch
(:mod:`qsmbids.recon.methods`) and ``CITATION.md`` (:mod:`qsmbids.bids.citation`) are
derived from :data:`METHODS`; the first method of a step is its default.

A new method is one entry here, one recon function and its test.
"""

from __future__ import annotations

from dataclasses import dataclass

#: the steps with a choice of method, in pipeline order
STEPS = ("unwrapping", "bg_removal", "inversion", "reference")


@dataclass(frozen=True)
class Method:
    """One method of one step.

    Attributes
    ----------
    step
        One of :data:`STEPS`.
    name
        Its command-line value (``--unwrapping romeo``).
    citation
        What ``CITATION.md`` says it is, with its reference.
    module, function
        The recon implementation (None: handled by the step itself, e.g. a reference).
    recon_name
        The name the recon layer knows it by, where that differs (``region-growing``).
    needs_b0
        The function takes the B0 direction (background methods differ in this).
    """

    step: str
    name: str
    citation: str
    module: str | None = None
    function: str | None = None
    recon_name: str | None = None
    needs_b0: bool = True


METHODS: tuple[Method, ...] = (
    Method("unwrapping", "romeo",
           "a quality-guided region-growing unwrapper in the spirit of ROMEO (Dymerska et "
           "al., MRM 2021; doi:10.1002/mrm.28563)", recon_name="region-growing"),
    Method("unwrapping", "laplacian",
           "Laplacian unwrapping (Schofield and Zhu, Opt Lett 2003; doi:10.1364/OL.28.001194)",
           recon_name="laplacian"),
    Method("bg_removal", "pdf",
           "projection onto dipole fields, PDF (Liu et al., NMR Biomed 2011; "
           "doi:10.1002/nbm.1670)", "qsmbids.recon.background.pdf", "pdf"),
    Method("bg_removal", "vsharp", "V-SHARP (Wu et al., MRM 2012; doi:10.1002/mrm.23000)",
           "qsmbids.recon.background.vsharp", "vsharp", needs_b0=False),
    Method("bg_removal", "resharp", "RESHARP (Sun and Wilman, MRM 2014; doi:10.1002/mrm.24765)",
           "qsmbids.recon.background.resharp", "resharp", needs_b0=False),
    Method("bg_removal", "lbv",
           "Laplacian boundary value, LBV (Zhou et al., NMR Biomed 2014; doi:10.1002/nbm.3064)",
           "qsmbids.recon.background.lbv", "lbv", needs_b0=False),
    Method("inversion", "tv",
           "total-variation regularised inversion solved with ADMM (Bilgic et al., MRM 2014; "
           "doi:10.1002/mrm.25029), with the susceptibility outside the brain mask left "
           "unregularised so that it takes up the residual background field, as in total "
           "field inversion (Liu et al., MRM 2017; doi:10.1002/mrm.26331)",
           "qsmbids.recon.inversion.tv_admm", "tv_admm"),
    Method("inversion", "tkd",
           "thresholded k-space division, TKD (Shmueli et al., MRM 2009; "
           "doi:10.1002/mrm.22135)", "qsmbids.recon.inversion.tkd", "tkd"),
    Method("inversion", "tikhonov",
           "closed-form Tikhonov-regularised inversion (Bilgic et al., MRM 2014)",
           "qsmbids.recon.inversion.tikhonov", "tikhonov"),
    Method("inversion", "rts",
           "rapid two-step inversion, RTS (Kames et al., NeuroImage 2018; "
           "doi:10.1016/j.neuroimage.2017.11.018)", "qsmbids.recon.inversion.rts", "rts"),
    Method("reference", "wholebrain", "the mean susceptibility of the whole brain mask",
           recon_name="whole_brain"),
    Method("reference", "csf", "the mean susceptibility of cerebrospinal fluid"),
    Method("reference", "none", "no reference region (the mean is arbitrary)"),
)


def names(step: str) -> tuple[str, ...]:
    """The command-line values of ``step``'s methods, the default first."""
    if step not in STEPS:
        raise ValueError(f"unknown step {step!r}; steps: {', '.join(STEPS)}")
    return tuple(m.name for m in METHODS if m.step == step)


def method(step: str, name: str) -> Method:
    """The registered method ``name`` of ``step``.

    Raises
    ------
    KeyError
        When ``step`` has no such method (the message lists those it has).
    """
    for candidate in METHODS:
        if candidate.step == step and candidate.name == name:
            return candidate
    raise KeyError(f"unknown {step} method {name!r}; choose one of {', '.join(names(step))}")
