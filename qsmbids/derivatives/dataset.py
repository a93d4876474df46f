"""The files of the derivative dataset itself: dataset_description.json, CITATION.md,
.bidsignore, and the container qsmbids runs in."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from qsmbids import __version__
from qsmbids.atomic import atomic_write_json, atomic_write_text, output_lock

CODE_URL = "https://github.com/qsmbids/qsmbids"
BIDS_VERSION = "1.10.0"


def container_info() -> dict[str, str] | None:
    """The container qsmbids runs in, from ``QSMBIDS_CONTAINER_*`` variables set by the image."""
    kind = os.environ.get("QSMBIDS_CONTAINER_TYPE")
    if not kind:
        if Path("/.dockerenv").exists():
            kind = "docker"
        elif os.environ.get("APPTAINER_CONTAINER") or os.environ.get("SINGULARITY_CONTAINER"):
            kind = "apptainer"
        else:
            return None
    info = {"Type": kind}
    tag = os.environ.get("QSMBIDS_CONTAINER_TAG")
    if tag:
        info["Tag"] = tag
    return info


def dataset_description(bids_dir: Path | None, version: str = __version__) -> dict[str, Any]:
    """Content of the derivative ``dataset_description.json``."""
    generated = {"Name": "qsmbids", "Version": version, "CodeURL": CODE_URL}
    container = container_info()
    if container:
        generated["Container"] = container
    desc: dict[str, Any] = {
        "Name": "qsmbids: quantitative susceptibility maps and regional tables",
        "BIDSVersion": BIDS_VERSION,
        "DatasetType": "derivative",
        "GeneratedBy": [generated],
        "HowToAcknowledge": "Cite the methods listed in CITATION.md.",
    }
    if bids_dir is not None:
        desc["DatasetLinks"] = {"raw": Path(bids_dir).absolute().as_uri()}
        desc["SourceDatasets"] = [{"URL": Path(bids_dir).absolute().as_uri()}]
    return desc


#: what ``OUTPUT_DIR/.bidsignore`` lists: the logs, and the SWI and minIP images, whose
#: suffixes are only proposed for BIDS so far (bids-specification PRs 2343 and 2538)
BIDSIGNORE_LINES = ("sub-*/log/", "logs/", "*_swi.nii.gz", "*_swi.json", "*_minIP.nii.gz",
                    "*_minIP.json")


def init_output_dir(output_dir: Path, bids_dir: Path | None, citation: str | None = None,
                    version: str = __version__) -> None:
    """Create OUTPUT_DIR's shared files under the lock (safe with concurrent runs).

    ``dataset_description.json`` is (re)written when absent or made by another
    qsmbids version (the GeneratedBy entry of this version is added, earlier ones
    are kept); ``CITATION.md`` when ``citation`` is given and differs; a
    ``.bidsignore`` listing the log folders.
    """
    output_dir = Path(output_dir)
    with output_lock(output_dir):
        path = output_dir / "dataset_description.json"
        desc = dataset_description(bids_dir, version)
        if path.is_file():
            try:
                old = json.loads(path.read_text())
            except json.JSONDecodeError:
                old = None
            if isinstance(old, dict):
                previous = [g for g in old.get("GeneratedBy", [])
                            if not (g.get("Name") == "qsmbids" and g.get("Version") == version)]
                desc["GeneratedBy"] = previous + desc["GeneratedBy"]
                if old == desc:
                    desc = None
        if desc is not None:
            atomic_write_json(path, desc)
        ignore = output_dir / ".bidsignore"
        present = ignore.read_text().splitlines() if ignore.is_file() else []
        missing = [line for line in BIDSIGNORE_LINES if line not in present]
        if missing:  # the user's own lines are kept
            atomic_write_text(ignore, "".join(f"{line}\n" for line in [*present, *missing]))
        if citation is not None:
            cite = output_dir / "CITATION.md"
            if not cite.is_file() or cite.read_text() != citation:
                atomic_write_text(cite, citation)
