"""Default region definitions shared by atlases, phantom labels and tables.

The numbering is the project-wide contract: phantom label images use these
numbers directly, while real atlases map each name to label numbers of their
own ``dseg`` file through ``atlas.json`` ``"Regions"``.
"""

from __future__ import annotations

#: default regions, in table order, with their phantom label numbers
DEFAULT_REGION_LABELS: dict[str, int] = {
    "Caudate_L": 1,
    "Caudate_R": 2,
    "Putamen_L": 3,
    "Putamen_R": 4,
    "GlobusPallidus_L": 5,
    "GlobusPallidus_R": 6,
    "Thalamus_L": 7,
    "Thalamus_R": 8,
    "SubstantiaNigra_L": 9,
    "SubstantiaNigra_R": 10,
    "RedNucleus_L": 11,
    "RedNucleus_R": 12,
    "Dentate_L": 13,
    "Dentate_R": 14,
}

#: default region names in table order
DEFAULT_REGIONS: tuple[str, ...] = tuple(DEFAULT_REGION_LABELS)

#: phantom-only tissue labels (0 = outside the head)
PHANTOM_TISSUE_LABELS: dict[int, str] = {
    20: "WhiteMatter",
    21: "GreyMatter",
    22: "CSF",
    23: "Vein",
    24: "Calcification",
    25: "Microbleed",
    30: "Bone",
    31: "SoftTissue",
    32: "AirCavity",
}

#: the large nuclei (Dice target 0.80) and the small ones (target 0.65)
LARGE_NUCLEI: tuple[str, ...] = ("Caudate", "Putamen", "GlobusPallidus", "Thalamus")
SMALL_NUCLEI: tuple[str, ...] = ("SubstantiaNigra", "RedNucleus", "Dentate")

_HEMISPHERES = {"_L": "L", "_R": "R"}


def hemisphere(region: str) -> str | None:
    """Return ``"L"`` or ``"R"`` for a lateralised region name, else ``None``."""
    for suffix, side in _HEMISPHERES.items():
        if region.endswith(suffix):
            return side
    return None


def bilateral_name(region: str) -> str:
    """Drop the ``_L``/``_R`` suffix: ``"Caudate_L"`` -> ``"Caudate"``."""
    return region[:-2] if hemisphere(region) else region


def group_bilateral(regions: dict[str, list[int]] | dict[str, tuple[int, ...]]
                    ) -> dict[str, tuple[int, ...]]:
    """Bilateral label sets: the union of the ``_L`` and ``_R`` label sets of each region.

    Only regions that come in a left/right pair appear in the result.

    Parameters
    ----------
    regions
        Region name -> label numbers (as in ``atlas.json`` ``"Regions"``).

    Returns
    -------
    dict
        Bilateral name -> sorted label numbers of both sides.
    """
    out: dict[str, set[int]] = {}
    for name, labels in regions.items():
        if hemisphere(name) is None:
            continue
        base = bilateral_name(name)
        if f"{base}_L" in regions and f"{base}_R" in regions:
            out.setdefault(base, set()).update(int(v) for v in labels)
    return {name: tuple(sorted(v)) for name, v in out.items()}


def phantom_regions() -> dict[str, list[int]]:
    """``"Regions"`` of an atlas whose labels follow the phantom numbering."""
    return {name: [label] for name, label in DEFAULT_REGION_LABELS.items()}


def phantom_references() -> dict[str, list[int]]:
    """``"References"`` of an atlas whose labels follow the phantom numbering."""
    return {"WhiteMatter": [20], "GreyMatter": [21], "CSF": [22]}
