"""Atlases: the folder model, the default region definitions and the default atlas."""

from qsmbids.atlas.model import Atlas, AtlasError, load_atlas, write_atlas
from qsmbids.atlas.regions import DEFAULT_REGION_LABELS, DEFAULT_REGIONS

__all__ = ["DEFAULT_REGIONS", "DEFAULT_REGION_LABELS", "Atlas", "AtlasError", "load_atlas",
           "write_atlas"]
