"""Run one ``antsRegistration`` in a fresh Python process with a fixed ITK thread count.

ITK fixes its thread count at the first ANTs call of a process, and ANTs is
repeatable only single-threaded. Running each registration in a new interpreter
(``python -m qsmbids.registration.job``, not ``multiprocessing``: no re-import of
the caller's ``__main__``, fine inside daemonic workers) makes ``n_threads`` and
the random seed hold for every call, whatever ran before in the caller (about 1-2 s of
start-up).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from qsmbids.registration.antsio import ITK_THREADS_ENV


def _job(spec: dict) -> dict:
    import ants  # imported here: the thread count is already in the environment

    # antspyx's raw-argument form: the list is handed to antsRegistration as it is
    ants.registration(list(spec["args"]), None)
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
