"""Per-run tables, sidecars and the cohort tables of the group level."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from qsmbids.stats.regional import STAT_COLUMNS, regional_statistics
from qsmbids.stats.tables import (
    TableError,
    build_cohort_table,
    parse_entities,
    read_participants,
    read_tsv,
    to_wide,
    write_cohort_tables,
    write_run_table,
)

REGIONS = {"Caudate_L": [1], "Caudate_R": [2]}


def _records(offset: float):
    labels = np.zeros((10, 8, 6), dtype=np.int16)
    labels[1:4, 1:4, 1:4] = 1
    labels[6:9, 1:4, 1:4] = 2
    values = np.where(labels == 1, 0.05 + offset, np.where(labels == 2, 0.07 + offset, 0.0))
    return regional_statistics(values, labels, REGIONS, voxel_size=(1, 1, 1))


def _dataset(tmp_path):
    out = tmp_path / "derivatives"
    truth = {}
    for sub, ses, run, off in [("01", "1", "1", 0.0), ("01", "2", "1", 0.01),
                               ("02", "1", "1", 0.02), ("02", "1", "2", 0.03)]:
        name = f"sub-{sub}_ses-{ses}_run-{run}_desc-DGM_Chimap_stats.tsv"
        write_run_table(_records(off), out / f"sub-{sub}" / f"ses-{ses}" / "anat" / name,
                        measure="Chimap", atlas="DGM", sources=["bids:raw:x"])
        truth[(sub, ses, run)] = off
    # an R2* table must not leak into the Chimap cohort table
    write_run_table(_records(5.0), out / "sub-01" / "ses-1" / "anat" /
                    "sub-01_ses-1_run-1_desc-DGM_R2starmap_stats.tsv", measure="R2starmap")
    participants = tmp_path / "participants.tsv"
    participants.write_text("participant_id\tage\tsex\nsub-01\t34\tF\nsub-02\t71\tM\n")
    return out, participants, truth


def test_run_table_and_sidecar(tmp_path):
    tsv, side = write_run_table(_records(0.0), tmp_path / "sub-01_desc-DGM_Chimap_stats.tsv",
                                atlas="DGM")
    rows = read_tsv(tsv)
    assert [r["region"] for r in rows] == ["Caudate_L", "Caudate_R", "Caudate"]
    assert rows[0]["mean"] == pytest.approx(0.05)
    meta = json.loads(side.read_text())
    assert meta["Units"] == "ppm" and meta["mean"]["Units"] == "ppm"
    assert meta["volume_mm3"]["Units"] == "mm^3"
    assert all(c in meta for c in ("region", "hemisphere", *STAT_COLUMNS))
    assert not list(tmp_path.glob(".*"))          # no temporary files left behind
    umask = os.umask(0)
    os.umask(umask)
    assert tsv.stat().st_mode & 0o777 == 0o666 & ~umask   # not mkstemp's 0600


def test_r2star_units(tmp_path):
    _, side = write_run_table(_records(0.0), tmp_path / "sub-01_R2starmap_stats.tsv",
                              measure="R2starmap")
    assert json.loads(side.read_text())["p95"]["Units"] == "1/s"


def test_cohort_long_and_wide(tmp_path):
    out, participants, truth = _dataset(tmp_path)
    long_path, wide_path = write_cohort_tables(out, "Chimap", participants_tsv=participants)
    rows = read_tsv(long_path)
    assert len(rows) == 4 * 3                    # 4 runs x (2 sides + bilateral)
    for r in rows:
        sub = r["participant_id"].removeprefix("sub-")
        off = truth[(sub, str(r["session_id"]).removeprefix("ses-"), str(r["run"]))]
        expect = {"Caudate_L": 0.05, "Caudate_R": 0.07, "Caudate": 0.06}[r["region"]] + off
        assert r["mean"] == pytest.approx(expect, abs=1e-6)
        assert r["age"] == {"01": 34, "02": 71}[sub]
        assert r["sex"] == {"01": "F", "02": "M"}[sub]
    wide = read_tsv(wide_path)
    assert len(wide) == 4
    assert wide[3]["Caudate_R_mean"] == pytest.approx(0.07 + 0.03, abs=1e-6)
    assert wide[3]["run"] == 2 and wide[3]["age"] == 71
    meta = json.loads(wide_path.with_suffix(".json").read_text())
    assert meta["Caudate_L_mean"]["Units"] == "ppm"
    assert "Caudate_L_robust_mean" in meta


def test_cohort_without_participants_and_missing_tables(tmp_path):
    out, _, _ = _dataset(tmp_path)
    from qsmbids.stats.tables import find_run_tables

    records, cols = build_cohort_table(find_run_tables(out, "Chimap"), read_participants(None))
    assert cols[:3] == ["participant_id", "session_id", "run"]
    _, wide_cols = to_wide(records, cols, ("mean",))
    assert wide_cols == ["participant_id", "session_id", "run", "Caudate_L_mean",
                         "Caudate_R_mean", "Caudate_mean"]
    with pytest.raises(TableError, match="no per-run"):
        write_cohort_tables(tmp_path / "empty", "Chimap")


def test_entities_and_bad_tables(tmp_path):
    assert parse_entities("sub-01_ses-pre_acq-fast_run-2_desc-x_Chimap_stats.tsv") == {
        "sub": "01", "ses": "pre", "acq": "fast", "run": "2", "desc": "x"}
    bad = tmp_path / "sub-01_stats.tsv"
    bad.write_text("region\tmean\nCaudate_L\t0.1\t9\n")
    with pytest.raises(TableError, match=r"sub-01_stats\.tsv line 2"):
        read_tsv(bad)
    nosub = tmp_path / "x_stats.tsv"
    nosub.write_text("region\tmean\nCaudate_L\t0.1\n")
    with pytest.raises(TableError, match="sub- entity"):
        build_cohort_table([nosub])
