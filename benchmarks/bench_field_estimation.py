"""Field estimation on a 224x224x160 volume with 4 echoes: time and peak memory per step.

Each step runs in its own Python process (so its peak resident memory,
``VmHWM``, is its own) on data simulated once and stored in a temporary folder.
Times (wall clock, and CPU time of the process, which is what a busy shared
machine does not inflate) exclude loading the inputs; "peak" is the process's peak RSS, "step" the
part of it above the RSS after imports and loading. The in-run baseline is one
real FFT of the volume (``scipy.fft.rfftn``, float32). Numba compile time is
measured with an empty cache (``NUMBA_CACHE_DIR``) against the on-disk cache.

Run: ``.venv/bin/python benchmarks/run.py field_estimation`` (or this file directly).
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
ECHO_TIMES = (0.004, 0.010, 0.016, 0.022)
FIELD_STRENGTH_T = 3.0
SNR = 20.0
TARGET_S, TARGET_GIB = 15.0, 3.0


def _prepare(folder: Path) -> None:
    from qsmbids.sim.ellipsoid_head import ellipsoid_head
    from qsmbids.sim.signal import simulate_multi_echo_gre, smooth_phase_offset

    phantom = ellipsoid_head(SHAPE, VOXEL)
    sim = simulate_multi_echo_gre(
        phantom.chi, phantom.m0, phantom.r2star, ECHO_TIMES, FIELD_STRENGTH_T, VOXEL,
        snr=SNR, rng=0, extra_field_ppm=phantom.background_field_ppm,
        phase_offset_rad=smooth_phase_offset(SHAPE, rng=1))
    siemens = np.clip(np.round(sim.phase * (4096 / np.pi)), -4096, 4095).astype(np.int16)
    np.save(folder / "phase_siemens.npy", siemens)
    np.save(folder / "magnitude.npy", sim.magnitude)
    np.save(folder / "brain.npy", phantom.brain_mask)
    np.save(folder / "offset.npy", sim.phase_offset_rad)
    np.save(folder / "field_hz.npy", sim.total_field_ppm * np.float32(127.7324))
    np.save(folder / "r2star.npy", phantom.r2star)


def _exact_percent(unwrapped: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> float:
    turns = np.round((unwrapped - truth)[mask] / (2 * np.pi)).astype(np.int64)
    return 100 * np.bincount(turns - turns.min()).max() / turns.size


def _step(name: str, folder: Path) -> dict:
    """Run one step in this process; return its timing, memory and accuracy."""
    import scipy.fft

    from qsmbids.recon.echo_fit import estimate_phase_offset, fit_field, remove_phase_offset
    from qsmbids.recon.field_estimation import FieldEstimationSettings, estimate_field
    from qsmbids.recon.masking import brain_mask
    from qsmbids.recon.phase_scaling import scale_phase_to_radians, wrap_to_pi
    from qsmbids.recon.relaxometry import estimate_r2star
    from qsmbids.recon.unwrap import UnwrapSettings, unwrap_echoes
    from qsmbids.recon.unwrap_region_growing import QualityInputs, unwrap_region_growing

    d = {key: np.load(folder / f"{key}.npy") for key in
         ("phase_siemens", "magnitude", "brain", "offset", "field_hz", "r2star")}
    mask, last = d["brain"], len(ECHO_TIMES) - 1
    if name in ("offset", "unwrap-echo1", "unwrap-temporal", "unwrap-spatial",
                "unwrap-laplacian", "fit"):
        d["phase"] = scale_phase_to_radians(d["phase_siemens"]).phase
    if name.startswith(("unwrap", "fit")):
        d["phase"] = remove_phase_offset(d["phase"], d["offset"])
    if name == "fit":
        d["phase"] = unwrap_echoes(d["phase"], d["magnitude"], ECHO_TIMES, mask, VOXEL)
    truth = [2 * np.pi * d["field_hz"] * te for te in ECHO_TIMES]
    settings = {"unwrap-temporal": UnwrapSettings(echo_mode="temporal"),
                "unwrap-spatial": UnwrapSettings(echo_mode="spatial"),
                "unwrap-laplacian": UnwrapSettings("laplacian", "spatial")}
    work = {
        "fft": lambda: scipy.fft.rfftn(d["magnitude"][..., 0], workers=-1),
        "scaling": lambda: scale_phase_to_radians(d["phase_siemens"]),
        "mask": lambda: brain_mask(d["magnitude"], VOXEL).mask,
        "offset": lambda: estimate_phase_offset(d["phase"], d["magnitude"], ECHO_TIMES, mask,
                                                VOXEL),
        "unwrap-echo1": lambda: unwrap_region_growing(
            d["phase"][..., last], mask, QualityInputs(d["magnitude"][..., last])),
        "fit": lambda: fit_field(d["phase"], d["magnitude"], ECHO_TIMES, FIELD_STRENGTH_T,
                                 mask),
        "r2star": lambda: estimate_r2star(d["magnitude"], ECHO_TIMES, mask),
    }
    for key, value in settings.items():
        work[key] = lambda value=value: unwrap_echoes(d["phase"], d["magnitude"], ECHO_TIMES,
                                                      mask, VOXEL, value)

    def total():
        phase = scale_phase_to_radians(d["phase_siemens"]).phase
        estimated_mask = brain_mask(d["magnitude"], VOXEL).mask
        return estimated_mask, estimate_field(d["magnitude"], phase, ECHO_TIMES,
                                              FIELD_STRENGTH_T, estimated_mask, VOXEL,
                                              FieldEstimationSettings())

    work["total"] = total
    base_rss = rss_mib()
    cpu_start, start = time.process_time(), time.perf_counter()
    result = work[name]()
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start

    def field_rmse(field_hz, where):
        error = (field_hz - d["field_hz"])[where]
        centred = error - np.median(error)
        return (f"field RMSE {np.sqrt(np.mean(centred**2)):.3f} Hz, "
                f"p99.5 {np.percentile(np.abs(centred), 99.5):.3f} Hz")

    accuracy = ""
    if name == "scaling":
        accuracy = result.rule.split(":")[0]
    elif name == "mask":
        accuracy = f"Dice {2 * (result & mask).sum() / (result.sum() + mask.sum()):.4f}"
    elif name == "offset":
        accuracy = f"offset error std {np.std(wrap_to_pi(result - d['offset'])[mask]):.4f} rad"
    elif name == "unwrap-echo1":
        wraps = np.ptp(truth[last][mask]) / (2 * np.pi)
        accuracy = f"exact {_exact_percent(result, truth[last], mask):.3f}% ({wraps:.0f} wraps)"
    elif name in ("unwrap-temporal", "unwrap-spatial"):
        exact = min(_exact_percent(result[..., n], truth[n], mask)
                    for n in range(len(ECHO_TIMES)))
        accuracy = f"exact >= {exact:.3f}% per echo"
    elif name == "fit":
        accuracy = field_rmse(result.field_hz, mask)
    elif name == "r2star":
        relative = np.abs(result.r2star[mask] - d["r2star"][mask]) / d["r2star"][mask]
        accuracy = f"mean |rel error| {100 * relative.mean():.2f}% at SNR {SNR:g}"
    elif name == "total":
        estimated_mask, estimate = result
        accuracy = field_rmse(estimate.field.field_hz, estimated_mask & mask)
    return {"seconds": seconds, "cpu": cpu, "peak_mib": peak_mib(),
            "step_mib": peak_mib() - base_rss, "accuracy": accuracy}


def _run_child(name: str, folder: Path, env: dict | None = None) -> dict:
    result = subprocess.run(
        [sys.executable, __file__, "--step", name, str(folder)], capture_output=True,
        text=True, env={**os.environ, **(env or {})}, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"benchmark step {name} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def _numba_compile(cache_dir: str) -> dict:
    """Region growing on a small volume: first call (compile or cache load), then warm."""
    from qsmbids.recon.unwrap_region_growing import unwrap_region_growing

    rng = np.random.default_rng(0)
    phase = rng.uniform(-np.pi, np.pi, (24, 24, 24)).astype(np.float32)
    start = time.perf_counter()
    unwrap_region_growing(phase)
    first = time.perf_counter() - start
    start = time.perf_counter()
    unwrap_region_growing(phase)
    return {"first": first, "warm": time.perf_counter() - start, "cache_dir": cache_dir}


def main() -> None:
    """Simulate once, run each step in a fresh process, print the table."""
    print(f"volume {SHAPE} x {len(ECHO_TIMES)} echoes, {VOXEL} mm, TE {ECHO_TIMES} s, "
          f"SNR {SNR:g}; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory(prefix="qsmbids-bench-") as tmp:
        folder = Path(tmp)
        start = time.perf_counter()
        _prepare(folder)
        print(f"simulation: {time.perf_counter() - start:.1f} s")
        empty_cache = str(folder / "numba-cache")
        cold = _run_child("numba", folder, {"NUMBA_CACHE_DIR": empty_cache})
        cached = _run_child("numba", folder, {"NUMBA_CACHE_DIR": empty_cache})
        print(f"numba region growing, first call: {cold['first']:.2f} s with an empty cache "
              f"(compile), {cached['first']:.2f} s from the on-disk cache; warm call "
              f"{cached['warm'] * 1000:.1f} ms")
        steps = ["fft", "scaling", "mask", "offset", "unwrap-echo1", "unwrap-temporal",
                 "unwrap-spatial", "unwrap-laplacian", "fit", "r2star", "total"]
        _run_child("unwrap-echo1", folder)  # fill the on-disk numba cache
        rows = {name: _run_child(name, folder) for name in steps}
    baseline = rows["fft"]["seconds"]
    print(f"{'step':<18}{'wall s':>8}{'x FFT':>8}{'CPU s':>8}{'peak MiB':>10}{'step MiB':>10}"
          "  accuracy")
    for name in steps:
        row = rows[name]
        print(f"{name:<18}{row['seconds']:>8.2f}{row['seconds'] / baseline:>8.1f}"
              f"{row['cpu']:>8.2f}{row['peak_mib']:>10.0f}{row['step_mib']:>10.0f}"
              f"  {row['accuracy']}")
    total = rows["total"]
    verdict = ("meets" if total["seconds"] <= TARGET_S and total["peak_mib"] <= TARGET_GIB * 1024
               else "MISSES")
    print(f"field estimation (scaling + mask + offset + unwrap + fit): "
          f"{total['seconds']:.1f} s wall, {total['cpu']:.1f} s CPU, "
          f"peak {total['peak_mib'] / 1024:.2f} GiB -> {verdict} "
          f"the target of {TARGET_S:g} s and {TARGET_GIB:g} GiB")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--step":
        step = sys.argv[2]
        if step == "numba":
            output = _numba_compile(os.environ.get("NUMBA_CACHE_DIR", ""))
        else:
            output = _step(step, Path(sys.argv[3]))
        print(json.dumps(output))
    else:
        main()
