"""Template -> subject registration (ANTs): wall time and peak memory per preset and grid.

The fixed image is a deformed, obliquely positioned copy of the MNI152NLin2009cAsym
template from ``shared/atlases`` (or of the phantom template when those files are
absent) resampled to the case's voxel size; the moving image is the template at
the same voxel size. Each case runs in its own Python process, and ANTs in a
child of it, so the peak resident memory (max of the case's ``VmHWM`` and its
children's ``ru_maxrss``) is the case's own. Threads: 2 (ITK). The in-run
baseline is an affine-only registration at 2 mm. The SyN metric is CC (what
qsmbids uses when template and target share a contrast, as here) or Mattes MI
(its choice across contrasts, e.g. a GRE magnitude on the T1w template). The
registration target is not bias-corrected here (a template copy has no bias; N4
adds about 8 s at 1 mm in the pipeline). Target: fast preset <= 60 s at 1 mm.

Run: ``.venv/bin/python benchmarks/run.py registration`` (or this file directly;
``--quick`` skips the 1 mm accurate case).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _memory import peak_mib  # benchmarks/ is on sys.path when run

REPO = Path(__file__).resolve().parents[1]
CASES = {
    "baseline: affine only, 2 mm": "affine:2.0",
    "SyN fast CC, 2 mm": "fast:2.0:CC",
    "SyN fast MI, 2 mm": "fast:2.0:mattes",
    "SyN accurate CC, 2 mm": "accurate:2.0:CC",
    "SyN fast CC, 1 mm": "fast:1.0:CC",
    "SyN fast MI, 1 mm": "fast:1.0:mattes",
    "SyN accurate CC, 1 mm": "accurate:1.0:CC",
}
THREADS = 2


def _images(voxel_mm: float):
    import ants
    import nibabel as nib
    import numpy as np

    sys.path.insert(0, str(REPO))
    from qsmbids.registration.antsio import from_ants, to_ants
    from tests.atlas_helpers import oblique_deformed_copy, shared_atlases

    shared = shared_atlases()
    if shared is not None:
        template = nib.load(shared / "tpl-MNI152NLin2009cAsym_desc-brain_T1w.nii.gz")
        template = nib.Nifti1Image(np.asarray(template.dataobj, np.float32), template.affine)
        source = "MNI152NLin2009cAsym"
    else:
        from qsmbids.sim.template import write_phantom_atlas

        atlas = write_phantom_atlas(tempfile.mkdtemp(prefix="qsmbids-bench-"), 1.0)
        template = nib.load(atlas.template)
        source = "phantom"
    if voxel_mm != 1.0:
        template = from_ants(ants.resample_image(to_ants(template), (voxel_mm,) * 3, False, 0))
    labels = nib.Nifti1Image(np.zeros(template.shape, np.int16), template.affine)
    subject, _ = oblique_deformed_copy(template, labels, amplitude_mm=3.0, smooth_mm=30.0,
                                       seed=11)
    return template, subject, source


def _run_case(case: str) -> dict:
    import nibabel as nib
    import numpy as np

    from qsmbids.registration import RegistrationSettings, register_template_to_subject
    from qsmbids.registration.core import _register

    kind, arg, *rest = case.split(":")
    metric = rest[0] if rest else "mattes"
    template, subject, source = _images(float(arg))
    mask = nib.Nifti1Image((np.asarray(subject.dataobj) > 0).astype(np.uint8), subject.affine)
    out = Path(tempfile.mkdtemp(prefix="qsmbids-bench-reg-"))
    wall = time.perf_counter()
    if kind == "affine":
        _register(subject, template, out / "aff_", RegistrationSettings(n_threads=THREADS),
                  linear="Affine")
        similarity = {}
    else:
        result = register_template_to_subject(
            template, subject, out,
            RegistrationSettings(preset=kind, n_threads=THREADS, metric=metric),
            target_mask=mask, bias_correct=False)
        similarity = result.similarity
    return {"wall": time.perf_counter() - wall, "peak": peak_mib(children=True), "source": source,
            "shape": list(subject.shape), "corr": similarity.get("correlation", float("nan"))}


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    cases = dict(CASES)
    if "--quick" in argv:
        cases.pop("SyN accurate CC, 1 mm")
    rows = []
    for label, case in cases.items():
        proc = subprocess.run([sys.executable, __file__, "--case", case], capture_output=True,
                              text=True, check=False, cwd=REPO,
                              env={**os.environ, "OMP_NUM_THREADS": str(THREADS)})
        if proc.returncode != 0:
            print(f"{label}: failed: {proc.stderr.strip().splitlines()[-1:]}", flush=True)
            continue
        rows.append((label, json.loads(proc.stdout.strip().splitlines()[-1])))
        print(f"  done: {label} ({rows[-1][1]['wall']:.1f} s)", flush=True)
    if not rows:
        return
    base = rows[0][1]["wall"]
    print(f"template: {rows[0][1]['source']}, ITK threads: {THREADS}")
    print(f"{'case':32s} {'grid':>14s} {'wall s':>8s} {'x affine':>9s} {'peak MiB':>9s} "
          f"{'corr':>6s}")
    for label, r in rows:
        grid = "x".join(str(n) for n in r["shape"])
        print(f"{label:32s} {grid:>14s} {r['wall']:8.1f} {r['wall'] / base:9.1f} "
              f"{r['peak']:9.0f} {r['corr']:6.3f}")
    for label, r in rows:
        if label.startswith("SyN fast") and label.endswith("1 mm"):
            verdict = "meets" if r["wall"] <= 60 else "MISSES"
            print(f"{label}: {r['wall']:.1f} s ({verdict} the 60 s target)")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--case":
        print(json.dumps(_run_case(sys.argv[2])))
    else:
        main()
