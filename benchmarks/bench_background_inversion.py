"""Background removal and dipole inversion on a 224x224x160 volume at 1 mm, 3 T.

Data: the anatomical head phantom (qsmbids.sim.phantom, 1 mm) placed in a 224x224x160
grid (x, y padded, z cropped above the brain); total field = dipole field of all of its
chi (sinuses, bone), local field truth = field of the chi inside the brain mask.
Background methods get the total field, inversions the true local field (0.001 ppm
noise); the default path (background removal + default inversion as the pipeline
runs it: edge weight, free sources outside the mask; ``-bounded``: TV over the whole
grid, the earlier default) the total field.

Each step runs in its own Python process (so its peak resident memory, ``VmHWM``, is
its own), after a warm-up call on a small volume (numba kernels load from the on-disk
cache). Columns: wall and CPU seconds (CPU is what a busy shared machine does not
inflate), the wall time relative to TKD (the in-run baseline), the number of FFTs
(calls of scipy.fft's n-D transforms on the padded grid, counted by wrapping them),
the peak RSS and the part of it above the RSS after loading the inputs, and accuracy:
residual background energy for background removal, NRMSE / XSIM (qsm-ci, whole brain
mask) and the worst deep-nucleus mean error after whole-brain referencing for
inversions. FFTs use ``workers=2``.

Run: ``.venv/bin/python benchmarks/run.py background_inversion`` (or this file directly).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _memory import peak_mib, rss_mib  # benchmarks/ is on sys.path when run

SHAPE = (224, 224, 160)
VOXEL = (1.0, 1.0, 1.0)
WORKERS = 2
NOISE_PPM = 0.001
TARGET_S, TARGET_GIB = 20.0, 3.0
BACKGROUND = ("vsharp", "pdf", "resharp")
INVERSION = ("tkd", "tikhonov", "tv", "rts")


def _fit(array: np.ndarray) -> np.ndarray:
    """Place a 181x217x181 phantom map in SHAPE: pad x/y centrally, keep z 0..159."""
    out = np.zeros(SHAPE, array.dtype)
    x0, y0 = (SHAPE[0] - array.shape[0]) // 2, (SHAPE[1] - array.shape[1]) // 2
    out[x0:x0 + array.shape[0], y0:y0 + array.shape[1], :] = array[:, :, :SHAPE[2]]
    return out


def _prepare(folder: Path) -> None:
    from qsmbids.recon.dipole import forward_field
    from qsmbids.sim.phantom import make_head_phantom, to_qsmci_seg

    head = make_head_phantom(1.0)
    chi, mask, labels = _fit(head.chi), _fit(head.brain_mask), _fit(head.labels)
    total = forward_field(chi, VOXEL, pad_fraction=0.5, workers=WORKERS)
    local = forward_field(np.where(mask, chi, 0), VOXEL, pad_fraction=0.5, workers=WORKERS)
    noise = np.random.default_rng(0).normal(0, NOISE_PPM, SHAPE).astype(np.float32)
    np.save(folder / "total.npy", np.where(mask, total + noise, 0).astype(np.float32))
    np.save(folder / "local.npy", local)
    np.save(folder / "local_noisy.npy", np.where(mask, local + noise, 0).astype(np.float32))
    np.save(folder / "mask.npy", mask)
    np.save(folder / "chi.npy", chi)
    np.save(folder / "labels.npy", labels)
    np.save(folder / "seg.npy", to_qsmci_seg(labels))


def _count_ffts() -> dict:
    """Wrap scipy.fft's n-D transforms so every call is counted."""
    import scipy.fft

    counter = {"n": 0}
    for name in ("rfftn", "irfftn", "fftn", "ifftn"):
        original = getattr(scipy.fft, name)

        def counted(*args, _original=original, **kwargs):
            counter["n"] += 1
            return _original(*args, **kwargs)

        setattr(scipy.fft, name, counted)
    return counter


def _warm_up() -> None:
    from qsmbids.recon.background import remove_background
    from qsmbids.recon.inversion import invert_dipole

    mask = np.zeros((24, 24, 24), bool)
    mask[4:20, 4:20, 4:20] = True
    field = np.where(mask, 0.01, 0).astype(np.float32)
    remove_background(field, mask, method="vsharp", radii_mm=(3.0, 2.0))
    for method in BACKGROUND[1:]:
        remove_background(field, mask, method=method)
    for method in INVERSION:
        options = {"max_iter": 2} if method in ("tv", "rts") else {}
        invert_dipole(field, mask, method=method, **options)


def _inversion_accuracy(chi, d) -> str:
    from qsm_ci.qsm_eval import score_arrays

    from qsmbids.recon.referencing import reference_susceptibility

    mask = d["mask"]
    recon, _ = reference_susceptibility(chi.chi, chi.mask)
    truth, _ = reference_susceptibility(d["chi"], chi.mask)
    metrics, _ = score_arrays(recon, np.where(chi.mask, truth, 0), chi.mask, kind="chi",
                              seg=d["seg"])
    worst = max(abs(recon[d["labels"] == k].mean() - truth[d["labels"] == k].mean())
                for k in range(1, 15))
    cover = chi.mask.sum() / mask.sum()
    return (f"NRMSE {metrics['nrmse']:.1f}% XSIM {metrics['xsim']:.3f} nuclei <= "
            f"{worst:.4f} ppm" + (f" (on {100 * cover:.0f}% of mask)" if cover < 1 else ""))


def _step(name: str, folder: Path) -> dict:
    from qsmbids.recon.background import remove_background
    from qsmbids.recon.inversion import DEFAULT_INVERSION_METHOD, invert_dipole

    d = {key: np.load(folder / f"{key}.npy") for key in
         ("total", "local", "local_noisy", "mask", "chi", "labels", "seg")}
    _warm_up()
    counter = _count_ffts()
    base_rss = rss_mib()
    kind, method = name.split(":")
    cpu_start, start = time.process_time(), time.perf_counter()
    if kind == "bg":
        result = remove_background(d["total"], d["mask"], VOXEL, method=method,
                                   workers=WORKERS)
    elif kind == "inv":
        result = invert_dipole(d["local_noisy"], d["mask"], VOXEL, method=method,
                               workers=WORKERS)
    else:  # default path: background removal + default inversion as the pipeline runs
        # it (edge-weighted TV, sources outside the mask free); "-bounded": TV over the
        # whole grid (the default before 2026-12-03, the in-run baseline)
        from qsmbids.recon.reliability import edge_weight

        method, _, variant = method.partition("-")
        local = remove_background(d["total"], d["mask"], VOXEL, method=method,
                                  workers=WORKERS)
        result = invert_dipole(local.local_field, local.mask, VOXEL,
                               method=DEFAULT_INVERSION_METHOD, workers=WORKERS,
                               weight=edge_weight(local.mask, VOXEL),
                               free_outside=variant != "bounded")
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    ffts, peak, step = counter["n"], peak_mib(), peak_mib() - base_rss
    if kind == "bg":
        valid = result.mask
        background = (d["total"] - d["local"])[valid]
        error = (result.local_field - d["local"])[valid]
        error -= error.mean()
        accuracy = (f"residual bg energy {np.sum(error**2) / np.sum(background**2):.4f}, "
                    f"local RMSE {np.sqrt(np.mean(error**2)) * 1000:.2f} ppb, mask kept "
                    f"{100 * valid.sum() / d['mask'].sum():.0f}%")
    else:
        accuracy = _inversion_accuracy(result, d)
    info = {k: v for k, v in result.info.items() if "iterations" in k}
    return {"seconds": seconds, "cpu": cpu, "ffts": ffts, "peak_mib": peak, "step_mib": step,
            "accuracy": accuracy, "info": info}


def _run_child(name: str, folder: Path) -> dict:
    result = subprocess.run([sys.executable, __file__, "--step", name, str(folder)],
                            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"benchmark step {name} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    """Simulate once, run each step in a fresh process, print the table."""
    print(f"volume {SHAPE}, {VOXEL} mm, 3 T head phantom; {os.cpu_count()} CPUs, "
          f"scipy.fft workers={WORKERS}; load average {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory(prefix="qsmbids-bench-") as tmp:
        folder = Path(tmp)
        start = time.perf_counter()
        _prepare(folder)
        print(f"phantom + fields: {time.perf_counter() - start:.1f} s")
        steps = ([f"inv:{m}" for m in INVERSION] + [f"bg:{m}" for m in BACKGROUND]
                 + ["path:pdf", "path:pdf-bounded", "path:vsharp"])
        rows = {name: _run_child(name, folder) for name in steps}
    base = rows["inv:tkd"]["seconds"]
    header = (f"{'step':14s} {'wall s':>7s} {'cpu s':>7s} {'x TKD':>7s} {'FFTs':>5s} "
              f"{'peak MiB':>9s} {'step MiB':>9s}  iterations / accuracy")
    print(header)
    print("-" * len(header))
    for name, row in rows.items():
        print(f"{name:14s} {row['seconds']:7.2f} {row['cpu']:7.2f} "
              f"{row['seconds'] / base:7.1f} {row['ffts']:5d} {row['peak_mib']:9.0f} "
              f"{row['step_mib']:9.0f}  {row['info'] or ''} {row['accuracy']}")
    for path in ("path:pdf", "path:vsharp"):
        row = rows[path]
        ok = row["seconds"] <= TARGET_S and row["peak_mib"] <= TARGET_GIB * 1024
        print(f"default path {path[5:]} + tv: {row['seconds']:.1f} s (cpu {row['cpu']:.1f} s), "
              f"peak {row['peak_mib'] / 1024:.2f} GiB; target <= {TARGET_S:g} s and "
              f"<= {TARGET_GIB:g} GiB: {'met' if ok else 'NOT met'}")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--step":
        print(json.dumps(_step(sys.argv[2], Path(sys.argv[3]))))
    else:
        main()
