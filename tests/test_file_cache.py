"""The incremental group level: values derived from output files are reused while the
files are unchanged, recomputed when they change, and never change a result."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from qsmbids.derivatives.file_cache import CACHE_FOLDER, FileCache
from qsmbids.stats.regional import regional_statistics
from qsmbids.stats.tables import write_cohort_tables, write_run_table


def _count_calls(values: dict[str, object]):
    calls = []

    def compute(path):
        calls.append(path.name)
        return values[path.name]
    return compute, calls


def test_values_are_reused_until_the_file_changes(tmp_path):
    (tmp_path / "a.txt").write_text("one")
    (tmp_path / "b.txt").write_text("two")
    compute, calls = _count_calls({"a.txt": {"rows": [1, 2.5, None, "x"]}, "b.txt": [3]})
    cache = FileCache(tmp_path, "test")
    assert cache.get(tmp_path / "a.txt", compute) == {"rows": [1, 2.5, None, "x"]}
    assert cache.get(tmp_path / "b.txt", compute) == [3]
    cache.save()
    assert calls == ["a.txt", "b.txt"] and (cache.hits, cache.misses) == (0, 2)

    again = FileCache(tmp_path, "test")
    assert again.get(tmp_path / "a.txt", compute) == {"rows": [1, 2.5, None, "x"]}
    assert calls == ["a.txt", "b.txt"] and again.hits == 1          # read from the cache
    (tmp_path / "b.txt").write_text("two, rewritten")               # size and mtime change
    assert again.get(tmp_path / "b.txt", compute) == [3]
    assert calls == ["a.txt", "b.txt", "b.txt"]
    again.save()
    # b.txt not asked for next time: its entry is dropped at the next save
    third = FileCache(tmp_path, "test")
    third.get(tmp_path / "a.txt", compute)
    third.save()
    entries = json.loads((tmp_path / CACHE_FOLDER / "test.json").read_text())["entries"]
    assert list(entries) == ["a.txt"]


def test_a_file_replaced_atomically_with_the_same_size_is_read_again(tmp_path):
    """Atomic writes replace the file (a new inode), so even a rewrite of equal size
    within the file system's timestamp resolution is not mistaken for the old one."""
    import os

    target = tmp_path / "t.txt"
    target.write_text("aaaa")
    compute, calls = _count_calls({"t.txt": 1})
    cache = FileCache(tmp_path, "test")
    cache.get(target, compute)
    cache.save()
    stat = target.stat()
    (tmp_path / "new.txt").write_text("bbbb")
    os.replace(tmp_path / "new.txt", target)
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))    # same size, same mtime
    FileCache(tmp_path, "test").get(target, compute)
    assert calls == ["t.txt", "t.txt"]


@pytest.mark.parametrize("content", ["{not json", json.dumps({"format": 99, "entries": {}}),
                                     json.dumps({"format": 1, "name": "other", "entries": {}})])
def test_a_damaged_or_foreign_cache_is_ignored_and_replaced(tmp_path, content, caplog):
    (tmp_path / "a.txt").write_text("one")
    (tmp_path / CACHE_FOLDER).mkdir()
    (tmp_path / CACHE_FOLDER / "test.json").write_text(content)
    compute, calls = _count_calls({"a.txt": 7})
    with caplog.at_level(logging.WARNING):
        cache = FileCache(tmp_path, "test")
    assert "ignoring" in caplog.text and "test.json" in caplog.text
    assert cache.get(tmp_path / "a.txt", compute) == 7 and calls == ["a.txt"]
    cache.save()
    assert FileCache(tmp_path, "test").get(tmp_path / "a.txt", compute) == 7
    assert calls == ["a.txt"]


def _write_participant(out, label: str, value: float) -> None:
    labels = np.zeros((8, 8, 6), np.int16)
    labels[1:4, 1:4, 1:4] = 1
    labels[5:8, 1:4, 1:4] = 2
    chi = np.where(labels > 0, value + 0.01 * labels, 0.0)
    records = regional_statistics(chi, labels, {"Caudate_L": [1], "Caudate_R": [2]},
                                  voxel_size=(1, 1, 1))
    write_run_table(records, out / f"sub-{label}" / "anat" /
                    f"sub-{label}_desc-DGM_Chimap_stats.tsv", atlas="DGM")


def test_a_grown_cohort_gives_the_tables_a_fresh_build_gives(tmp_path):
    """Group level on 3 participants, then 2 more added and one rewritten: the
    incremental tables equal those built without a cache, byte for byte, and only the
    new and rewritten tables were read again."""
    out, fresh = tmp_path / "out", tmp_path / "fresh"
    for label, value in (("01", 0.02), ("02", 0.05), ("03", 0.08)):
        _write_participant(out, label, value)
    write_cohort_tables(out, "Chimap")
    for label, value in (("04", 0.11), ("05", 0.14)):
        _write_participant(out, label, value)
    _write_participant(out, "02", 0.20)                      # a participant rerun
    import qsmbids.stats.tables as tables

    read = []
    original = tables.read_tsv

    def counting(path, **kwargs):
        read.append(path.name.split("_")[0])
        return original(path, **kwargs)

    tables.read_tsv = counting
    try:
        long_path, wide_path = write_cohort_tables(out, "Chimap")
    finally:
        tables.read_tsv = original
    assert sorted(read) == ["sub-02", "sub-04", "sub-05"]
    import shutil

    shutil.copytree(out, fresh, ignore=shutil.ignore_patterns(CACHE_FOLDER, "group_*"))
    fresh_long, fresh_wide = write_cohort_tables(fresh, "Chimap", incremental=False)
    assert long_path.read_text() == fresh_long.read_text()
    assert wide_path.read_text() == fresh_wide.read_text()
    assert "0.21" in long_path.read_text()         # the rerun participant's new value
    assert not (fresh / CACHE_FOLDER).exists()


def test_the_cohort_montage_reads_only_new_thumbnails(tmp_path, monkeypatch):
    """The group report's thumbnail montage from cached tiles equals the montage read
    from the PNGs, and a rerun opens only the thumbnails added since."""
    from qsmbids.report import group
    from qsmbids.report.figures import write_thumbnail
    from qsmbids.report.participant import THUMBNAIL_DESC

    rng = np.random.default_rng(3)

    def thumbnail(label: str) -> None:
        slab = rng.normal(0.05, 0.05, (30, 36, 1)).astype(np.float32)
        write_thumbnail(slab, (2.0, 2.0, 2.0), (15, 18, 0), tmp_path / f"sub-{label}" /
                        "figures" / f"sub-{label}_desc-{THUMBNAIL_DESC}_qc.png",
                        half_width_mm=30.0)

    for label in ("01", "02", "03"):
        thumbnail(label)
    ages = {"sub-01": 30.0, "sub-02": 50.0, "sub-03": 70.0, "sub-04": 40.0}
    first = group._thumbnail_montage(tmp_path, ages, set())
    thumbnail("04")
    opened = []
    original = group._read_tile
    monkeypatch.setattr(group, "_read_tile",
                        lambda path, side: opened.append(path.name[:6]) or original(path, side))
    cached = group._thumbnail_montage(tmp_path, ages, {"sub-02"})
    assert opened == ["sub-04"]
    plain = group._thumbnail_montage(tmp_path, ages, {"sub-02"}, incremental=False)
    assert cached == plain and cached != first
    assert cached[1][1].startswith("sub-04") and "QC!" in cached[1][2]   # ordered by age
