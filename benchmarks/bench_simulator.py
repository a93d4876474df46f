"""Head phantom, subject simulation and BIDS writing: time and peak memory per case.

Each case runs in its own Python process, so its peak resident memory (``VmHWM``)
is its own. Wall and CPU time exclude imports; the in-run baseline is one real FFT
(``scipy.fft.rfftn``, float32) of the 1 mm phantom grid (181x217x181). Targets:
phantom < 2 s at 2 mm.

Run: ``.venv/bin/python benchmarks/run.py simulator`` (or this file directly).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

from _memory import peak_mib  # benchmarks/ is on sys.path when run

CASES = {
    "baseline rfftn 181x217x181": "baseline",
    "phantom 3 mm": "phantom:3.0",
    "phantom 2 mm": "phantom:2.0",
    "phantom 1.5 mm": "phantom:1.5",
    "phantom 1 mm": "phantom:1.0",
    "subject anatomy 2 mm (warp, oblique)": "anatomy:2.0",
    "subject anatomy 1 mm (warp, oblique)": "anatomy:1.0",
    "subject + 4-echo GRE 2 mm": "simulate:2.0",
    "BIDS dataset, 1 subject, 2 mm (.nii.gz, truth)": "dataset:2.0",
}


def _run_case(case: str) -> dict:
    import numpy as np
    import scipy.fft

    from qsmbids.sim.bids_writer import SimulationSettings, simulate_dataset
    from qsmbids.sim.phantom import make_head_phantom, phantom_grid
    from qsmbids.sim.subject import (
        AcquisitionSpec,
        SubjectSpec,
        make_subject_anatomy,
        simulate_subject,
    )

    kind, _, arg = case.partition(":")
    spec = SubjectSpec(seed=1, oblique_deg=15.0, warp_mm=3.0)
    jobs = {
        "baseline": lambda: scipy.fft.rfftn(
            np.ones(phantom_grid(1.0)[0], np.float32), workers=1),
        "phantom": lambda: make_head_phantom(float(arg or 1)),
        "anatomy": lambda: make_subject_anatomy(spec, (float(arg or 1),) * 3),
        "simulate": lambda: simulate_subject(spec, AcquisitionSpec(voxel_size_mm=float(arg or 1))),
        "dataset": lambda: simulate_dataset(
            tempfile.mkdtemp(prefix="qsmbids-bench-"),
            SimulationSettings(n_subjects=1, voxel_size_mm=float(arg or 1))),
    }
    wall, cpu = time.perf_counter(), time.process_time()
    jobs[kind]()
    return {"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu,
            "peak": peak_mib()}


def main() -> None:
    rows = []
    for label, case in CASES.items():
        out = subprocess.run([sys.executable, __file__, "--case", case], capture_output=True,
                             text=True, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        rows.append((label, json.loads(out.stdout.strip().splitlines()[-1])))
    base = rows[0][1]["cpu"]
    print(f"{'case':48s} {'wall s':>8s} {'cpu s':>8s} {'x FFT':>8s} {'peak MiB':>9s}")
    for label, r in rows:
        print(f"{label:48s} {r['wall']:8.2f} {r['cpu']:8.2f} {r['cpu'] / base:8.1f} "
              f"{r['peak']:9.0f}")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--case":
        print(json.dumps(_run_case(sys.argv[2])))
    else:
        main()
