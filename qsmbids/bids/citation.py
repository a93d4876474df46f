"""Methods boilerplate (``OUTPUT_DIR/CITATION.md``) describing the chosen settings."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from qsmbids import __version__

if TYPE_CHECKING:
    from qsmbids.workflows.settings import Settings

_UNWRAP = {
    "romeo": "a quality-guided region-growing unwrapper in the spirit of ROMEO "
             "(Dymerska et al., MRM 2021; doi:10.1002/mrm.28563)",
    "laplacian": "Laplacian unwrapping (Schofield and Zhu, Opt Lett 2003; "
                 "doi:10.1364/OL.28.001194)",
}
_BG = {
    "vsharp": "V-SHARP (Wu et al., MRM 2012; doi:10.1002/mrm.23000)",
    "pdf": "projection onto dipole fields, PDF (Liu et al., NMR Biomed 2011; "
           "doi:10.1002/nbm.1670)",
    "lbv": "Laplacian boundary value, LBV (Zhou et al., NMR Biomed 2014; doi:10.1002/nbm.3064)",
    "resharp": "RESHARP (Sun and Wilman, MRM 2014; doi:10.1002/mrm.24765)",
}
_INV = {
    "tv": "total-variation regularised inversion solved with ADMM (Bilgic et al., MRM 2014; "
          "doi:10.1002/mrm.25029), with the susceptibility outside the brain mask left "
          "unregularised so that it takes up the residual background field, as in total "
          "field inversion (Liu et al., MRM 2017; doi:10.1002/mrm.26331)",
    "tkd": "thresholded k-space division, TKD (Shmueli et al., MRM 2009; "
           "doi:10.1002/mrm.22135)",
    "tikhonov": "closed-form Tikhonov-regularised inversion (Bilgic et al., MRM 2014)",
    "rts": "rapid two-step inversion, RTS (Kames et al., NeuroImage 2018; "
           "doi:10.1016/j.neuroimage.2017.11.018)",
}
_REF = {"wholebrain": "the mean susceptibility of the whole brain mask",
        "csf": "the mean susceptibility of cerebrospinal fluid",
        "none": "no reference region (the mean is arbitrary)"}


def methods_boilerplate(settings: Settings, atlas_dir: Path | None = None) -> str:
    """Markdown paragraph describing the processing, with references, for CITATION.md."""
    lines = [
        "# Methods",
        "",
        f"Quantitative susceptibility maps were computed with qsmbids {__version__} "
        "(https://github.com/qsmbids/qsmbids), following the ISMRM consensus "
        "recommendations for QSM (QSM Consensus Organization Committee, MRM 2024; "
        "doi:10.1002/mrm.30006). Phase images were converted to radians, a brain mask "
        "was computed from the echo-combined magnitude, the echo-independent phase offset "
        "was removed (MCPC-3D-S; Eckstein et al., MRM 2018; doi:10.1002/mrm.26963), the "
        f"phase was unwrapped with {_UNWRAP[settings.unwrapping]}, and the echoes were "
        "combined by a magnitude-weighted least-squares fit of phase against echo time. "
        f"The background field was removed with {_BG[settings.bg_removal]}; the dipole "
        f"inversion used {_INV[settings.inversion]}, with the B0 direction taken from each "
        f"image's orientation. Susceptibility is reported in ppm relative to "
        f"{_REF[settings.reference]}. R2* and T2* maps were fitted to the magnitudes.",
    ]
    if atlas_dir is not None:
        lines += [
            "",
            f"Regional values were computed in the native space after registering the "
            f"atlas template to each subject with ANTs SyN (Avants et al., Med Image Anal "
            f"2008; doi:10.1016/j.media.2007.06.004; {settings.registration} preset)"
            + (". The deep grey nuclei were then refined by a second SyN around them that "
               "matched, at 1 mm, a susceptibility template painted from the atlas labels "
               "with the values of the QSM challenge 2.0 phantom (Marques et al., MRM 2021; "
               "doi:10.1002/mrm.28716) to the subject's susceptibility map, together with "
               "the anatomy, as dual-contrast QSM/T1w registration of nuclei is the more "
               "accurate (Li et al., NeuroImage 2019; "
               "doi:10.1016/j.neuroimage.2019.02.016)."
               if settings.registration_contrast == "anatomy+chi" else "."),
        ]
        citation = Path(atlas_dir) / "atlas.json"
        if citation.is_file():
            import json

            refs = json.loads(citation.read_text()).get("Citation", [])
            if refs:
                lines += ["", "Atlas references:", ""] + [f"- {r}" for r in refs]
    lines += [
        "",
        "Software: nipype (Gorgolewski et al., Front Neuroinform 2011; "
        "doi:10.3389/fninf.2011.00013), pybids (Yarkoni et al., JOSS 2019; "
        "doi:10.21105/joss.01294), nibabel, NumPy, SciPy, scikit-image and ANTsPy.",
        "",
    ]
    return "\n".join(lines)
