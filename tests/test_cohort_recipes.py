"""The SLURM/PBS cohort recipes in workflows/, run against stub schedulers.

Stub ``sbatch``/``qsub``/``apptainer`` commands on PATH record their arguments, so
these tests check what the scripts would submit and run: one array task per
participant, the group job depending on every array, node-local work folders,
``apptainer exec --cleanenv`` with read-only input binds, resume after success.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SLURM = REPO / "workflows" / "slurm_array.sh"
PBS = REPO / "workflows" / "pbs_array.sh"

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")

STUB = """#!/bin/sh
# records one call per line: the program name, then its arguments separated by '|'
{{ printf '%s' "$(basename "$0")"; for a in "$@"; do printf '|%s' "$a"; done; echo; }} >> {log}
{body}
"""


@pytest.fixture
def cohort(tmp_path: Path) -> dict[str, Path]:
    """A 3-participant BIDS skeleton, stub schedulers on PATH, and a fake image."""
    bids = tmp_path / "bids"
    for label in ("01", "02", "03"):
        (bids / f"sub-{label}" / "anat").mkdir(parents=True)
    (bids / "dataset_description.json").write_text('{"Name": "t", "BIDSVersion": "1.9.0"}')
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.log"
    counter = tmp_path / "jobid"
    counter.write_text("100")
    next_id = f'n=$(($(cat {counter}) + 1)); echo "$n" > {counter}; '
    bodies = {
        "sbatch": next_id + 'echo "$n;cluster"',
        "qsub": next_id + 'echo "$n[].pbs"',
        "apptainer": "exit 0",
    }
    for name, body in bodies.items():
        stub = bin_dir / name
        stub.write_text(STUB.format(log=log, body=body))
        stub.chmod(0o755)
    sif = tmp_path / "qsmbids.sif"
    sif.write_text("not a real image")
    return {"bids": bids, "out": tmp_path / "out", "bin": bin_dir, "log": log, "sif": sif,
            "tmp": tmp_path, "logs": tmp_path / "qsmbids_logs"}


def _env(c: dict[str, Path], **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SLURM_", "PBS_", "QSMBIDS_"))}
    env.update(PATH=f"{c['bin']}{os.pathsep}{env.get('PATH', '')}", QSMBIDS_SIF=str(c["sif"]),
               TMPDIR=str(c["tmp"]))
    env.update(extra)
    return env


def _calls(c: dict[str, Path]) -> list[list[str]]:
    if not c["log"].exists():
        return []
    return [line.split("|") for line in c["log"].read_text().splitlines()]


def _run(script: Path, args: list[str], env: dict[str, str]) -> str:
    proc = subprocess.run(["bash", str(script), *args], env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _option(call: list[str], prefix: str) -> str:
    matches = [a.removeprefix(prefix) for a in call if a.startswith(prefix)]
    assert len(matches) == 1, (prefix, call)
    return matches[0]


def test_slurm_submits_one_task_per_participant_then_group(cohort):
    c = cohort
    _run(SLURM, [str(c["bids"]), str(c["out"]), "--", "--preset", "fast"], _env(c))
    calls = _calls(c)
    assert [call[0] for call in calls] == ["sbatch", "sbatch"]
    array, group = calls
    assert _option(array, "--array=") == "1-3%100"
    assert array[-3:] == ["--task", "--preset", "fast"]
    assert _option(group, "--dependency=") == "afterany:101"
    assert group[-1] == "--group"
    assert (c["logs"] / "participants.txt").read_text().split() == ["01", "02", "03"]


def test_slurm_task_runs_apptainer_for_its_participant_and_marks_done(cohort):
    c = cohort
    _run(SLURM, [str(c["bids"]), str(c["out"])], _env(c))
    c["log"].unlink()
    env = _env(c, SLURM_ARRAY_TASK_ID="2", SLURM_JOB_ID="7", SLURM_CPUS_PER_TASK="4",
               SLURM_MEM_PER_NODE="16384", QSMBIDS_BIDS=str(c["bids"]),
               QSMBIDS_OUT=str(c["out"]), QSMBIDS_LOG_DIR=str(c["logs"]))
    _run(SLURM, ["--task", "--preset", "fast"], env)
    (call,) = _calls(c)
    assert call[:3] == ["apptainer", "exec", "--cleanenv"]
    assert f"{c['bids']}:/data:ro" in call
    work_bind = next(a for a in call if a.endswith(":/work"))
    assert work_bind.startswith(str(c["tmp"]))  # node-local scratch ($TMPDIR)
    assert not Path(work_bind.removesuffix(":/work")).exists()  # removed afterwards
    args = call[call.index(str(c["sif"])) + 1:]
    assert args[:4] == ["qsmbids", "/data", "/out", "participant"]
    assert args[args.index("--participant-label") + 1] == "02"
    assert args[args.index("--nprocs") + 1] == "4"
    assert args[args.index("--mem-gb") + 1] == "16"
    assert args[-2:] == ["--preset", "fast"]
    assert (c["logs"] / "done" / "sub-02").exists()

    # Resume: a second submission runs only the participants not done yet.
    c["log"].unlink()
    _run(SLURM, [str(c["bids"]), str(c["out"])], _env(c))
    assert (c["logs"] / "participants.txt").read_text().split() == ["01", "03"]
    assert _option(_calls(c)[0], "--array=") == "1-2%100"


def test_slurm_splits_big_cohorts_into_several_arrays(cohort):
    c = cohort
    _run(SLURM, [str(c["bids"]), str(c["out"])], _env(c, QSMBIDS_CHUNK="2"))
    arrays, group = _calls(c)[:2], _calls(c)[2]
    assert [_option(a, "--array=") for a in arrays] == ["1-2%100", "1-1%100"]
    assert [_option(a, "--export=").rsplit("QSMBIDS_OFFSET=", 1)[1] for a in arrays] == [
        "0", "2"]
    assert _option(group, "--dependency=") == "afterany:101:102"


def test_pbs_submits_array_and_dependent_group(cohort):
    c = cohort
    _run(PBS, [str(c["bids"]), str(c["out"]), "--", "--preset", "fast"], _env(c))
    array, group = _calls(c)
    assert array[0] == "qsub"
    assert array[array.index("-J") + 1] == "1-3"
    assert group[group.index("-W") + 1] == "depend=afterany:101[].pbs"

    c["log"].unlink()
    env = _env(c, PBS_ARRAY_INDEX="3", PBS_JOBID="9[3]", NCPUS="2", QSMBIDS_MODE="participant",
               QSMBIDS_BIDS=str(c["bids"]), QSMBIDS_OUT=str(c["out"]),
               QSMBIDS_LOG_DIR=str(c["logs"]), QSMBIDS_EXTRA_ARGS="--preset\tfast")
    _run(PBS, [], env)
    (call,) = _calls(c)
    assert call[:3] == ["apptainer", "exec", "--cleanenv"]
    args = call[call.index(str(c["sif"])) + 1:]
    assert args[args.index("--participant-label") + 1] == "03"
    assert args[args.index("--nprocs") + 1] == "2"
    assert "--mem-gb" not in args  # PBS gives no memory figure: qsmbids measures it
    assert args[-2:] == ["--preset", "fast"]
    assert (c["logs"] / "done" / "sub-03").exists()


def test_missing_image_is_a_clear_error(cohort):
    c = cohort
    env = _env(c, QSMBIDS_SIF=str(c["tmp"] / "absent.sif"))
    proc = subprocess.run(["bash", str(SLURM), str(c["bids"]), str(c["out"])], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 64
    assert "QSMBIDS_SIF not found" in proc.stderr
    assert _calls(c) == []
