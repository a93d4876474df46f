"""Run one ``ants.registration`` in a fresh Python process with a fixed ITK thread count.

ITK fixes its thread count at the first ANTs call of a process, and ANTs is
repeatable only single-threaded. Running each registration in a new interpreter
(``python -m qsmbids.registration.job``, not ``multiprocessing``: no re-import of
the caller's ``__main__``, fine inside daemonic workers) makes ``n_threads`` and
``seed`` hold for every call, whatever ran before in the caller (about 1-2 s of
start-up).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from qsmbids.registration.antsio import ITK_THREADS_ENV


def _job(spec: dict) -> dict:
    import ants  # imported here: the thread count is already in the environment

    ants.config._random_seed = spec["seed"]
    kwargs = dict(spec["params"])
    for key in ("mask", "moving_mask"):
        if spec.get(key):
            kwargs[key] = ants.image_read(spec[key])
    reg = ants.registration(fixed=ants.image_read(spec["fixed"]),
                            moving=ants.image_read(spec["moving"]),
                            outprefix=spec["out_prefix"], **kwargs)
    ants.image_write(reg["warpedmovout"], spec["warped_out"])
    return {"fwdtransforms": list(reg["fwdtransforms"]),
            "invtransforms": list(reg["invtransforms"])}


def run_registration(fixed: Path, moving: Path, out_prefix: Path, warped_out: Path,
                     params: dict, *, n_threads: int, seed: int | None = None,
                     mask: Path | None = None, moving_mask: Path | None = None) -> dict:
    """``ants.registration`` on NIfTI files, in a child Python process.

    Parameters
    ----------
    fixed, moving
        NIfTI files.
    out_prefix
        Prefix of the transform files ANTs writes.
    warped_out
        Where the moving image resampled onto the fixed grid is written.
    params
        Further keyword arguments of ``ants.registration`` (JSON-serialisable).
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

    Raises
    ------
    RuntimeError
        With the end of the child's error output when the registration fails.
    """
    spec = {"fixed": str(fixed), "moving": str(moving), "out_prefix": str(out_prefix),
            "warped_out": str(warped_out), "params": params, "seed": seed,
            "mask": str(mask) if mask else None,
            "moving_mask": str(moving_mask) if moving_mask else None}
    env = dict(os.environ, **{ITK_THREADS_ENV: str(int(n_threads))})
    with tempfile.TemporaryDirectory(prefix="qsmbids_regjob_") as tmp:
        spec_path, result_path = Path(tmp, "spec.json"), Path(tmp, "result.json")
        spec_path.write_text(json.dumps(spec))
        proc = subprocess.run(
            [sys.executable, "-m", "qsmbids.registration.job", str(spec_path), str(result_path)],
            env=env, capture_output=True, text=True, check=False)
        if proc.returncode != 0 or not result_path.is_file():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
            raise RuntimeError(
                f"ANTs registration of {moving} to {fixed} failed (exit {proc.returncode}): "
                + " | ".join(tail))
        return json.loads(result_path.read_text())


if __name__ == "__main__":  # pragma: no cover - exercised through run_registration
    _spec = json.loads(Path(sys.argv[1]).read_text())
    Path(sys.argv[2]).write_text(json.dumps(_job(_spec)))
