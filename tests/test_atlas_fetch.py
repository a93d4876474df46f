"""``qsmbids atlas fetch``: checksum verification, error paths, cache reuse, CLI."""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

import pytest

from qsmbids.atlas import fetch as fetch_mod
from qsmbids.atlas.fetch import DEFAULT_SOURCES, FetchError, Source, download, sha256_file
from qsmbids.cli.main import main
from tests.atlas_helpers import shared_atlases

SHARED = shared_atlases()
needs_shared = pytest.mark.skipif(SHARED is None, reason="shared/atlases not available")


def _tian() -> Source:
    return next(s for s in DEFAULT_SOURCES if "TianS1" in s.file)


@needs_shared
def test_download_from_file_mirror_verifies_and_reuses(tmp_path):
    src = _tian()
    url = (SHARED / src.file).as_uri()
    got = download(src, tmp_path, url=url)
    assert got == tmp_path / src.file and sha256_file(got) == src.sha256

    def no_network(url):
        raise AssertionError("a verified cached file must not be downloaded again")

    assert download(src, tmp_path, opener=no_network) == got


@needs_shared
def test_checksum_mismatch_leaves_nothing(tmp_path):
    src = _tian()
    wrong = Source(src.file, (SHARED / src.file).as_uri(), "0" * 64)
    with pytest.raises(FetchError, match=r"checksum mismatch for .*TianS1.*expected sha256 0000"):
        download(wrong, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_network_error_names_the_file(tmp_path):
    def offline(url):
        raise urllib.error.URLError("no route to host")

    with pytest.raises(FetchError, match=r"could not download tpl-MNI152NLin6AsymC_T1w\.nii\.gz"):
        download(DEFAULT_SOURCES[3], tmp_path, opener=offline)
    assert list(tmp_path.iterdir()) == []


def test_sources_are_pinned_and_unique():
    assert len({s.file for s in DEFAULT_SOURCES}) == len(DEFAULT_SOURCES)
    for s in DEFAULT_SOURCES:
        assert s.url.startswith("https://raw.githubusercontent.com/")
        assert len(s.sha256) == 64 and int(s.sha256, 16) >= 0


@needs_shared
def test_cli_fetch_with_mirror_builds(tmp_path, monkeypatch, capsys):
    calls = {}

    def fake_build(atlas_dir, source_dir, **kwargs):
        calls.update(atlas_dir=Path(atlas_dir), source_dir=Path(source_dir), **kwargs)
        from qsmbids.atlas.model import Atlas

        return Atlas(root=Path(atlas_dir), name="x", space="y", template=Path(),
                     template_mask=None, labels=Path(), label_table=Path(), regions={},
                     license="CC"), None

    monkeypatch.setattr("qsmbids.atlas.build_default.build_default_atlas", fake_build)
    code = main(["atlas", "fetch", "--cache-dir", str(tmp_path), "--mirror", SHARED.as_uri(),
                 "--omp-nthreads", "2"])
    assert code == 0
    assert calls["source_dir"] == tmp_path / "sources" and calls["n_threads"] == 2
    assert calls["atlas_dir"] == tmp_path / "atlas"
    for s in DEFAULT_SOURCES:
        assert sha256_file(tmp_path / "sources" / s.file) == s.sha256
    assert "default atlas built in" in capsys.readouterr().out


def test_cli_fetch_failure_exit_code(tmp_path, capsys, monkeypatch):
    def offline(url, *a, **k):
        raise urllib.error.URLError("offline")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    monkeypatch.setattr(fetch_mod, "fetch_sources",
                        lambda d, mirror=None, opener=None, progress=None: fetch_mod.download(
                            DEFAULT_SOURCES[0], d, opener=offline))
    code = main(["atlas", "fetch", "--cache-dir", str(tmp_path)])
    assert code == 69
    assert "could not download" in capsys.readouterr().err


def test_cli_check(tmp_path, capsys):
    assert main(["atlas", "check", str(tmp_path)]) == 66
    assert "has no atlas.json" in capsys.readouterr().err


@pytest.mark.slow
@needs_shared
def test_fetch_and_build_for_real_from_mirror(tmp_path):
    atlas, _ = fetch_mod.fetch_default_atlas(tmp_path, mirror=SHARED.as_uri(),
                                                   n_threads=2)
    assert atlas.root == (tmp_path / "atlas").resolve()
    assert main(["atlas", "check", str(atlas.root)]) == 0


@needs_shared
def test_first_run_fetches_the_default_atlas_once_and_says_so(tmp_path, monkeypatch):
    """Two runs starting together (threads here, array jobs on a cluster): one fetches
    and builds under the cache lock, the other waits and finds the atlas."""
    import threading
    import time

    from qsmbids.atlas.fetch import install_default_atlas

    builds = []

    def fake_build(atlas_dir, source_dir, **kwargs):
        builds.append(Path(atlas_dir))
        time.sleep(0.3)
        Path(atlas_dir).mkdir(parents=True, exist_ok=True)
        (Path(atlas_dir) / "atlas.json").write_text("{}")
        return None, None

    monkeypatch.setattr("qsmbids.atlas.build_default.build_default_atlas", fake_build)
    mirror = {s.url: SHARED / s.file for s in DEFAULT_SOURCES}
    lines: list[str] = []
    results = []

    def first_run():
        results.append(install_default_atlas(lines.append, cache_dir=tmp_path,
                                             opener=lambda url: open(mirror[url], "rb")))

    threads = [threading.Thread(target=first_run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [tmp_path / "atlas"] * 2 and builds == [tmp_path / "atlas"]
    assert any("not installed: fetching it into" in line for line in lines)
    assert sum("checksum verified" in line for line in lines) == len(DEFAULT_SOURCES)
    assert any("building the default atlas" in line for line in lines)


def test_first_run_without_network_says_how_to_install_offline(tmp_path, monkeypatch):
    from qsmbids.cli.run import SetupError, resolve_atlas
    from qsmbids.workflows.settings import Settings

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("QSMBIDS_ATLAS_DIR", raising=False)
    settings = Settings(bids_dir=tmp_path, output_dir=tmp_path / "o", work_dir=tmp_path / "w")

    def offline(say, **kwargs):
        raise FetchError("could not download tpl-MNI152NLin2009cAsym_T1w.nii.gz: timed out")

    with pytest.raises(SetupError, match=r"could not be fetched \(could not download .*"
                                         r"qsmbids atlas fetch --mirror file:///DIR"):
        resolve_atlas(settings, install=offline)
    # an atlas that is installed is used without any fetch
    (tmp_path / "cache" / "qsmbids" / "atlas").mkdir(parents=True)
    (tmp_path / "cache" / "qsmbids" / "atlas" / "atlas.json").write_text("{}")
    assert resolve_atlas(settings, install=offline) == tmp_path / "cache" / "qsmbids" / "atlas"
