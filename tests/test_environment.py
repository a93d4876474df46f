"""A run under Apptainer's rules: the caller's environment leaks into the image (host
Python packages on PYTHONPATH, cache folders that cannot be written, a read-only
home). The command line makes its environment safe before any work
(:mod:`qsmbids.cli.environment`), and a participant run completes under it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from gre_dataset import new_dataset, write_run

from qsmbids.cli.environment import prepare_environment, writable_folder

#: folders no process can create, root included (the proc filesystem)
UNWRITABLE = "/proc/qsmbids-unwritable"


def test_unwritable_caches_are_moved_and_python_variables_dropped_when_isolated(tmp_path):
    environ = {"PYTHONPATH": "/host/lib/python", "PYTHONHOME": "/host",
               "NUMBA_CACHE_DIR": f"{UNWRITABLE}/numba", "MPLCONFIGDIR": str(tmp_path),
               "HOME": UNWRITABLE}
    notes = prepare_environment(environ, isolated=True)
    assert "PYTHONPATH" not in environ and "PYTHONHOME" not in environ
    assert environ["NUMBA_CACHE_DIR"] != f"{UNWRITABLE}/numba"
    assert writable_folder(environ["NUMBA_CACHE_DIR"])
    assert environ["MPLCONFIGDIR"] == str(tmp_path)  # writable: kept
    assert environ["HOME"] == UNWRITABLE  # not ours to change
    assert len(notes) == 2 and "NUMBA_CACHE_DIR" in notes[1]
    # a normal (not isolated) interpreter keeps the Python variables: a developer's choice
    kept = {"PYTHONPATH": "/somewhere"}
    assert prepare_environment(kept, isolated=False) == [] and kept == {
        "PYTHONPATH": "/somewhere"}
    assert not writable_folder(UNWRITABLE)


def test_a_run_with_a_hostile_environment_completes(tmp_path):
    """``python -I`` (the image's entry point) with a host numpy on PYTHONPATH that
    cannot be imported, numba and matplotlib caches and HOME that cannot be written:
    the participant level completes and says what it changed. (Here the package's own
    folder stays writable, where numba would cache anyway; the read-only image where
    it cannot is run by ``.ci/container`` under the same environment.)"""
    bids = new_dataset(tmp_path / "bids")
    write_run(bids, "sub-01/anat/sub-01", seed=3)
    hostile = tmp_path / "host-site-packages" / "numpy"
    hostile.mkdir(parents=True)
    (hostile / "__init__.py").write_text(
        'raise ImportError("the host\'s numpy was imported instead of the image\'s")\n')
    env = {**os.environ, "PYTHONPATH": str(hostile.parent),
           "NUMBA_CACHE_DIR": f"{UNWRITABLE}/numba", "MPLCONFIGDIR": f"{UNWRITABLE}/mpl",
           "HOME": UNWRITABLE, "XDG_CACHE_HOME": f"{UNWRITABLE}/cache"}
    out = tmp_path / "out"
    run = subprocess.run(
        [sys.executable, "-I", "-m", "qsmbids", str(bids), str(out), "participant",
         "--atlas", "none", "--nprocs", "2", "--no-progress", "-w", str(tmp_path / "work")],
        env=env, capture_output=True, text=True, timeout=600, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "ignored PYTHONPATH" in run.stderr
    assert f"NUMBA_CACHE_DIR={UNWRITABLE}/numba cannot be written" in run.stderr
    assert list(Path(out, "sub-01", "anat").glob("*_Chimap.nii.gz"))
