"""Whole participant pipeline on a simulated subject: per-node time and peak memory.

Simulates one subject from the qsmbids head phantom (default 1 mm, 4 echoes,
3 T, SNR 50), writes it as BIDS, builds an atlas from the phantom's own template
and labels (same layout as a real atlas, so registration runs in full), then runs
``qsmbids BIDS_DIR OUTPUT_DIR participant`` in a subprocess and prints, per node,
wall time, its share of the run and the peak resident memory of the process that
ran it (from the run log), plus the whole run's wall time and the largest process
peak. Target (issue 7): whole run <= 3 min and <= 6 GiB on 2 cores.

Run from the repository root::

    .venv/bin/python benchmarks/bench_pipeline.py            # 1 mm, 4 echoes
    .venv/bin/python benchmarks/bench_pipeline.py --voxel 2  # quick
"""

from __future__ import annotations

import argparse
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from gre_dataset import new_dataset, write_signal  # noqa: E402

from qsmbids.recon.dipole import b0_direction_from_affine  # noqa: E402
from qsmbids.sim.signal import simulate_multi_echo_gre, smooth_phase_offset  # noqa: E402

ECHO_SPACING_S = 0.006
FIRST_ECHO_S = 0.004


def simulate_subject(root: Path, stem: str, voxel: float, n_echoes: int, *, snr: float = 50.0,
                     age: float = 40.0, seed: int = 0):
    """Simulate one phantom subject into ``root``; return the phantom (ground truth)."""
    from qsmbids.sim.phantom import make_head_phantom

    phantom = make_head_phantom(voxel, age_years=age)
    tes = tuple(FIRST_ECHO_S + ECHO_SPACING_S * n for n in range(n_echoes))
    rng = np.random.default_rng(seed)
    sig = simulate_multi_echo_gre(
        phantom.chi, phantom.m0, phantom.r2star, tes, 3.0, phantom.voxel_size,
        b0_direction_from_affine(phantom.affine), snr=snr,
        phase_offset_rad=smooth_phase_offset(phantom.chi.shape, rng=rng), rng=rng)
    write_signal(root, stem, sig.magnitude, sig.phase, phantom.affine, tes, 3.0)
    return phantom


def write_phantom_atlas(atlas_dir: Path, phantom, echo_time_s: float = FIRST_ECHO_S) -> Path:
    """An atlas (shared layout) whose template is the phantom's brain magnitude."""
    from qsmbids.atlas.model import write_atlas
    from qsmbids.atlas.regions import phantom_references, phantom_regions

    brain = phantom.brain_mask
    template = np.where(brain, phantom.m0 * np.exp(-phantom.r2star * echo_time_s), 0)
    labels = np.where(brain, phantom.labels, 0).astype(np.int16)
    write_atlas(atlas_dir, name="phantom", space="Phantom",
                template=nib.Nifti1Image(template.astype(np.float32), phantom.affine),
                labels=nib.Nifti1Image(labels, phantom.affine),
                label_names={k: v for k, v in phantom.label_names.items()
                             if k in set(np.unique(labels)) - {0}},
                regions=phantom_regions(), references=phantom_references(),
                template_mask=nib.Nifti1Image(brain.astype(np.uint8), phantom.affine))
    return atlas_dir


_END = re.compile(r"end (\w+) \(([\d.]+) s(?:, peak ([\d.]+) GB)?\)")


def parse_log(log: Path) -> list[tuple[str, float, float | None]]:
    """(node, seconds, peak GB) per finished node from a run log."""
    rows = []
    for match in _END.finditer(log.read_text()):
        peak = float(match.group(3)) if match.group(3) else None
        rows.append((match.group(1), float(match.group(2)), peak))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--voxel", type=float, default=1.0, help="mm (isotropic)")
    parser.add_argument("--echoes", type=int, default=4)
    parser.add_argument("--nprocs", type=int, default=2)
    parser.add_argument("--preset", default="accurate", choices=("fast", "accurate"))
    parser.add_argument("--no-atlas", action="store_true", help="skip registration/tables")
    parser.add_argument("--keep", type=Path, default=None, help="keep the data in this folder")
    args = parser.parse_args(argv)
    base = args.keep or Path(tempfile.mkdtemp(prefix="qsmbids-bench-"))
    bids = new_dataset(base / "bids")
    t0 = time.perf_counter()
    phantom = simulate_subject(bids, "sub-01/anat/sub-01", args.voxel, args.echoes)
    atlas = None if args.no_atlas else write_phantom_atlas(base / "atlas", phantom)
    setup_s = time.perf_counter() - t0
    cmd = [sys.executable, "-m", "qsmbids", str(bids), str(base / "out"), "participant",
           "--nprocs", str(args.nprocs), "--omp-nthreads", str(args.nprocs), "-w",
           str(base / "work"), "--preset", args.preset, "--overwrite", "--no-progress"]
    cmd += ["--atlas", "none"] if atlas is None else ["--atlas-dir", str(atlas)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    max_child_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024**2
    print(proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "")
    rows = parse_log(base / "out/sub-01/log/sub-01.log")
    shape = phantom.chi.shape
    print(f"\nqsmbids participant pipeline: {shape[0]}x{shape[1]}x{shape[2]} at "
          f"{args.voxel:g} mm, {args.echoes} echoes, preset {args.preset}, "
          f"{args.nprocs} procs (simulation {setup_s:.0f} s, not counted)")
    print(f"{'node':<20}{'seconds':>9}{'x of run':>10}{'peak GB':>9}")
    for node, seconds, peak in rows:
        peak_text = f"{peak:9.2f}" if peak is not None else f"{'-':>9}"
        print(f"{node:<20}{seconds:9.1f}{seconds / wall:10.2f}{peak_text}")
    print(f"{'whole run (wall)':<20}{wall:9.1f}{1.0:10.2f}{max_child_gb:9.2f}")
    print("\npeak GB of the whole run = largest resident set of any process of the run "
          "(MultiProc runs up to --nprocs nodes at once)")
    print(f"target: <= 180 s and <= 6 GiB -> {'met' if wall <= 180 else 'NOT met'} (time), "
          f"{'met' if max_child_gb <= 6 else 'NOT met'} (memory)")
    if proc.returncode != 0:
        print(proc.stderr[-3000:])
    print(f"data in {base}")
    return proc.returncode


if __name__ == "__main__":
    raise SystemExit(main())
