"""Brain mask on data qsmbids did not make: volume, Dice, time and peak memory.

Cases: qsm-forward heads of the accuracy benchmark (2 mm; true brain mask known), the
Philips 3 T head and the 7 T crop of ``shared/realdata`` (no truth: the volume of an
adult brain is 1000..1700 ml; the crop lies inside the brain, so the mask should cover
its whole FOV). The in-run baseline is the former default (0.7 x Otsu threshold, 4 mm
opening with the FOV edge taken as outside), run on the same inputs. Peak memory is
what the mask step allocates (``tracemalloc``; numpy arrays included).

Run: ``.venv/bin/python benchmarks/run.py masking`` (needs the ``validation`` extra for
the simulated heads; the real data are skipped when ``../shared/realdata`` is absent).
"""

from __future__ import annotations

import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import scipy.ndimage as ndi
from skimage.filters import threshold_otsu

from qsmbids.recon import masking

PEER_CASES = ("base3t2mm", "brainonly", "twoecho", "oblique", "sevent")


def baseline_mask(magnitude: np.ndarray, voxel_size) -> np.ndarray:
    """The former default: 0.7 x Otsu, 4 mm opening, FOV edge outside."""
    combined = ndi.gaussian_filter(masking.combine_magnitude(magnitude),
                                   [1.0 / v for v in voxel_size])
    mask = combined > 0.7 * threshold_otsu(combined)
    mask &= masking._brain_core(mask, 4.0, voxel_size, edge_is_outside=True)
    return masking.fill_holes(masking._largest_component(mask))


def current_mask(magnitude: np.ndarray, voxel_size) -> np.ndarray:
    return masking.brain_mask(magnitude, voxel_size).mask


def _load_echoes(paths: list[Path]) -> tuple[np.ndarray, tuple[float, ...]]:
    images = [nib.load(p) for p in paths]
    data = [np.asarray(i.dataobj, np.float32) for i in images]
    stacked = np.stack(data, -1) if data[0].ndim == 3 else data[0]
    return stacked, tuple(float(v) for v in images[0].header.get_zooms()[:3])


def _cases(work: Path):
    """Yield (name, magnitude, voxel mm, true brain or None)."""
    try:
        import qsm_forward  # noqa: F401

        from qsmbids.validation.peer_heads import case_by_name, simulate_peer_head
    except ImportError:
        print("qsm-forward missing (pip install -e '.[validation]'): simulated heads skipped")
    else:
        for name in PEER_CASES:
            head = simulate_peer_head(case_by_name(name), work / name)
            mags = sorted((head.bids_dir / "sub-1" / "anat").glob("*part-mag*.nii*"))
            magnitude, voxel = _load_echoes(mags)
            yield name, magnitude, voxel, head.load_truth()[1]
    from qsmbids.validation.realdata import shared_realdata

    realdata = shared_realdata()
    if realdata is None:
        print("../shared/realdata absent: real heads skipped")
        return
    ref = realdata / "philips-elition-3t" / "Ref"
    magnitude, voxel = _load_echoes(
        [ref / f"2001_WIP_fcMRI_Field_Mapping_cl_e{e}.nii.gz" for e in (1, 2)])
    yield "philips3t", magnitude, voxel, None
    magnitude, voxel = _load_echoes([realdata / "mriresearchtools-7t-crop" / "Mag.nii.gz"])
    yield "crop7t", magnitude, voxel, None


def _measure(method: Callable, magnitude: np.ndarray, voxel, truth) -> dict:
    tracemalloc.start()
    start = time.perf_counter()
    mask = method(magnitude, voxel)
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    row = {"ml": mask.sum() * np.prod(voxel) / 1000, "fov": mask.mean(), "s": seconds,
           "mib": peak}
    if truth is not None:
        row["dice"] = 2 * (mask & truth).sum() / (mask.sum() + truth.sum())
    return row


def main() -> None:
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for name, magnitude, voxel, truth in _cases(Path(folder)):
            old = _measure(baseline_mask, magnitude, voxel, truth)
            new = _measure(current_mask, magnitude, voxel, truth)
            truth_ml = truth.sum() * np.prod(voxel) / 1000 if truth is not None else np.nan
            rows.append((name, magnitude.shape, truth_ml, old, new))
    print(f"{'case':11s} {'shape':16s} {'truth ml':>8s} {'old ml':>7s} {'old Dice':>8s} "
          f"{'new ml':>7s} {'new Dice':>8s} {'new FOV%':>8s} {'time new/old':>12s} "
          f"{'new s':>6s} {'peak MiB':>8s}")
    for name, shape, truth_ml, old, new in rows:
        print(f"{name:11s} {'x'.join(map(str, shape)):16s} {truth_ml:8.0f} {old['ml']:7.0f} "
              f"{old.get('dice', np.nan):8.3f} {new['ml']:7.0f} {new.get('dice', np.nan):8.3f} "
              f"{100 * new['fov']:8.1f} {new['s'] / old['s']:12.2f} {new['s']:6.2f} "
              f"{new['mib']:8.0f}")
    print("targets: Dice >= 0.93 where the truth is known; 1000..1700 ml on the Philips "
          "head; >= 95 % of the 7 T crop's FOV (it lies inside the brain)")


if __name__ == "__main__":
    main()
