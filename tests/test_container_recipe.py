"""Static checks of the container recipe that need no container engine.

The image itself is built and run by ``.ci/container``; these catch, in the fast
suite, the drift that would make that build unpinned or wrong: a dependency added
to pyproject.toml but not pinned in requirements/constraints.txt, a pin outside
pyproject's range, or a Dockerfile that lost its fixed points.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

REPO = Path(__file__).resolve().parents[1]


def _pins() -> dict[str, str]:
    pins = {}
    for line in (REPO / "requirements" / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"constraints.txt line is not NAME==VERSION: {line!r}"
            pins[canonicalize_name(name)] = version
    return pins


def test_every_runtime_dependency_is_pinned_within_its_range():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pins = _pins()
    assert "qsmbids" not in pins
    for spec in project["dependencies"]:
        req = Requirement(spec)
        name = canonicalize_name(req.name)
        assert name in pins, (
            f"{req.name} (pyproject.toml) is not pinned in requirements/constraints.txt: "
            "run `sh requirements/update.sh`")
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"{req.name}=={pins[name]} in constraints.txt is outside pyproject's {req.specifier}")


def test_dockerfile_fixed_points():
    text = (REPO / "Dockerfile").read_text()
    assert not re.search(r"^#\s*syntax=", text, re.M), "no '# syntax=' line (podman/buildah)"
    assert re.search(r"^ARG BASE_IMAGE=\S+", text, re.M)
    assert text.count("FROM ${BASE_IMAGE}") == 2  # multi-stage, both on the same base
    assert 'ENTRYPOINT ["qsmbids"]' in text
    user = re.findall(r"^USER (\S+)", text, re.M)
    assert user and user[-1].split(":")[0] not in ("0", "root")
    assert "requirements/constraints.txt" in text
    for var in ("OMP_NUM_THREADS", "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", "QSMBIDS_ATLAS_DIR"):
        assert re.search(rf"^\s+{var}=", text, re.M), var
    # podman's OCI format ignores SHELL: a RUN chaining commands with ';' must stop on
    # the first failure by itself.
    for run in re.findall(r"^RUN (.*?)(?<!\\)$", text.replace("\\\n", " "), re.M):
        if ";" in run:
            assert "set -eu;" in run, f"RUN without 'set -eu;': {run[:80]}"
    ignore = (REPO / ".dockerignore").read_text().splitlines()
    assert ignore[:1] != [] and "*" in ignore, ".dockerignore must be an allowlist"
