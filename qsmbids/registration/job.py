"""Run one ``antsRegistration`` in a fresh Python process with a fixed ITK thread count.

ITK fixes its thread count at the first ANTs call of a process, and ANTs is
repeatable only single-threaded. Running each registration in a new interpreter
(``python -m qsmbids.registration.job``, not ``multiprocessing``: no re-import of
the caller's ``__main__``, fine inside daemonic workers) makes ``n_threads`` and
the random seed hold for every call, whatever ran before in the caller. The child loads
antspyx's compiled library alone (:func:`ants_library`), not the ``ants`` package,
whose import pulls in pandas, statsmodels and matplotlib for its other tools: 0.03 s
instead of 2.5-2.7 s per registration (measured on 2 cores).
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

#: the environment variable ITK reads its thread count from at its first call
ITK_THREADS_ENV = "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"


def ants_library():
    """antspyx's compiled extension (``ants.lib``), loaded without the package.

    Falls back to ``import ants`` when the package keeps its library elsewhere.
    """
    spec = importlib.util.find_spec("ants")
    if spec is not None and spec.origin:
        folder = Path(spec.origin).parent
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            path = folder / f"lib{suffix}"
            if path.is_file():
                library = importlib.util.spec_from_file_location("ants.lib", path)
                module = importlib.util.module_from_spec(library)
                library.loader.exec_module(module)
                return module
    import ants

    return ants.lib


def _job(spec: dict) -> dict:
    # loaded here: the thread count is already in the environment. The argument list
    # goes to antsRegistration as it is (what antspyx's raw-argument form does)
    status = ants_library().antsRegistration([str(arg) for arg in spec["args"]])
    if status != 0:
        raise RuntimeError(f"antsRegistration exited with {status}")
    return {"ok": True}


def run_registration(args: list[str], *, n_threads: int, description: str) -> None:
    """Run ``antsRegistration`` with ``args`` (file paths only) in a child Python process.

    Parameters
    ----------
    args
        The command line (:func:`qsmbids.registration.stages.registration_command`).
    n_threads
        ITK threads in the child.
    description
        What is registered to what, for the error message.

    Raises
    ------
    RuntimeError
        With the end of the child's error output when the registration fails.
    """
    env = dict(os.environ, **{ITK_THREADS_ENV: str(int(n_threads))})
    with tempfile.TemporaryDirectory(prefix="qsmbids_regjob_") as tmp:
        spec_path, result_path = Path(tmp, "spec.json"), Path(tmp, "result.json")
        spec_path.write_text(json.dumps({"args": list(args)}))
        proc = subprocess.run(
            [sys.executable, "-m", "qsmbids.registration.job", str(spec_path), str(result_path)],
            env=env, capture_output=True, text=True, check=False)
        if proc.returncode != 0 or not result_path.is_file():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
            raise RuntimeError(
                f"ANTs registration of {description} failed (exit {proc.returncode}): "
                + " | ".join(tail))


if __name__ == "__main__":  # pragma: no cover - exercised through run_registration
    _spec = json.loads(Path(sys.argv[1]).read_text())
    Path(sys.argv[2]).write_text(json.dumps(_job(_spec)))
