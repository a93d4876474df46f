"""Participant QC report on the head phantom at 1 mm and 2 mm: time and peak memory.

Each size runs in its own Python process (so its peak resident memory, ``VmHWM``, is
its own). The inputs (magnitude, mask, total/local field, QSM, R2*, atlas labels,
registered template, echo-fit residual, regional table) are simulated once per size
and written as NIfTI; the timed step is one call of ``write_participant_report``
(loading, QC metrics, 9 figures + a thumbnail, HTML, QC TSV). Times: wall clock and
CPU time of the process (what a busy shared machine does not inflate). The in-run
baseline is reading the same NIfTI files once (``nibabel`` load + ``get_fdata``).

Run: ``.venv/bin/python benchmarks/run.py report`` (or this file directly).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
from _memory import peak_mib  # benchmarks/ is on sys.path when run

SIZES_MM = (2.0, 1.0)
TARGET_CPU_S = 10.0  # a report should cost well under the 3-minute participant run


_IMAGES = ("magnitude", "mask", "field", "local_field", "qsm", "r2star", "dseg", "template",
           "echo_fit_residual")


def _prepare(voxel_mm: float, folder: Path) -> None:
    """Simulate and write one run's inputs; store their paths in ``folder/run.json``."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from report_inputs import synthetic_run

    run = synthetic_run(folder / "in", "sub-01", age=60.0, voxel_mm=voxel_mm)
    paths = {name: str(getattr(run, name)) for name in (*_IMAGES, "regional_tsv")}
    (folder / "run.json").write_text(json.dumps(paths))


def _report(folder: Path) -> dict:
    """Time one participant report on the prepared inputs (fresh process)."""
    from qsmbids.report.participant import RunReportInputs, write_participant_report

    paths = json.loads((folder / "run.json").read_text())
    run = RunReportInputs(participant_id="sub-01", run_id="sub-01_run-1", **paths)
    wall, cpu = time.perf_counter(), time.process_time()
    for name in _IMAGES:
        nib.load(paths[name]).get_fdata()
    load_wall, load_cpu = time.perf_counter() - wall, time.process_time() - cpu
    shape = nib.load(paths["qsm"]).shape
    wall, cpu = time.perf_counter(), time.process_time()
    report = write_participant_report(folder / "out", [run], methods_text="benchmark")
    return {"shape": "x".join(map(str, shape)),
            "wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu,
            "load_wall_s": load_wall, "load_cpu_s": load_cpu, "peak_mib": peak_mib(),
            "figures": len(report.figures)}


def main() -> None:
    rows = []
    for voxel_mm in SIZES_MM:
        with tempfile.TemporaryDirectory(prefix="qsmbids-bench-report-") as tmp:
            subprocess.run([sys.executable, __file__, "--prepare", str(voxel_mm), tmp],
                           check=True)
            out = subprocess.run([sys.executable, __file__, "--report", tmp],
                                 capture_output=True, text=True, check=True,
                                 env={**os.environ, "OMP_NUM_THREADS": "1"})
            rows.append({"voxel_mm": voxel_mm,
                         **json.loads(out.stdout.strip().splitlines()[-1])})
    print(f"{'voxel':>6} {'grid':>12} {'figs':>5} {'wall s':>7} {'CPU s':>6} "
          f"{'CPU/load':>9} {'peak MiB':>9} {'target':>12}")
    for r in rows:
        ratio = r["cpu_s"] / max(r["load_cpu_s"], 1e-9)
        verdict = "ok" if r["cpu_s"] <= TARGET_CPU_S else "over"
        print(f"{r['voxel_mm']:>5g}mm {r['shape']:>12} {r['figures']:>5} {r['wall_s']:>7.2f} "
              f"{r['cpu_s']:>6.2f} {ratio:>8.1f}x {r['peak_mib']:>9.0f} "
              f"{f'<={TARGET_CPU_S:g} s ' + verdict:>12}")
    print("baseline: reading the 9 input NIfTI files once; peak: VmHWM of the report process "
          "(Python + imports + the report)")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--prepare":
        _prepare(float(sys.argv[2]), Path(sys.argv[3]))
    elif len(sys.argv) == 3 and sys.argv[1] == "--report":
        print(json.dumps(_report(Path(sys.argv[2]))))
    else:
        main()
