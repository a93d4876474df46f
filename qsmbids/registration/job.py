"""Run one ``ants.registration`` in a fresh process with a fixed ITK thread count.

ITK fixes its thread count at the first ANTs call of a process, and ANTs is
repeatable only single-threaded or at a constant thread count. Running each
registration in a newly spawned process makes ``n_threads`` and ``seed`` hold
for every call, whatever ran before in the caller (about 1-2 s of start-up).
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from qsmbids.registration.antsio import ITK_THREADS_ENV


def _job(fixed: str, moving: str, out_prefix: str, warped_out: str, params: dict,
         mask: str | None, moving_mask: str | None, seed: int | None) -> dict:
    import ants  # imported here: the thread count is already in the environment

    ants.config._random_seed = seed
    kwargs = dict(params)
    if mask is not None:
        kwargs["mask"] = ants.image_read(mask)
    if moving_mask is not None:
        kwargs["moving_mask"] = ants.image_read(moving_mask)
    reg = ants.registration(fixed=ants.image_read(fixed), moving=ants.image_read(moving),
                            outprefix=out_prefix, **kwargs)
    ants.image_write(reg["warpedmovout"], warped_out)
    return {"fwdtransforms": list(reg["fwdtransforms"]),
            "invtransforms": list(reg["invtransforms"])}


def run_registration(fixed: Path, moving: Path, out_prefix: Path, warped_out: Path,
                     params: dict, *, n_threads: int, seed: int | None = None,
                     mask: Path | None = None, moving_mask: Path | None = None) -> dict:
    """``ants.registration`` on NIfTI files in a spawned process.

    Parameters
    ----------
    fixed, moving
        NIfTI files.
    out_prefix
        Prefix of the transform files ANTs writes.
    warped_out
        Where the moving image resampled onto the fixed grid is written.
    params
        Further keyword arguments of ``ants.registration``.
    n_threads
        ITK threads in the child.
    seed
        ANTs random seed (``None``: random).
    mask, moving_mask
        Metric masks (NIfTI files).

    Returns
    -------
    dict
        ``fwdtransforms`` and ``invtransforms`` file lists, as ``ants.registration``.
    """
    old = os.environ.get(ITK_THREADS_ENV)
    os.environ[ITK_THREADS_ENV] = str(int(n_threads))
    try:
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
            future = pool.submit(_job, str(fixed), str(moving), str(out_prefix),
                                 str(warped_out), params,
                                 None if mask is None else str(mask),
                                 None if moving_mask is None else str(moving_mask), seed)
            return future.result()
    finally:
        if old is None:
            os.environ.pop(ITK_THREADS_ENV, None)
        else:
            os.environ[ITK_THREADS_ENV] = old
