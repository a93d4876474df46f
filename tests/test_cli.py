"""Command-line parsing and exit codes."""

import json
import subprocess
import sys

import pytest

from qsmbids import __version__
from qsmbids.cli.exit_codes import ExitCode
from qsmbids.cli.main import main
from qsmbids.cli.parser import parse_args


@pytest.fixture
def bids_dir(tmp_path):
    root = tmp_path / "bids"
    root.mkdir()
    (root / "dataset_description.json").write_text(
        json.dumps({"Name": "t", "BIDSVersion": "1.9.0"})
    )
    return root


def test_version_flag(capsys):
    with pytest.raises(SystemExit) as exc:
        parse_args(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"qsmbids {__version__}"


def test_help_lists_bids_app_options(capsys):
    with pytest.raises(SystemExit) as exc:
        parse_args(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for option in ("--participant-label", "--session-label", "--bids-filter-file",
                   "--skip-bids-validation", "--work-dir", "--nprocs", "--omp-nthreads",
                   "--mem-gb", "--verbose", "participant", "group"):
        assert option in out


def test_bids_app_arguments_are_parsed(tmp_path):
    args = parse_args([str(tmp_path), str(tmp_path / "out"), "participant",
                       "--participant-label", "sub-01", "02", "--session-label", "ses-pre",
                       "--nprocs", "4", "--omp-nthreads", "2", "--mem-gb", "7.5",
                       "-w", str(tmp_path / "work"), "-vv"])
    assert args.command == "participant"
    assert args.participant_label == ["01", "02"]
    assert args.session_label == ["pre"]
    assert (args.nprocs, args.omp_nthreads, args.mem_gb) == (4, 2, 7.5)
    assert args.work_dir == tmp_path / "work"
    assert args.verbose == 2


@pytest.mark.parametrize(
    "argv",
    [
        ["bids", "out", "participant", "--no-such-flag"],
        ["bids", "out", "everything"],
        ["bids", "out"],
        ["bids", "out", "participant", "--nprocs", "0"],
        ["bids", "out", "participant", "--mem-gb", "lots"],
        ["bids", "out", "participant", "--participant-label", "sub-0_1"],
        ["demo"],
        ["atlas", "unknown-action"],
    ],
)
def test_usage_errors_exit_64_with_one_line(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        parse_args(argv)
    assert exc.value.code == ExitCode.USAGE == 64
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("qsmbids")


def test_missing_bids_dir_names_the_path(tmp_path, capsys):
    missing = tmp_path / "nonexistent"
    code = main([str(missing), str(tmp_path / "out"), "participant"])
    assert code == ExitCode.NO_INPUT
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(missing) in err[0]


def test_folder_without_dataset_description_is_refused(tmp_path, capsys):
    code = main([str(tmp_path), str(tmp_path / "out"), "participant"])
    assert code == ExitCode.NO_INPUT
    assert "dataset_description.json" in capsys.readouterr().err


def test_output_dir_equal_to_bids_dir_is_refused(bids_dir, capsys):
    code = main([str(bids_dir), str(bids_dir), "participant"])
    assert code == ExitCode.NO_INPUT
    assert "OUTPUT_DIR must differ" in capsys.readouterr().err


def test_missing_filter_file_is_named(bids_dir, tmp_path, capsys):
    code = main([str(bids_dir), str(tmp_path / "out"), "participant",
                 "--bids-filter-file", str(tmp_path / "f.json")])
    assert code == ExitCode.NO_INPUT
    assert "f.json" in capsys.readouterr().err


def test_console_script_runs_without_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "qsmbids", "/nonexistent", str(tmp_path / "o"), "participant"],
        capture_output=True, text=True, check=False,
    )
    assert proc.returncode == ExitCode.NO_INPUT
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip() == "qsmbids: error: BIDS_DIR does not exist: /nonexistent"


def test_participant_level_with_nothing_to_process_says_what_it_saw(bids_dir, tmp_path, capsys):
    """No GRE run: a T1w and a lone single-echo T2starw magnitude. The run says what it
    found and why nothing qualifies, and exits non-zero instead of '0 done, 0 failed'."""
    import nibabel as nib
    import numpy as np

    anat = bids_dir / "sub-01" / "anat"
    anat.mkdir(parents=True)
    for name in ("sub-01_T1w", "sub-01_T2starw"):
        nib.save(nib.Nifti1Image(np.ones((4, 4, 4), np.float32), np.eye(4)),
                 str(anat / f"{name}.nii.gz"))
    (anat / "sub-01_T2starw.json").write_text(json.dumps({"EchoTime": 0.02}))
    code = main([str(bids_dir), str(tmp_path / "out"), "participant", "--atlas", "none"])
    err = capsys.readouterr().err
    assert code == ExitCode.NO_INPUT
    assert "no GRE run to process" in err
    assert "1 T1w" in err and "1 T2starw" in err
    assert "skipped sub-01/anat/sub-01_T2starw.nii.gz" in err
    assert "without part-phase" in err


@pytest.mark.parametrize(("signame", "code", "words"), [
    ("SIGTERM", ExitCode.TERMINATED, "terminated by SIGTERM"),
    ("SIGINT", ExitCode.INTERRUPTED, "interrupted"),
])
def test_a_signal_stops_the_run_with_its_exit_code_and_says_how_to_resume(
        bids_dir, tmp_path, signame, code, words):
    """A scheduler's scancel (SIGTERM) or Ctrl-C (SIGINT) during a participant level:
    the command stops within seconds, exits 128 + the signal number, names the signal
    and says that a rerun resumes; no traceback. The work itself is replaced by a
    sleep, so the test does not depend on how far a real run got."""
    import signal
    import time

    # a shell without job control starts background commands with SIGINT ignored, and
    # Python then keeps it ignored: give the child the disposition a terminal's
    # foreground job has, so the test does not depend on how the suite was started
    script = (
        "import signal, sys, time\n"
        "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "import qsmbids.cli.bids_app as app\n"
        "def busy(args):\n"
        "    print('working', flush=True)\n"
        "    time.sleep(60)\n"
        "    return 0\n"
        "app.run_bids_app = busy\n"
        "from qsmbids.cli.main import main\n"
        f"sys.exit(main([{str(bids_dir)!r}, {str(tmp_path / 'out')!r}, 'participant']))\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "working"
    sent = time.perf_counter()
    proc.send_signal(getattr(signal, signame))
    _, stderr = proc.communicate(timeout=30)
    assert time.perf_counter() - sent < 10
    assert proc.returncode == int(code) == 128 + getattr(signal, signame)
    assert words in stderr and "rerun the same command to resume" in stderr
    assert "Traceback" not in stderr
