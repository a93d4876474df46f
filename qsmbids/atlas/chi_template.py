"""A susceptibility-contrast template made from an atlas's own labels.

No QSM template with a licence that allows redistribution exists (the chi-separation
atlas and MuSus-100 are research-only), yet the iron-rich nuclei are where a
susceptibility map has the most contrast and a T1w template the least. So qsmbids
paints one: every label of the atlas ``dseg`` gets a literature susceptibility by the
region or reference it belongs to (:data:`REGION_CHI_PPM`), labels of no listed region
get grey matter's, and the result is smoothed by a Gaussian of :data:`SMOOTHING_MM`
(the partial volume of a ~1 mm acquisition). Registration compares it with a subject's
map by local cross-correlation, which ignores offset and scale, so only the pattern
of the values matters, not their reference.

Values: the ``chi_total`` of the QSM reconstruction challenge 2.0 head phantom
(Marques et al. 2021), whose deep grey values come from in-vivo measurements; the
subthalamic nucleus, not in that phantom, gets 0.10 ppm (in-vivo 3 T reports of
0.08-0.12 ppm relative to whole brain or CSF).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from scipy import ndimage

from qsmbids.atlas.regions import bilateral_name

#: susceptibility per bilateral region or reference name, ppm
REGION_CHI_PPM: dict[str, float] = {
    "Caudate": 0.044, "Putamen": 0.038, "GlobusPallidus": 0.131, "Thalamus": 0.020,
    "SubstantiaNigra": 0.111, "RedNucleus": 0.100, "Dentate": 0.152,
    "SubthalamicNucleus": 0.100,
    "WhiteMatter": -0.030, "GreyMatter": 0.020, "CSF": 0.019,
}
#: value of labels that belong to no listed region or reference (grey matter's), ppm
OTHER_LABEL_PPM = REGION_CHI_PPM["GreyMatter"]
#: Gaussian smoothing of the painted template (standard deviation), mm
SMOOTHING_MM = 0.6
SOURCE = ("Marques JP, Meineke J, Milovic C, et al. (2021). QSM reconstruction challenge "
          "2.0: a realistic in silico head phantom for MRI data simulation and evaluation "
          "of susceptibility mapping procedures. Magn Reson Med 86(1):526-542. "
          "doi:10.1002/mrm.28716")
#: file name suffix of the template in an atlas folder (after ``tpl-<space>_``)
FILE_SUFFIX = "desc-susceptibility_Chimap.nii.gz"


def values_by_region(label_names: Mapping[int, str],
                     regions: Mapping[str, Sequence[int]],
                     references: Mapping[str, Sequence[int]],
                     table: Mapping[str, float], default: float) -> dict[int, float]:
    """A value per atlas label, by the region or reference it belongs to.

    Parameters
    ----------
    label_names
        Label number -> name (the ``dseg.tsv``); 0 is background and gets none.
    regions, references
        Region or reference name (``Caudate_L``, ``WhiteMatter``...) -> label numbers.
        Names are matched without their ``_L``/``_R`` suffix to ``table``.
    table
        Bilateral region or reference name -> value.
    default
        Value of labels that belong to no region named in ``table``.
    """
    values = {int(label): default for label in label_names if int(label) != 0}
    for sets in (regions, references):
        for name, labels in sets.items():
            value = table.get(bilateral_name(name))
            if value is not None:
                values.update({int(label): value for label in labels})
    return values


def label_susceptibility(label_names: Mapping[int, str],
                         regions: Mapping[str, Sequence[int]],
                         references: Mapping[str, Sequence[int]]) -> dict[int, float]:
    """Susceptibility (ppm) of every atlas label (:func:`values_by_region` with
    :data:`REGION_CHI_PPM`; labels of no listed region get :data:`OTHER_LABEL_PPM`)."""
    return values_by_region(label_names, regions, references, REGION_CHI_PPM,
                            OTHER_LABEL_PPM)


def paint_susceptibility(labels: np.ndarray, label_ppm: Mapping[int, float],
                         voxel_size_mm: Sequence[float], *,
                         smoothing_mm: float = SMOOTHING_MM) -> np.ndarray:
    """The template: each label's susceptibility, smoothed, zero outside the labels.

    Parameters
    ----------
    labels
        Integer label image (x, y, z); 0 outside the brain.
    label_ppm
        Label number -> ppm (:func:`label_susceptibility`); labels not in it get
        :data:`OTHER_LABEL_PPM`.
    voxel_size_mm
        Voxel edge lengths (x, y, z), mm.
    smoothing_mm
        Standard deviation of the Gaussian, mm (0: none).

    Returns
    -------
    numpy.ndarray
        float32 (x, y, z), ppm.
    """
    labels = np.asarray(labels).astype(np.int64)
    brain = labels > 0
    top = int(labels.max(initial=0))
    lut = np.full(top + 1, OTHER_LABEL_PPM, np.float32)
    lut[0] = 0.0
    for label, ppm in label_ppm.items():
        if 0 < int(label) <= top:
            lut[int(label)] = ppm
    chi = lut[labels]
    if smoothing_mm > 0:
        sigma = smoothing_mm / np.asarray(voxel_size_mm, float)
        # normalised convolution: the brain edge is not pulled towards the zero outside
        weight = ndimage.gaussian_filter(brain.astype(np.float32), sigma)
        chi = ndimage.gaussian_filter(chi, sigma) / np.maximum(weight, 1e-3)
    return np.where(brain, chi, 0.0).astype(np.float32)


def recipe(label_ppm: Mapping[int, float], *, smoothing_mm: float = SMOOTHING_MM) -> dict:
    """How the template was made, for ``atlas.json`` ``SusceptibilityTemplateRecipe``."""
    return {"Description": "atlas labels painted with literature susceptibilities by region "
                           "(labels of no listed region: grey matter), Gaussian-smoothed",
            "RegionValuesPPM": dict(REGION_CHI_PPM), "OtherLabelsPPM": OTHER_LABEL_PPM,
            "LabelValuesPPM": {str(k): v for k, v in sorted(label_ppm.items())},
            "SmoothingSigmaMM": smoothing_mm, "Source": SOURCE}
