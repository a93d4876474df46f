"""Methods boilerplate (``OUTPUT_DIR/CITATION.md``) describing the chosen settings."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from qsmbids import __version__
from qsmbids.recon.registry import method

if TYPE_CHECKING:
    from qsmbids.workflows.settings import Settings

def _cite(step: str, name: str) -> str:
    return method(step, name).citation


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
        f"phase was unwrapped with {_cite('unwrapping', settings.unwrapping)}, and the "
        "echoes were combined by a magnitude-weighted least-squares fit of phase against "
        f"echo time. The background field was removed with "
        f"{_cite('bg_removal', settings.bg_removal)}; the dipole inversion used "
        f"{_cite('inversion', settings.inversion)}, with the B0 direction taken from each "
        "image's orientation. Susceptibility is reported in ppm relative to "
        f"{_cite('reference', settings.reference)}. R2* and T2* maps were fitted to the "
        "magnitudes.",
    ]
    if atlas_dir is not None:
        lines += [
            "",
            f"Regional values were computed in the native space after registering the "
            f"atlas template to each subject with ANTs SyN (Avants et al., Med Image Anal "
            f"2008; doi:10.1016/j.media.2007.06.004; {settings.registration} preset)"
            + (". The deep grey nuclei were then refined by a second SyN around them that "
               "matched, at 1 mm, a susceptibility template painted from the atlas labels "
               "to the subject's susceptibility map, together with the anatomy; each label "
               "was painted with the median of the subject's map over its interior after "
               "the anatomical registration (labels too small to read: the values of the "
               "QSM challenge 2.0 phantom, Marques et al., MRM 2021; "
               "doi:10.1002/mrm.28716, shifted to the map's reference), as dual-contrast "
               "QSM/T1w registration of nuclei is the more "
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
