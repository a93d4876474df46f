"""Whole participant pipeline on a simulated subject: per-node time and peak memory.

Simulates one subject with the BIDS simulator (default 1 mm, 4 echoes, 3 T,
SNR 50; the phantom warped and repositioned), builds an atlas from the phantom's
own template and labels (same layout as a real atlas, so registration runs in
full), then runs
``qsmbids BIDS_DIR OUTPUT_DIR participant`` in a subprocess and prints, per node,
wall time, its share of the run and the peak resident memory of the process that
ran it (from the run log), plus the whole run's wall time and the largest process
peak, the graph's span and the time outside it (start-up, the report). Target
(issue 18): whole run <= 60 s and <= 2 GiB on 2 cores at 1 mm, 4 echoes.

Run from the repository root::

    .venv/bin/python benchmarks/bench_pipeline.py            # 1 mm, 4 echoes
    .venv/bin/python benchmarks/bench_pipeline.py --voxel 2  # quick
"""

from __future__ import annotations

import argparse
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib

ECHO_TIMES_S = (0.004, 0.010, 0.016, 0.022, 0.028, 0.034)


def simulate(base: Path, voxel: float, n_echoes: int, *, snr: float = 50.0):
    """One simulated subject (issue 5's BIDS writer) and the phantom atlas; returns paths."""
    from qsmbids.cli.demo import write_phantom_atlas
    from qsmbids.sim.bids_writer import SimulationSettings, simulate_dataset

    if (base / "bids/dataset_description.json").is_file() and (base / "atlas/atlas.json"
                                                                ).is_file():
        return base / "bids", base / "atlas"  # reuse a kept dataset (--keep)
    simulate_dataset(base / "bids", SimulationSettings(
        n_subjects=1, voxel_size_mm=voxel, echo_times_s=ECHO_TIMES_S[:n_echoes], snr=snr,
        groundtruth=False))
    return base / "bids", write_phantom_atlas(base / "atlas", voxel)


_END = re.compile(r"end (\w+) \(([\d.]+) s(?:, peak ([\d.]+) GB)?\)")


_STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) (start \w+|run complete)", re.M)


def graph_span_s(log: Path) -> float | None:
    """Seconds from the first node's start to ``run complete`` in the last run of the log
    (the log's stamps are whole seconds: +-1 s), or None."""
    from datetime import datetime

    text = log.read_text()
    stamps = [datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S")
              for m in _STAMP.finditer(text[text.rfind("qsmbids run of"):])]
    return (stamps[-1] - stamps[0]).total_seconds() if len(stamps) >= 2 else None


def parse_log(log: Path) -> list[tuple[str, float, float | None]]:
    """(node, seconds, peak GB) per finished node from a run log."""
    rows = []
    text = log.read_text()
    text = text[text.rfind("qsmbids run of"):]  # the log is appended to: last run only
    for match in _END.finditer(text):
        peak = float(match.group(3)) if match.group(3) else None
        rows.append((match.group(1), float(match.group(2)), peak))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--voxel", type=float, default=1.0, help="mm (isotropic)")
    parser.add_argument("--echoes", type=int, default=4)
    parser.add_argument("--nprocs", type=int, default=2)
    parser.add_argument("--omp-nthreads", type=int, default=None,
                        help="threads per node (default: --nprocs, one node at a time)")
    parser.add_argument("--preset", default="accurate", choices=("fast", "accurate"))
    parser.add_argument("--no-atlas", action="store_true", help="skip registration/tables")
    parser.add_argument("--no-veins", action="store_true",
                        help="skip the vein outputs (SWI, minIP, venogram, vein mask, OEF)")
    parser.add_argument("--keep", type=Path, default=None, help="keep the data in this folder")
    args = parser.parse_args(argv)
    base = args.keep or Path(tempfile.mkdtemp(prefix="qsmbids-bench-"))
    t0 = time.perf_counter()
    bids, atlas = simulate(base, args.voxel, args.echoes)
    atlas = None if args.no_atlas else atlas
    setup_s = time.perf_counter() - t0
    cmd = [sys.executable, "-m", "qsmbids", str(bids), str(base / "out"), "participant",
           "--nprocs", str(args.nprocs), "--omp-nthreads", str(args.omp_nthreads or args.nprocs),
           "-w",
           str(base / "work"), "--preset", args.preset, "--overwrite", "--no-progress"]
    cmd += ["--atlas", "none"] if atlas is None else ["--atlas-dir", str(atlas)]
    cmd += ["--no-veins"] if args.no_veins else []
    shutil.rmtree(base / "work", ignore_errors=True)  # time every node, no nipype cache
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    max_child_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024**2
    print(proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "")
    rows = parse_log(base / "out/sub-01/log/sub-01.log")
    shape = nib.load(next((bids / "sub-01/anat").glob("*echo-1_part-mag*.nii*"))).shape
    print(f"\nqsmbids participant pipeline: {shape[0]}x{shape[1]}x{shape[2]} at "
          f"{args.voxel:g} mm, {args.echoes} echoes, preset {args.preset}, "
          f"{args.nprocs} procs x {args.omp_nthreads or args.nprocs} threads "
          f"(simulation {setup_s:.0f} s, not counted)")
    print(f"{'node':<20}{'seconds':>9}{'x of run':>10}{'peak GB':>9}")
    for node, seconds, peak in rows:
        peak_text = f"{peak:9.2f}" if peak is not None else f"{'-':>9}"
        print(f"{node:<20}{seconds:9.1f}{seconds / wall:10.2f}{peak_text}")
    peak = max([max_child_gb] + [p for _, _, p in rows if p is not None])
    span = graph_span_s(base / "out/sub-01/log/sub-01.log")
    if span is not None:  # start-up (imports, discovery) and the report after the graph
        print(f"{'graph (+-1 s)':<20}{span:9.0f}{span / wall:10.2f}{'-':>9}")
        print(f"{'outside the graph':<20}{wall - span:9.0f}{(wall - span) / wall:10.2f}"
              f"{'-':>9}")
    print(f"{'whole run (wall)':<20}{wall:9.1f}{1.0:10.2f}{peak:9.2f}")
    print("\npeak GB of the whole run = largest resident set of any process of the run "
          "(MultiProc runs up to --nprocs nodes at once)")
    print(f"target (issue 18, 1 mm, 4 echoes, 2 cores): <= 60 s and <= 2 GiB -> "
          f"{'met' if wall <= 60 else 'NOT met'} (time), "
          f"{'met' if peak <= 2 else 'NOT met'} (largest process; sum of {args.nprocs} "
          f"concurrent processes <= {args.nprocs * peak:.1f} GB)")
    if proc.returncode != 0:
        print(proc.stderr[-3000:])
    print(f"data in {base}")
    return proc.returncode


if __name__ == "__main__":
    raise SystemExit(main())
