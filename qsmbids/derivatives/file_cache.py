"""Values derived from output files, kept between group runs (the incremental group level).

The group level reads every participant's regional table and thumbnail. When a cohort
grows, most of them have not changed since the last group run; :class:`FileCache`
keeps what was derived from each file (parsed rows, a resized tile) in one JSON file
under ``OUTPUT_DIR/.qsmbids-cache/`` and hands it back while the file's size,
modification time and inode are unchanged, so a rerun reads only the files that are
new or were rewritten. The cache is an optimisation only: a missing, unreadable or
foreign cache file is ignored (and replaced), and it never changes a result.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from qsmbids.atomic import atomic_write_text

LOGGER = logging.getLogger(__name__)

#: folder of the caches, inside OUTPUT_DIR (a dot folder: BIDS validators ignore it)
CACHE_FOLDER = ".qsmbids-cache"
_FORMAT = 1


def _stamp(path: Path) -> list[int]:
    info = path.stat()
    return [info.st_size, info.st_mtime_ns, info.st_ino]


class FileCache:
    """JSON-serialisable values computed from files, reused while the files are unchanged.

    Parameters
    ----------
    output_dir
        The qsmbids output folder; the cache is ``output_dir/.qsmbids-cache/<name>.json``
        and its keys are the files' paths relative to ``output_dir``.
    name
        What is cached, including every setting the values depend on (e.g.
        ``"thumbnails-48px"``): values cached under another name are never reused.

    Attributes
    ----------
    hits, misses
        Values reused and computed since the cache was opened.

    Examples
    --------
    >>> cache = FileCache(out, "run-tables")                        # doctest: +SKIP
    >>> rows = cache.get(out / "sub-01/anat/x_stats.tsv", read_tsv)  # doctest: +SKIP
    >>> cache.save()                                                # doctest: +SKIP
    """

    def __init__(self, output_dir: str | os.PathLike, name: str) -> None:
        self.root = Path(output_dir)
        self.path = self.root / CACHE_FOLDER / f"{name}.json"
        self.name = name
        self.hits = 0
        self.misses = 0
        self._old: dict[str, dict[str, Any]] = self._load()
        self._new: dict[str, dict[str, Any]] = {}

    def _load(self) -> dict[str, dict[str, Any]]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            LOGGER.warning("ignoring the unreadable cache %s (%s); it is rebuilt", self.path, exc)
            return {}
        if not isinstance(data, dict) or data.get("format") != _FORMAT \
                or data.get("name") != self.name or not isinstance(data.get("entries"), dict):
            LOGGER.warning("ignoring the cache %s: not a qsmbids %r cache of format %d",
                           self.path, self.name, _FORMAT)
            return {}
        return data["entries"]

    def get(self, file: str | os.PathLike, compute: Callable[[Path], Any]) -> Any:
        """The value of ``compute(file)``: cached while ``file`` is unchanged.

        Parameters
        ----------
        file
            A file inside ``output_dir``.
        compute
            Derives the value from the file; its result must survive a JSON round
            trip unchanged (dicts with str keys, lists, str, numbers, None).

        Raises
        ------
        OSError
            When ``file`` cannot be read (as ``compute`` would).
        """
        file = Path(file)
        key = os.path.relpath(file, self.root)
        stamp = _stamp(file)
        entry = self._old.get(key)
        if entry is not None and entry.get("stamp") == stamp:
            self.hits += 1
        else:
            self.misses += 1
            entry = {"stamp": stamp, "value": compute(file)}
        self._new[key] = entry
        return entry["value"]

    def save(self) -> Path:
        """Write the entries used since the cache was opened (those of files no longer
        asked for are dropped), atomically; returns the cache file."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.path, json.dumps(
            {"format": _FORMAT, "name": self.name, "entries": self._new},
            separators=(",", ":")))
        return self.path
