"""The process environment a run starts from: made safe before anything is imported.

Apptainer, what most clusters run containers with, passes the caller's whole
environment into the image unless ``--cleanenv`` is given, runs the image read-only
as the caller's uid, and binds the caller's home (often read-only or quota-full on
compute nodes). So the variables that point Python or its libraries somewhere may
point at the host's packages or at folders this process cannot write:

* ``PYTHONPATH``, ``PYTHONHOME``, ``PYTHONSTARTUP``, ``PYTHONUSERBASE``: the image's
  entry point runs Python isolated (``-I``); the variables are then dropped from the
  environment too, so that the worker processes nipype and the registration start
  import the image's packages, not the host's.
* ``NUMBA_CACHE_DIR``, ``MPLCONFIGDIR``: where numba caches its compiled kernels and
  matplotlib its font list. A folder that cannot be written makes numba refuse to load
  the kernels; it is replaced by one under the temporary folder, and the run says so.

:func:`prepare_environment` is called by the command line before any work.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import MutableMapping
from pathlib import Path

#: variables that point Python at other packages (ignored by an isolated interpreter)
PYTHON_VARIABLES = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONUSERBASE")
#: cache folders of the libraries, and the folder name used instead of an unwritable one
CACHE_VARIABLES = {"NUMBA_CACHE_DIR": "numba", "MPLCONFIGDIR": "matplotlib"}


def writable_folder(path: str | os.PathLike) -> bool:
    """True when ``path`` is, or can be made, a folder this process can write into."""
    folder = Path(path)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder):
            pass
    except OSError:
        return False
    return True


def prepare_environment(environ: MutableMapping[str, str] | None = None, *,
                        isolated: bool | None = None) -> list[str]:
    """Make ``environ`` (default: ``os.environ``) safe for this run and its workers.

    Parameters
    ----------
    environ
        The environment to change in place.
    isolated
        Whether this interpreter ignores the Python variables (default:
        ``sys.flags.isolated``, true under the image's ``python -I`` entry point); then
        they are removed so that child processes ignore them too.

    Returns
    -------
    list of str
        One sentence per change, for the log.
    """
    environ = os.environ if environ is None else environ
    isolated = bool(sys.flags.isolated) if isolated is None else isolated
    notes = []
    if isolated:
        dropped = [name for name in PYTHON_VARIABLES if name in environ]
        for name in dropped:
            del environ[name]
        if dropped:
            notes.append(f"ignored {', '.join(dropped)} from the calling environment (the "
                         "image's own Python packages are used)")
    for name, leaf in CACHE_VARIABLES.items():
        value = environ.get(name)
        if value and not writable_folder(value):
            fallback = Path(tempfile.gettempdir()) / f"qsmbids-{os.getuid()}" / leaf
            if writable_folder(fallback):
                environ[name] = str(fallback)
                notes.append(f"{name}={value} cannot be written; using {fallback}")
    return notes
