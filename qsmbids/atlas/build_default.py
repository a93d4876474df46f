"""Build the default MNI152NLin2009cAsym deep-grey-matter atlas from its original files.

Sources (read from a folder laid out as ``shared/atlases``; nothing is downloaded):

* template: CIT168 T1w brain resampled to MNI152NLin2009cAsym (1 mm);
* CIT168 deterministic labels (2009cAsym): caudate, putamen, GPe+GPi, SNc(+PBP+VTA)
  and SNr, red nucleus, and the other CIT168 nuclei (kept, unused by default);
* thalamus: Melbourne subcortex (Tian) S1 pTHA+aTHA. Chosen over AAL3 because it
  is defined natively in MNI152NLin2009cAsym (AAL3 is on the Colin27-like SPM
  "MNI" template and would need its own registration) and its licence only
  requires citation (AAL3's is unstated upstream). It is 2 mm, so it is brought
  onto the template grid with ANTs ``genericLabel`` interpolation (smooth
  per-label interpolation, not blocky nearest neighbour);
* dentate: Diedrichsen 2009 labels 29/30, defined in MNI152NLin6AsymC. Their
  template (``tpl-MNI152NLin6AsymC_T1w``: cerebellum and brainstem only) and the
  2009cAsym template are registered ONCE (Rigid+Affine+SyN, metric restricted to
  the cerebellar footprint) and the labels are warped with ``genericLabel``.

Reference regions: a 3-class k-means (ANTs) of the template T1w inside its brain
mask gives CSF, grey and white matter; they fill only voxels no nucleus claims.

Label numbers of the combined ``dseg``: CIT168 numbers unchanged (1-16 left,
101-116 right), thalamus 17/18 (aTHA/pTHA left) and 117/118 (right), dentate
19/119, references 250 CSF, 251 GreyMatter, 252 WhiteMatter.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import ants
import nibabel as nib
import numpy as np

from qsmbids.atlas.model import Atlas, write_atlas
from qsmbids.registration.antsio import from_ants, itk_threads

SPACE = "MNI152NLin2009cAsym"
NAME = "qsmbidsDGM"
ENV_SHARED_ATLASES = "QSMBIDS_SHARED_ATLASES"

SOURCE_FILES = {
    "template": "tpl-MNI152NLin2009cAsym_desc-brain_T1w.nii.gz",
    "cit168": "tpl-MNI152NLin2009cAsym_atlas-CIT168_dseg.nii.gz",
    "tian": "tpl-MNI152NLin2009cAsym_res-02_atlas-TianS1_dseg.nii.gz",
    "suit_template": "tpl-MNI152NLin6AsymC_T1w.nii.gz",
    "suit_labels": "tpl-MNI152NLin6AsymC_atlas-Diedrichsen2009_dseg.nii.gz",
}

#: CIT168 label numbers and names (its deterministic label file has no table of its own)
CIT168_LABELS: dict[int, str] = {
    1: "Pu_LH",
    2: "Ca_LH",
    3: "NAC_LH",
    4: "EXA_LH",
    5: "GPe_LH",
    6: "GPi_LH",
    7: "SNc_PBP_VTA_LH",
    8: "RN_LH",
    9: "SNr_LH",
    12: "VeP_LH",
    13: "HN_LH",
    14: "HTH_LH",
    15: "MN_LH",
    16: "STH_LH",
    101: "Pu_RH",
    102: "Ca_RH",
    103: "NAC_RH",
    104: "EXA_RH",
    105: "GPe_RH",
    106: "GPi_RH",
    107: "SNc_PBP_VTA_RH",
    108: "RN_RH",
    109: "SNr_RH",
    112: "VeP_RH",
    113: "HN_RH",
    114: "HTH_RH",
    115: "MN_RH",
    116: "STH_RH",
}
#: Tian S1 label -> combined label (line N of the S1 list is label N)
TIAN_THALAMUS = {12: (17, "aTHA_LH"), 11: (18, "pTHA_LH"),
                 4: (117, "aTHA_RH"), 3: (118, "pTHA_RH")}
#: Diedrichsen 2009 label -> combined label
DIEDRICHSEN_DENTATE = {29: (19, "Dentate_LH"), 30: (119, "Dentate_RH")}
#: k-means class (1 darkest) -> combined reference label
TISSUE = {1: (250, "CSF"), 2: (251, "GreyMatter"), 3: (252, "WhiteMatter")}

DEFAULT_ATLAS_REGIONS = {
    "Caudate_L": [2], "Caudate_R": [102],
    "Putamen_L": [1], "Putamen_R": [101],
    "GlobusPallidus_L": [5, 6], "GlobusPallidus_R": [105, 106],
    "Thalamus_L": [17, 18], "Thalamus_R": [117, 118],
    "SubstantiaNigra_L": [7, 9], "SubstantiaNigra_R": [107, 109],
    "RedNucleus_L": [8], "RedNucleus_R": [108],
    "Dentate_L": [19], "Dentate_R": [119],
    "SubthalamicNucleus_L": [16], "SubthalamicNucleus_R": [116],
}
DEFAULT_ATLAS_REFERENCES = {"CSF": [250], "GreyMatter": [251], "WhiteMatter": [252]}

CITATIONS = (
    "Pauli WM, Nili AN, Tyszka JM (2018). A high-resolution probabilistic in vivo atlas of "
    "human subcortical brain nuclei. Sci Data 5:180063. doi:10.1038/sdata.2018.63",
    "Tian Y, Margulies DS, Breakspear M, Zalesky A (2020). Topographic organization of the "
    "human subcortex unveiled with functional connectivity gradients. Nat Neurosci "
    "23:1421-1432. doi:10.1038/s41593-020-00711-6",
    "Diedrichsen J, Balsters JH, Flavell J, Cussans E, Ramnani N (2009). A probabilistic MR "
    "atlas of the human cerebellum. NeuroImage 46(1):39-46. "
    "doi:10.1016/j.neuroimage.2009.01.045",
    "Fonov V, Evans AC, Botteron K, et al. (2011). Unbiased average age-appropriate atlases "
    "for pediatric studies. NeuroImage 54(1):313-327. doi:10.1016/j.neuroimage.2010.07.033",
)
LICENSE = (
    "CIT168: CC BY 4.0. Melbourne subcortex atlas (Tian S1): citation required. "
    "Diedrichsen 2009 cerebellar atlas: CC BY-NC 3.0 (non-commercial use only); the "
    "combined atlas therefore carries the non-commercial restriction."
)


@dataclass(frozen=True)
class DentateRegistrationQC:
    """How well the NLin6AsymC template was brought onto the 2009cAsym template.

    Correlations (Pearson r, over the cerebellum+brainstem footprint of the
    NLin6AsymC template) of the NLin6AsymC template with the 2009cAsym template
    ``identity`` (assumed equal) and ``registered``.
    """

    identity: float
    registered: float
    elapsed_s: float


def shared_atlases_dir() -> Path:
    """Folder of the reference atlas files: ``$QSMBIDS_SHARED_ATLASES``, else
    ``shared/atlases`` beside the repository."""
    env = os.environ.get(ENV_SHARED_ATLASES)
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2].parent / "shared" / "atlases"


def check_sources(source_dir: str | os.PathLike) -> dict[str, Path]:
    """Paths of the source files; raise FileNotFoundError naming every missing one."""
    source_dir = Path(source_dir)
    paths = {k: source_dir / v for k, v in SOURCE_FILES.items()}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise FileNotFoundError(
            f"default atlas sources missing in {source_dir}: {', '.join(missing)} "
            "(run 'qsmbids atlas fetch' or point --atlas-dir at a built atlas)"
        )
    return paths


def _labels_onto(labels: ants.ANTsImage, reference: ants.ANTsImage) -> np.ndarray:
    out = ants.resample_image_to_target(labels, reference, interp_type="genericLabel")
    return np.rint(out.numpy()).astype(np.int16)


def _register_suit(template: ants.ANTsImage, suit_t1: ants.ANTsImage, seed: int,
                   work_dir: str) -> tuple[list[str], list[bool], DentateRegistrationQC]:
    """Register the 2009cAsym template onto the NLin6AsymC cerebellar template.

    The NLin6AsymC image holds only cerebellum and brainstem (zero elsewhere), so
    it is the fixed image and its non-zero footprint is the metric mask; the
    2009cAsym template moves (Rigid+Affine+SyN, Mattes MI, identity start: the
    two spaces differ by a few mm only). The inverse transforms then bring the
    Diedrichsen labels onto the 2009cAsym grid.

    Returns
    -------
    transforms, invert flags (NLin6AsymC labels -> template grid), QC
    """
    t0 = time.perf_counter()
    spacing = max(template.spacing)
    fixed = suit_t1
    if spacing > min(suit_t1.spacing) + 1e-6:
        fixed = ants.resample_image(suit_t1, (spacing,) * 3, use_voxels=False, interp_type=0)
    # the footprint excludes the faint rim left by the original masking
    inside = fixed.numpy() > 0.02 * float(fixed.numpy().max())
    fixed_mask = fixed.new_image_like(inside.astype(np.float32))
    ants.config._random_seed = seed
    try:
        reg = ants.registration(
            fixed=fixed, moving=template, type_of_transform="SyNRA", mask=fixed_mask,
            initial_transform="Identity", aff_metric="mattes", syn_metric="mattes",
            reg_iterations=(40, 20, 10), outprefix=str(Path(work_dir) / "tpl_to_suit_"),
        )
    finally:
        ants.config._random_seed = None
    f = fixed.numpy()[inside]
    ident = ants.resample_image_to_target(template, fixed, interp_type="linear").numpy()[inside]
    warped = reg["warpedmovout"].numpy()[inside]
    qc = DentateRegistrationQC(
        identity=float(np.corrcoef(f, ident)[0, 1]),
        registered=float(np.corrcoef(f, warped)[0, 1]),
        elapsed_s=time.perf_counter() - t0,
    )
    inv = reg["invtransforms"]
    return inv, [str(x).endswith(".mat") for x in inv], qc


def build_default_atlas(
    out_dir: str | os.PathLike,
    source_dir: str | os.PathLike | None = None,
    *,
    resolution_mm: float = 1.0,
    n_threads: int = 1,
    seed: int = 20260101,
) -> tuple[Atlas, DentateRegistrationQC]:
    """Build the default atlas folder from the original files, offline.

    Parameters
    ----------
    out_dir
        Folder to write the atlas into (shared layout, see :mod:`qsmbids.atlas.model`).
    source_dir
        Folder with the original files (default: :func:`shared_atlases_dir`).
    resolution_mm
        Isotropic voxel size of the atlas grid; 1.0 keeps the template grid
        (165x198x168), larger values (e.g. 2.0 for fast tests) resample it.
    n_threads
        ITK threads for the one registration and the resampling.
    seed
        ANTs random seed (the build is repeatable for a given thread count).

    Returns
    -------
    (Atlas, DentateRegistrationQC)
    """
    src = check_sources(source_dir if source_dir is not None else shared_atlases_dir())
    with itk_threads(n_threads):
        template = ants.image_read(str(src["template"]), pixeltype="float")
        if resolution_mm != 1.0:
            template = ants.resample_image(template, (resolution_mm,) * 3, use_voxels=False,
                                           interp_type=0)
        brain = template.new_image_like((template.numpy() > 0).astype(np.float32))
        labels = np.zeros(template.shape, dtype=np.int16)
        names: dict[int, str] = {}

        cit = ants.image_read(str(src["cit168"]), pixeltype="float")
        cit_lab = _labels_onto(cit, template)
        labels[:] = cit_lab
        names.update(CIT168_LABELS)

        tian = _labels_onto(ants.image_read(str(src["tian"]), pixeltype="float"), template)
        for tian_label, (new, name) in TIAN_THALAMUS.items():
            labels[(tian == tian_label) & (labels == 0)] = new
            names[new] = name

        suit_t1 = ants.image_read(str(src["suit_template"]), pixeltype="float")
        suit_lab = ants.image_read(str(src["suit_labels"]), pixeltype="float")
        with tempfile.TemporaryDirectory(prefix="qsmbids_atlas_") as work_dir:
            transforms, invert, qc = _register_suit(template, suit_t1, seed, work_dir)
            dentate = ants.apply_transforms(template, suit_lab, transforms,
                                            interpolator="genericLabel", whichtoinvert=invert)
        dentate = np.rint(dentate.numpy()).astype(np.int16)
        for src_label, (new, name) in DIEDRICHSEN_DENTATE.items():
            labels[(dentate == src_label) & (labels == 0)] = new
            names[new] = name

        tissue = ants.kmeans_segmentation(template, k=3, kmask=brain)["segmentation"].numpy()
        for cls, (new, name) in TISSUE.items():
            labels[(np.rint(tissue) == cls) & (labels == 0)] = new
            names[new] = name
        labels[brain.numpy() == 0] = 0

        tpl_img = from_ants(template, np.float32)
        lab_img = nib.Nifti1Image(labels, tpl_img.affine)
        mask_img = nib.Nifti1Image(brain.numpy().astype(np.uint8), tpl_img.affine)
    atlas = write_atlas(
        out_dir, name=NAME, space=SPACE, template=tpl_img, labels=lab_img,
        label_names=names, regions=DEFAULT_ATLAS_REGIONS, references=DEFAULT_ATLAS_REFERENCES,
        template_mask=mask_img, license=LICENSE, citation=CITATIONS,
        extra={
            "ResolutionMM": resolution_mm,
            "Sources": {k: v for k, v in SOURCE_FILES.items()},
            "DentateRegistration": {
                "From": "MNI152NLin6AsymC", "To": SPACE, "Method": "ANTs SyNRA, CC",
                "CorrelationIdentity": round(qc.identity, 4),
                "CorrelationRegistered": round(qc.registered, 4),
            },
        },
    )
    return atlas, qc
