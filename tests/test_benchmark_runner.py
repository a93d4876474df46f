"""benchmarks/run.py picks the benchmarks a user names."""

import importlib.util
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _runner():
    spec = importlib.util.spec_from_file_location("benchmarks_run", BENCHMARKS / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_an_exact_name_wins_over_names_containing_it():
    run = _runner()
    paths = sorted(BENCHMARKS.glob("bench_*.py"))
    stems = lambda words: [p.stem for p in run.selected(paths, words)]  # noqa: E731
    assert stems(["registration"]) == ["bench_registration"]
    assert stems(["nuclei"]) == ["bench_nuclei_registration"]
    assert stems(["regis"]) == ["bench_nuclei_registration", "bench_registration"]
    assert stems([]) == [p.stem for p in paths]
    with pytest.raises(SystemExit, match="no benchmark is called or contains 'nope'"):
        run.selected(paths, ["nope"])
