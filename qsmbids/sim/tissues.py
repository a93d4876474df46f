"""Tissue labels, susceptibility, M0 and R2* per tissue, and the age model of the deep nuclei.

Susceptibility (ppm, relative to water/CSF) follows the QSM challenge 2.0 phantom and
in-vivo 3 T ranges (REFERENCE.md section 4). The deep-grey-matter values change with
age like the non-haem iron of Hallgren & Sourander (J Neurochem 1958): a fast rise in
childhood towards a plateau, ``chi(age) = c0 + A (1 - exp(-age / tau)) + s * age``,
with a late decline term for the thalamus. At 40 years the values sit in the middle
of the in-vivo ranges (GP 0.17, SN 0.13, RN 0.10, dentate 0.09, putamen 0.06,
caudate 0.06, thalamus 0.03 ppm).

R2* (1/s) is given at 3 T; for the iron-rich nuclei it follows the iron (``15 + 150 *
chi``, about the in-vivo R2*-chi slope at 3 T); :func:`r2star_at_field` scales it
linearly with B0 (R2* of tissue grows roughly linearly with field strength). M0 is a
relative proton density (CSF = 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: default region names (labels 1-14) and phantom-only tissue labels
LABEL_NAMES: dict[int, str] = {
    1: "Caudate_L", 2: "Caudate_R", 3: "Putamen_L", 4: "Putamen_R",
    5: "GlobusPallidus_L", 6: "GlobusPallidus_R", 7: "Thalamus_L", 8: "Thalamus_R",
    9: "SubstantiaNigra_L", 10: "SubstantiaNigra_R", 11: "RedNucleus_L", 12: "RedNucleus_R",
    13: "Dentate_L", 14: "Dentate_R",
    20: "WhiteMatter", 21: "GreyMatter", 22: "CSF", 23: "Vein", 24: "Calcification",
    25: "Microbleed", 30: "Bone", 31: "SoftTissue", 32: "AirCavity",
}
#: label number of each name
LABELS: dict[str, int] = {name: label for label, name in LABEL_NAMES.items()}
#: the deep grey nuclei (bilateral names)
NUCLEI = ("Caudate", "Putamen", "GlobusPallidus", "Thalamus", "SubstantiaNigra",
          "RedNucleus", "Dentate")
#: labels of the brain parenchyma and what lies inside it (for masks)
BRAIN_LABELS = (*range(1, 15), 20, 21, 22, 23, 24, 25)

#: susceptibility of air relative to water, ppm (chi_air - chi_water = 0.36 - (-9.05))
AIR_CHI_PPM = 9.4


@dataclass(frozen=True)
class TissueProperties:
    """Properties of one tissue.

    Attributes
    ----------
    chi_ppm
        Susceptibility relative to water, ppm.
    m0
        Signal at TE = 0, relative proton density (a.u., CSF = 1).
    r2star_3t
        R2* at 3 T, 1/s.
    """

    chi_ppm: float
    m0: float
    r2star_3t: float


@dataclass(frozen=True)
class IronAgeModel:
    """Susceptibility of a nucleus against age (ppm, years).

    ``chi(age) = c0 + amplitude (1 - exp(-age / tau)) + slope * age
    - late * max(0, age - onset)``.
    """

    c0: float
    amplitude: float
    tau_years: float
    slope_per_year: float = 0.0
    late_decline_per_year: float = 0.0
    late_onset_years: float = 55.0

    def chi(self, age_years: float) -> float:
        """Susceptibility (ppm) at ``age_years``."""
        if age_years < 0:
            raise ValueError(f"age must be >= 0 years, got {age_years}")
        return (self.c0 + self.amplitude * (1 - np.exp(-age_years / self.tau_years))
                + self.slope_per_year * age_years
                - self.late_decline_per_year * max(0.0, age_years - self.late_onset_years))


#: age models of the deep nuclei (bilateral names)
IRON_AGE_MODELS: dict[str, IronAgeModel] = {
    "GlobusPallidus": IronAgeModel(0.02, 0.15, 8.0),  # plateau by ~30
    "Putamen": IronAgeModel(0.0, 0.04, 15.0, 0.0005),  # keeps rising
    "Caudate": IronAgeModel(0.01, 0.045, 12.0, 0.0002),
    "SubstantiaNigra": IronAgeModel(0.03, 0.09, 10.0, 0.0004),
    "RedNucleus": IronAgeModel(0.02, 0.07, 12.0, 0.0004),
    "Dentate": IronAgeModel(0.02, 0.06, 15.0, 0.0004),
    "Thalamus": IronAgeModel(0.0, 0.03, 10.0, 0.0, 0.0004, 55.0),  # declines late
}

#: age-independent tissues (chi ppm, M0, R2* at 3 T in 1/s)
STATIC_TISSUES: dict[str, TissueProperties] = {
    "WhiteMatter": TissueProperties(-0.03, 0.70, 21.0),
    "GreyMatter": TissueProperties(0.02, 0.82, 16.0),
    "CSF": TissueProperties(0.0, 1.00, 3.0),
    "Vein": TissueProperties(0.19, 0.80, 45.0),  # venous blood, challenge 2.0 value
    "Calcification": TissueProperties(-1.0, 0.10, 150.0),
    "Microbleed": TissueProperties(1.0, 0.30, 200.0),
    "Bone": TissueProperties(-2.0, 0.05, 500.0),
    "SoftTissue": TissueProperties(0.0, 0.90, 30.0),
    "AirCavity": TissueProperties(AIR_CHI_PPM, 0.0, 0.0),
}
_NUCLEUS_M0 = 0.78


def nucleus_r2star_3t(chi_ppm: float) -> float:
    """R2* (1/s) at 3 T of an iron-rich nucleus with susceptibility ``chi_ppm``."""
    return 15.0 + 150.0 * chi_ppm


def tissue_table(age_years: float = 40.0) -> dict[int, TissueProperties]:
    """Properties of every phantom label (except 0, outside air) at ``age_years``.

    Returns
    -------
    dict
        label number -> :class:`TissueProperties` (chi ppm, M0 a.u., R2* 1/s at 3 T).
    """
    table: dict[int, TissueProperties] = {}
    for label, name in LABEL_NAMES.items():
        base = name.rsplit("_", 1)[0] if label < 20 else name
        if base in IRON_AGE_MODELS:
            chi = IRON_AGE_MODELS[base].chi(age_years)
            table[label] = TissueProperties(chi, _NUCLEUS_M0, nucleus_r2star_3t(chi))
        else:
            table[label] = STATIC_TISSUES[base]
    return table


def r2star_at_field(r2star_3t: np.ndarray | float, field_strength_t: float):
    """R2* (1/s) at ``field_strength_t`` from its 3 T value (linear scaling with B0)."""
    if not field_strength_t > 0:
        raise ValueError(f"field strength must be positive (tesla), got {field_strength_t}")
    return r2star_3t * (field_strength_t / 3.0)
