"""What every per-run workflow factory shares: the run's description for the load and
sink nodes, node memory estimates, the threads of the branches that run side by side,
and whether the susceptibility refinement runs."""

from __future__ import annotations

import json
import logging

import nibabel as nib

from qsmbids.interfaces.io import estimate_mem_gb
from qsmbids.runs import GreRun, run_sources
from qsmbids.workflows.settings import Settings

_LOG = logging.getLogger(__name__)


def run_spec(run: GreRun) -> str:
    """JSON description of a run handed to the load and sink nodes."""
    return json.dumps({
        "entities": run.entities,
        "magnitude": [str(p) for p in run.magnitude],
        "phase": [str(p) for p in run.phase],
        "real": [str(p) for p in run.real],
        "imag": [str(p) for p in run.imag],
        "four_d": run.four_d,
        "channels": run.channels,
        "field_map": None if run.field_map is None else str(run.field_map),
        "field_map_units": run.field_map_units,
        "echo_times": list(run.echo_times),
        "field_strength": run.field_strength,
        "phase_units": run.phase_units,
        "sources": run_sources(run),
    }, sort_keys=True)


def image_shape(run: GreRun) -> tuple[int, int, int]:
    """Grid shape of the run (its first echo's), voxels."""
    header = nib.load(str(run.files[0])).header
    return tuple(int(n) for n in header.get_data_shape()[:3])  # type: ignore[return-value]


def voxel_mm(run: GreRun) -> tuple[float, float, float]:
    """Voxel size of the run's map (its first echo's grid), mm."""
    header = nib.load(str(run.files[0])).header
    return tuple(float(v) for v in header.get_zooms()[:3])  # type: ignore[return-value]


def memory_estimates(shape: tuple[int, int, int], n_echoes: int,
                     channels: int = 1) -> dict[str, float]:
    """GB per node for an image of ``shape`` with ``n_echoes`` (measured peaks + margin);
    coil channels are combined one at a time (accumulators of 3 float32 volumes per echo
    and about 20 for the offsets), so their number does not scale the load step."""
    load = estimate_mem_gb(shape, n_echoes, 4.0)
    if channels > 1:
        load += estimate_mem_gb(shape, n_echoes, 3.0) + estimate_mem_gb(shape, 1, 20.0)
    return {
        "load": load,
        "mask": estimate_mem_gb(shape, n_echoes, 3.0),
        "field": estimate_mem_gb(shape, n_echoes, 8.0),
        "relax": estimate_mem_gb(shape, n_echoes, 4.0),
        "bg": estimate_mem_gb(shape, 1, 12.0, pad_fraction=0.5),
        "inv": estimate_mem_gb(shape, 1, 20.0, pad_fraction=0.25),
        "ref": estimate_mem_gb(shape, 1, 4.0),
        "reg": max(1.5, estimate_mem_gb(shape, n_echoes, 12.0)),
        "warp": estimate_mem_gb(shape, 1, 8.0) + 0.5,
        "stats": estimate_mem_gb(shape, 1, 6.0),
        # measured 0.83 GB at 193x229x193 (bench_pipeline, 2026-12-07)
        "veins": estimate_mem_gb(shape, 1, 22.0),
        "sink": 0.3,
    }


def side_by_side_threads(settings: Settings, with_atlas: bool) -> int:
    """Threads per node of the reconstruction chain (field, background removal,
    inversion) and of the anatomical atlas registration.

    The two branches need nothing from each other, but MultiProc runs a node only when
    its threads fit in ``--nprocs``: with ``--omp-nthreads`` equal to ``--nprocs`` (the
    default) every node takes all slots and the branches run one after the other. So
    when both branches exist and do not fit side by side at full width, each gets half
    the threads (at least 1). Measured with ``benchmarks/bench_pipeline.py`` (1 mm,
    4 echoes, 2 procs x 2 threads, same session): 77.1 s against 87.5 s; the field
    estimation and background removal barely use a second thread (7.3 and 5.6 s with
    two, 7.4 and 6.6 s with one), and the registration (29.2 s on one thread) now runs
    beside them. Nodes after both branches (the refinement) keep ``--omp-nthreads``.

    Parameters
    ----------
    settings
        ``nprocs`` and ``omp_nthreads``.
    with_atlas
        Whether the run has an atlas registration.
    """
    threads = settings.omp_nthreads
    if not with_atlas or settings.nprocs >= 2 * threads:
        return threads
    return max(1, threads // 2)


def refinement_plan(settings: Settings, run: GreRun) -> tuple[bool, str | None]:
    """Whether the run's atlas registration is refined on its susceptibility map, and
    why not when ``anatomy+chi`` was asked for but the voxels are too coarse
    (:func:`qsmbids.registration.schedules.refinement_skip_reason`)."""
    if settings.registration_contrast != "anatomy+chi":
        return False, None
    from qsmbids.registration.schedules import refinement_skip_reason  # no ANTs import

    skipped = refinement_skip_reason(voxel_mm(run))
    if skipped:
        _LOG.info("%s: susceptibility refinement skipped: %s", run.prefix, skipped)
    return skipped is None, skipped
