"""The real scanner data in ``shared/realdata`` as BIDS datasets, and running the pipeline.

The shared folder (never part of the repository) holds a Philips 3 T in-vivo head
(dcm2niix NIfTI of classic and enhanced DICOM, phase in rad) and a 7 T in-vivo crop
whose phase is stored in arbitrary float units (see its README). They have no ground
truth; :func:`qsmbids.validation.scoring.map_spread` and the nuclei order are what can
be checked.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

#: echo times of the 7 T crop (s), as its origin's tests use them (README of realdata)
SEVEN_T_ECHO_TIMES = (0.004, 0.008, 0.012)


def shared_realdata(start: str | os.PathLike | None = None) -> Path | None:
    """``shared/realdata`` beside the repository (``QSMBIDS_REALDATA`` overrides), or None."""
    override = os.environ.get("QSMBIDS_REALDATA")
    if override:
        return Path(override) if Path(override).is_dir() else None
    root = Path(start) if start else Path(__file__).resolve().parents[2]
    candidate = (root / ".." / "shared" / "realdata").resolve()
    return candidate if candidate.is_dir() else None


def _dataset_description(bids: Path, name: str) -> None:
    (bids / "dataset_description.json").write_text(json.dumps(
        {"Name": name, "BIDSVersion": "1.9.0", "DatasetType": "raw"}))


def philips_bids(realdata: Path, out_dir: str | os.PathLike, variant: str = "cl") -> Path:
    """BIDS dataset of the Philips 3 T head (``variant`` ``cl``: classic DICOM, ``enh``:
    enhanced), from dcm2niix's NIfTI and sidecars as a user would have them (dcm2niix
    converts Philips phase to radians but writes no ``Units``)."""
    ref = realdata / "philips-elition-3t" / "Ref"
    bids = Path(out_dir)
    anat = bids / "sub-philips" / "anat"
    anat.mkdir(parents=True, exist_ok=True)
    _dataset_description(bids, "Philips Elition 3 T head (shared/realdata)")
    for echo in (1, 2):
        stem = f"2001_WIP_fcMRI_Field_Mapping_{variant}_e{echo}"
        for part, suffix in (("mag", ""), ("phase", "_ph")):
            target = anat / f"sub-philips_acq-{variant}_echo-{echo}_part-{part}_MEGRE"
            shutil.copyfile(ref / f"{stem}{suffix}.nii.gz", f"{target}.nii.gz")
            shutil.copyfile(ref / f"{stem}{suffix}.json", f"{target}.json")
    return bids


def seven_tesla_bids(realdata: Path, out_dir: str | os.PathLike) -> Path:
    """BIDS dataset of the 7 T crop: 4-D magnitude and phase with an ``EchoTime`` list;
    no ``Units`` (the phase is in arbitrary float units, as the converter wrote it)."""
    crop = realdata / "mriresearchtools-7t-crop"
    bids = Path(out_dir)
    anat = bids / "sub-crop7t" / "anat"
    anat.mkdir(parents=True, exist_ok=True)
    _dataset_description(bids, "7 T in-vivo crop (shared/realdata)")
    meta = {"EchoTime": list(SEVEN_T_ECHO_TIMES), "MagneticFieldStrength": 7.0}
    for part, name in (("mag", "Mag"), ("phase", "Phase")):
        target = anat / f"sub-crop7t_part-{part}_MEGRE"
        shutil.copyfile(crop / f"{name}.nii.gz", f"{target}.nii.gz")
        Path(f"{target}.json").write_text(json.dumps(meta))
    return bids


@dataclass(frozen=True)
class PipelineRun:
    """Outputs of one participant-level run.

    Attributes
    ----------
    returncode
        Exit code of ``qsmbids``.
    output_dir
        The derivatives folder.
    log
        Its standard error (the run log).
    """

    returncode: int
    output_dir: Path
    log: str

    def find(self, pattern: str) -> list[Path]:
        """Output files matching ``pattern`` (a glob below ``output_dir``), sorted."""
        return sorted(self.output_dir.rglob(pattern))


def run_participant(bids_dir: str | os.PathLike, output_dir: str | os.PathLike,
                    work_dir: str | os.PathLike, extra_args: Sequence[str] = (),
                    *, threads: int = 2) -> PipelineRun:
    """Run ``qsmbids BIDS OUT participant`` in a child interpreter (as a user would)."""
    command = [sys.executable, "-m", "qsmbids", str(bids_dir), str(output_dir), "participant",
               "-w", str(work_dir), "--nprocs", "1", "--omp-nthreads", str(threads),
               "--no-progress", *extra_args]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    return PipelineRun(done.returncode, Path(output_dir), done.stderr)


def phase_flipped_copy(bids_dir: str | os.PathLike, out_dir: str | os.PathLike) -> Path:
    """A copy of a BIDS dataset whose phase images (``part-phase``) are negated, as a
    converter with the other handedness would write them (radian phase assumed)."""
    import nibabel as nib
    import numpy as np

    source, target = Path(bids_dir), Path(out_dir)
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("derivatives"))
    for path in sorted(target.rglob("*part-phase*.nii*")):
        img = nib.load(str(path))
        data = -np.asarray(img.dataobj, np.float32)
        nib.save(nib.Nifti1Image(data, img.affine, img.header), str(path))
    return target
