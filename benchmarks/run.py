"""Run every ``benchmarks/bench_*.py`` module's ``main()`` (each prints its own table).

Usage: ``.venv/bin/python benchmarks/run.py [name-substring ...]``
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    for path in sorted(Path(__file__).parent.glob("bench_*.py")):
        if argv and not any(word in path.stem for word in argv):
            continue
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        print(f"\n=== {path.stem} ===", flush=True)
        module.main()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
