"""The package's layers: every import points down (issue 17).

Ranks, lowest first: shared modules (``qsmbids.atomic``: atomic writes and locks;
``qsmbids.entities``: BIDS entity names, order and parsing; ``qsmbids.runs``: the run
record; ``qsmbids.derivatives``: names, sidecars and manifests of the outputs), the
numerical algorithms (``recon``, ``registration``), the atlas model, statistics and the
simulator, the thin nipype ``interfaces``, the ``workflows`` factories, then BIDS I/O,
reports, validation and the CLI. A module may import its own package and any lower
rank, at module level or inside a function.
"""

from __future__ import annotations

import ast
from pathlib import Path

import qsmbids

PACKAGE = Path(qsmbids.__file__).parent
RANK = {"__init__": 0, "atomic": 0, "entities": 0, "runs": 0, "derivatives": 0,
        "recon": 1, "registration": 1, "atlas": 2, "stats": 3, "sim": 3,
        "interfaces": 4, "workflows": 5, "bids": 6, "report": 6,
        "validation": 7, "cli": 7, "__main__": 8}
#: upward imports still to be removed (issue 17), each with the name it imports; the
#: test fails on any other, and on an entry here that no longer exists
KNOWN_UPWARD: set[tuple[str, str]] = set()


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
        elif isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
    return [name for name in found if name.split(".")[0] == "qsmbids"]


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_every_import_points_down():
    upward = set()
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        own = relative.parts[0].removesuffix(".py")
        assert own in RANK, f"{relative}: give the new package a rank in RANK"
        for module in _imports(path):
            target = _layer(module)
            if target != own and RANK[target] > RANK[own]:
                upward.add((str(relative), module))
    new = upward - KNOWN_UPWARD
    assert not new, "imports that point up a layer: " + ", ".join(
        f"{where} -> {what}" for where, what in sorted(new))
    assert not KNOWN_UPWARD - upward, f"fixed, remove from KNOWN_UPWARD: {KNOWN_UPWARD - upward}"
