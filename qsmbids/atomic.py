"""Atomic writes and the output lock, shared by every layer of qsmbids.

Every file is written atomically (a temporary file in the same folder, then
``os.replace``), so a reader or a killed process never finds a half-written file under
its final name. The temporary's name starts with a dot and carries the writer's
process id, so :func:`remove_stale_temporaries` can clear a killed writer's leftovers.
Files shared by concurrent processes are written under :func:`output_lock`, an
``fcntl`` lock on ``<folder>/.qsmbids.lock``. Only the standard library is needed
(nibabel is imported when a NIfTI is saved).
"""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import json
import os
import re
import secrets
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

_TMP_TAG = ".qsmbids-tmp-"
LOCK_NAME = ".qsmbids.lock"


def _temp_path(path: Path) -> Path:
    suffix = "".join(path.suffixes[-2:]) if path.name.endswith(".nii.gz") else path.suffix
    return path.with_name(f".{path.name}{_TMP_TAG}{os.getpid()}-{secrets.token_hex(4)}{suffix}")


def atomic_write(path: Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it to ``path``.

    The temporary name starts with a dot and carries the writer's process id, so
    :func:`remove_stale_temporaries` can clear leftovers of a killed process. The
    temporary keeps the extension (nibabel picks the format from it).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_path(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: Path, text: str) -> Path:
    """Write UTF-8 text atomically."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def atomic_write_json(path: Path, obj: Any) -> Path:
    """Write JSON (indented, sorted as given) atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=2, default=_json_default) + "\n")


def atomic_save_nifti(image, path: Path) -> Path:
    """Save a nibabel image atomically (format from the name: ``.nii`` or ``.nii.gz``)."""
    import nibabel as nib  # here: the rest of this module needs only the standard library

    return atomic_write(path, lambda tmp: nib.save(image, str(tmp)))


def atomic_copy(src: Path, dst: Path) -> Path:
    """Copy ``src`` to ``dst`` atomically."""
    return atomic_write(dst, lambda tmp: shutil.copyfile(src, tmp))


def atomic_gzip(src: Path, dst: Path, level: int = 4) -> Path:
    """Gzip ``src`` (e.g. a ``.nii``) into ``dst`` (``.nii.gz``) atomically."""

    def write(tmp: Path) -> None:
        with open(src, "rb") as fin, gzip.open(tmp, "wb", compresslevel=level) as fout:
            shutil.copyfileobj(fin, fout, 1 << 22)

    return atomic_write(dst, write)


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Delete temporary files of dead writers under ``folder`` (after a killed run).

    Temporaries of live processes (a concurrent run) are kept.

    Returns
    -------
    list of Path
        The files removed.
    """
    removed = []
    pattern = re.compile(re.escape(_TMP_TAG) + r"(\d+)-")
    if not Path(folder).is_dir():
        return removed
    for path in Path(folder).rglob(f"*{_TMP_TAG}*"):
        match = pattern.search(path.name)
        if match and not _pid_alive(int(match.group(1))):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


@contextlib.contextmanager
def output_lock(output_dir: Path) -> Iterator[None]:
    """Exclusive ``fcntl`` lock on ``OUTPUT_DIR/.qsmbids.lock`` for shared files.

    Concurrent processes (participant jobs writing into the same OUTPUT_DIR) wait
    for each other. The lock is released when the process dies.
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    with open(output_dir / LOCK_NAME, "a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
