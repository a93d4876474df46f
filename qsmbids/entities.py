"""BIDS entities, the one place: which identify a run, their order, composing and parsing.

Every layer names runs and outputs with these (``sub-01_ses-pre_acq-fast_run-2``): the
run record (:mod:`qsmbids.runs`), discovery, the derivative names
(:mod:`qsmbids.derivatives.naming`), the tables, the reports and the simulator.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

#: entities (pybids names) that, with the subject, identify a run
RUN_ENTITIES = ("session", "acquisition", "reconstruction", "run")
#: pybids name -> the key written in file names
LABEL_KEYS = {"session": "ses", "acquisition": "acq", "reconstruction": "rec", "run": "run"}
#: entity order in names (BIDS entity table order; from/to/mode as in fMRIPrep)
ENTITY_ORDER = ("sub", *LABEL_KEYS.values(), "from", "to", "mode", "space", "atlas", "desc")

_ENTITY = re.compile(r"(?:^|_)([a-zA-Z]+)-([a-zA-Z0-9]+)")


def join_entities(entities: Mapping[str, str | None]) -> str:
    """Name stem of ``entities`` (short keys) in :data:`ENTITY_ORDER`, e.g.
    ``{"run": "2", "sub": "01"}`` -> ``sub-01_run-2``. Keys outside that order and
    None values are left out."""
    return "_".join(f"{key}-{entities[key]}" for key in ENTITY_ORDER
                    if entities.get(key) is not None)


def parse_entities(filename: str | os.PathLike) -> dict[str, str]:
    """Key-value entities of a file name, in name order:
    ``sub-01_run-2_x.tsv`` -> ``{"sub": "01", "run": "2"}``."""
    stem = Path(filename).name.split(".")[0]
    return dict(_ENTITY.findall(stem))
