"""Run ``benchmarks/bench_*.py`` modules' ``main()`` (each prints its own table).

Usage: ``.venv/bin/python benchmarks/run.py [NAME ...] [--option ...]``

``NAME`` picks ``bench_NAME.py`` when such a file exists, else every benchmark whose
name contains it (``registration`` is ``bench_registration.py`` alone, not also
``bench_nuclei_registration.py``); no name runs them all. Options (words starting with
``-``) are left in ``sys.argv`` for the benchmarks' own parsers.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path


def selected(paths: list[Path], words: list[str]) -> list[Path]:
    """The benchmark files ``words`` name (exact name first, else substring), in order."""
    if not words:
        return paths
    names = {path.stem.removeprefix("bench_"): path for path in paths}
    chosen: list[Path] = []
    for word in words:
        matches = [names[word]] if word in names else \
            [path for name, path in names.items() if word in name]
        if not matches:
            raise SystemExit(f"no benchmark is called or contains {word!r}; "
                             f"there are: {', '.join(names)}")
        chosen += [path for path in matches if path not in chosen]
    return chosen


def main(argv: list[str]) -> int:
    words = [arg for arg in argv if not arg.startswith("-")]
    for path in selected(sorted(Path(__file__).parent.glob("bench_*.py")), words):
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[path.stem] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
        print(f"\n=== {path.stem} ===", flush=True)
        module.main()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
