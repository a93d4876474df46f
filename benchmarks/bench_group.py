"""The group level at cohort size: time and peak memory of ``qsmbids BIDS OUT group``.

Each participant's outputs are generated, not reconstructed, with the pipeline's own
writers, exactly where and as a participant run leaves them: the regional
susceptibility table and its sidecar (``write_run_table``; 24 rows: eight structures,
left, right and bilateral), the participant QC table (``qc_row``/``write_qc_tsv``), the
basal-ganglia thumbnail (``write_thumbnail``), a venous table (OEF falling with age) and
a participant page. Values rise with
age as iron does; 1 % of the participants carry an outlier and 2 % a QC flag.
``participants.tsv`` gives ages 20-80.

Cases, in one run: the group level over 100 participants (the baseline), over
``--participants`` (default 1,000), and again after ``--added`` (default 50) more
participants were written (a cohort that grows): in a copy of the cohort's folder
without the cache, and in the cohort's folder itself, where the first group run left
its cache in ``OUTPUT_DIR/.qsmbids-cache`` (the incremental group level: only the new
participants' tables and thumbnails are read). Each group run
is its own process;
its wall time and peak memory (``VmHWM``) are printed with the ratio to the baseline.
Target (issue 18): 1,000 participants x 24 regions in <= 30 s and <= 2 GiB on 2 cores.

Run: ``.venv/bin/python benchmarks/bench_group.py [--participants N] [--added M]``.
Written under ``$QSMBIDS_BENCH_DIR`` (default /tmp/qsmbids-bench-group), rebuilt each run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ROOT = Path(os.environ.get("QSMBIDS_BENCH_DIR", "/tmp/qsmbids-bench-group"))
STRUCTURES = ("Caudate", "Putamen", "GlobusPallidus", "Thalamus", "SubstantiaNigra",
              "RedNucleus", "Dentate", "SubthalamicNucleus")
#: mean susceptibility at 20 years (ppm) and its rise per decade, per structure
VALUE_AT_20 = {"Caudate": 0.04, "Putamen": 0.03, "GlobusPallidus": 0.15, "Thalamus": 0.01,
               "SubstantiaNigra": 0.11, "RedNucleus": 0.09, "Dentate": 0.08,
               "SubthalamicNucleus": 0.08}
RISE_PER_DECADE = {"Caudate": 0.004, "Putamen": 0.008, "GlobusPallidus": 0.003,
                   "Thalamus": 0.0, "SubstantiaNigra": 0.005, "RedNucleus": 0.006,
                   "Dentate": 0.005, "SubthalamicNucleus": 0.003}


def _participant(out: Path, label: str, age: float, rng) -> None:
    """Write one participant's outputs as the participant level leaves them."""
    import numpy as np

    from qsmbids.derivatives.naming import NameContext, derivative_name, run_folder
    from qsmbids.report.figures import write_thumbnail
    from qsmbids.report.participant import THUMBNAIL_DESC, participant_qc_tsv
    from qsmbids.report.qc_metrics import RunQC, qc_warnings
    from qsmbids.report.qc_tables import qc_row, write_qc_tsv
    from qsmbids.stats.regional import STAT_COLUMNS
    from qsmbids.stats.tables import write_run_table

    entities = {"sub": label}
    records = []
    outlier = rng.random() < 0.01
    for structure in STRUCTURES:
        mean = VALUE_AT_20[structure] + RISE_PER_DECADE[structure] * (age - 20) / 10
        sides = {side: mean + rng.normal(0, 0.01) for side in ("L", "R")}
        if outlier and structure == "GlobusPallidus":
            sides = {side: value + 0.15 for side, value in sides.items()}
        sides["bilateral"] = (sides["L"] + sides["R"]) / 2
        for side, value in sides.items():
            name = structure if side == "bilateral" else f"{structure}_{side}"
            n = 800 if side == "bilateral" else 400
            stats = dict.fromkeys(STAT_COLUMNS, 0.0)
            stats.update(n_voxels=n, volume_mm3=float(n), mean=value, median=value,
                         std=0.02, iqr=0.025, p05=value - 0.03, p95=value + 0.03,
                         robust_mean=value, coverage=1.0, border_fraction=0.3)
            records.append({"region": name, "hemisphere": side, **stats})
    folder = run_folder(out, entities)
    table = folder / derivative_name(entities, "regions", NameContext())
    write_run_table(records, table, atlas="qsmbids")
    flagged = rng.random() < 0.02
    qc = RunQC(mask_volume_ml=float(rng.normal(1400, 100)), mask_edge_fraction=0.0,
               mask_edge_faces="", template_dice=0.95, chi_iqr=0.03,
               chi_zero_fraction=0.0, chi_p01=-0.1, chi_median=0.0, chi_p99=0.25,
               fraction_chi_outside_range=0.002, nuclei_contrast_ppm=0.1,
               echo_fit_residual_median=0.5 if flagged else 0.02)
    write_qc_tsv([qc_row(f"sub-{label}", None, f"sub-{label}", qc, qc_warnings(qc))],
                 participant_qc_tsv(out, f"sub-{label}"))
    slab = np.zeros((40, 48, 1), np.float32)
    slab[12:28, 14:34, 0] = rng.normal(0.05 + 0.002 * (age - 20), 0.02, (16, 20))
    write_thumbnail(slab, (2.0, 2.0, 2.0), (20, 24, 0),
                    folder.parent / "figures" / f"sub-{label}_desc-{THUMBNAIL_DESC}_qc.png",
                    half_width_mm=40.0)
    oef = float(np.clip(rng.normal(0.35 - 0.0005 * (age - 20), 0.04), 0.05, 0.8))
    veins = folder / derivative_name(entities, "veins_table", NameContext())
    veins.write_text("venous_chi\treference\tn_voxels\thematocrit\toef\tnote\n"
                     f"{oef * 3.39 * 0.42:.4f}\tCSF\t{int(rng.integers(20, 200))}\t0.42\t"
                     f"{oef:.4f}\tn/a\n")
    veins.with_suffix(".json").write_text(json.dumps({"Measure": "Veins"}))
    (out / f"sub-{label}.html").write_text("<html></html>\n")


def _cohort(root: Path, labels: list[str], ages: dict[str, float], seed: int) -> None:
    import numpy as np

    rng = np.random.default_rng(seed)
    bids, out = root / "bids", root / "out"
    bids.mkdir(parents=True, exist_ok=True)
    (bids / "dataset_description.json").write_text(json.dumps(
        {"Name": "group benchmark", "BIDSVersion": "1.10.0"}))
    rows = ["participant_id\tage\tsex"] + [f"sub-{k}\t{ages[k]:.1f}\t{'FM'[i % 2]}"
                                          for i, k in enumerate(sorted(ages))]
    (bids / "participants.tsv").write_text("\n".join(rows) + "\n")
    for label in labels:
        _participant(out, label, ages[label], rng)


def _group(root: Path) -> dict:
    """Run the group level in its own process: wall s, peak MiB, exit code."""
    code = ("import resource, sys, time; sys.argv = ['qsmbids']; "
            "from qsmbids.cli.main import main; t = time.perf_counter(); "
            f"rc = main([{str(root / 'bids')!r}, {str(root / 'out')!r}, 'group']); "
            "wall = time.perf_counter() - t; "
            "peak = int([l for l in open('/proc/self/status') if l.startswith('VmHWM')][0]"
            ".split()[1]) / 1024; print('RESULT', rc, wall, peak)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO, check=False)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT")), None)
    if line is None:
        raise RuntimeError(f"group level failed: {proc.stderr[-2000:]}")
    _, rc, wall, peak = line.split()
    return {"rc": int(rc), "wall": float(wall), "peak": float(peak)}


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    sys.path.insert(0, str(REPO))
    import numpy as np

    def option(name: str, default: int) -> int:
        return int(argv[argv.index(name) + 1]) if name in argv else default

    n, added = option("--participants", 1000), option("--added", 50)
    rng = np.random.default_rng(0)
    ages = {f"{k:04d}": float(rng.uniform(20, 80)) for k in range(1, n + added + 1)}
    labels = sorted(ages)
    results = []
    for name, count, extra in (("baseline", 100, 0), ("cohort", n, 0),
                               ("grown, no cache", n, added), ("grown, cached", n, added)):
        root = ROOT / name.replace(" ", "-").replace(",", "")
        if name == "grown, cached":  # the cohort's own folder grows (files keep their inodes)
            root = ROOT / "cohort"
            t0 = time.perf_counter()
            _cohort(root, labels[count:count + extra], ages, seed=count + extra)
            made = time.perf_counter() - t0
        elif extra == 0:
            shutil.rmtree(root, ignore_errors=True)
            t0 = time.perf_counter()
            _cohort(root, labels[:count], {k: ages[k] for k in labels[:count]}, seed=count)
            made = time.perf_counter() - t0
        else:  # a copy of the cohort's outputs without the cache, then more participants
            shutil.rmtree(root, ignore_errors=True)
            shutil.copytree(ROOT / "cohort", root)
            shutil.rmtree(root / "out" / ".qsmbids-cache")
            t0 = time.perf_counter()
            _cohort(root, labels[count:count + extra], ages, seed=count + extra)
            made = time.perf_counter() - t0
        result = _group(root)
        long_table = root / "out" / "group_Chimap_regions.tsv"
        long_rows = sum(1 for _ in long_table.open()) - 1 if long_table.is_file() else 0
        results.append((name, count + extra, made, result, long_rows))
        print(f"  done: {name} ({count + extra} participants, outputs written in "
              f"{made:.1f} s): group {result['wall']:.1f} s", flush=True)
    base = results[0][3]
    print(f"{'case':16s} {'participants':>12s} {'rows':>7s} {'group s':>8s} {'ratio':>6s} "
          f"{'peak MiB':>9s} {'ratio':>6s} {'exit':>4s}")
    for name, count, _, r, rows in results:
        print(f"{name:16s} {count:12d} {rows:7d} {r['wall']:8.1f} "
              f"{r['wall'] / base['wall']:6.2f} {r['peak']:9.0f} {r['peak'] / base['peak']:6.2f} "
              f"{r['rc']:4d}")
    cohort = results[1][3]
    verdict = "meets" if cohort["wall"] <= 30 and cohort["peak"] <= 2048 else "MISSES"
    print(f"target (1,000 participants x 24 regions: <= 30 s, <= 2 GiB): {verdict} "
          f"({cohort['wall']:.1f} s, {cohort['peak']:.0f} MiB at {results[1][1]})")


if __name__ == "__main__":
    main()
