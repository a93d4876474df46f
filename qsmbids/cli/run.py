"""The participant run loop: discover, skip what is done, run the graph, report per run.

Reliability rules kept here:

* BIDS_DIR is only read; everything goes to OUTPUT_DIR and the work folder;
* a run whose outputs are complete (manifest, same settings, files intact) is
  skipped unless ``--overwrite``; outputs made with other settings are never
  mixed in silently (the run fails with a message saying so);
* one broken run never stops the others: each failure is reported with a reason
  and the exit code is 1 when any run failed;
* a killed run resumes from the work folder (nipype reuses finished nodes);
  leftover temporary files of dead processes are removed.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from qsmbids.atomic import remove_stale_temporaries
from qsmbids.bids.discovery import (
    GreRun,
    discover_runs,
    summarize,
    validate_run,
)
from qsmbids.cli.exit_codes import ExitCode
from qsmbids.derivatives.dataset import init_output_dir
from qsmbids.derivatives.naming import NameContext, log_path, manifest_path
from qsmbids.derivatives.run_outputs import run_state
from qsmbids.workflows.settings import Settings

LOGGER = logging.getLogger("qsmbids")


@dataclass(frozen=True)
class RunOutcome:
    """What happened to one run: ``done``, ``skipped`` (already complete) or ``failed``."""

    name: str
    status: str
    message: str = ""


class SetupError(Exception):
    """The run cannot start (atlas missing, bad mask path): reported, exit code 66."""


# ----------------------------------------------------------------------------- resolution


def resolve_atlas(settings: Settings, say: Callable[[str], None] = LOGGER.info,
                  install: Callable[..., Path] | None = None) -> Path | None:
    """The atlas folder to use, or None for ``--atlas none``.

    The default atlas, when it is installed nowhere qsmbids looks, is fetched and built
    on this first use (``install``, default
    :func:`qsmbids.atlas.fetch.install_default_atlas`; ``say`` shows its progress).

    Raises
    ------
    SetupError
        When no ``--atlas-dir`` is given and the default atlas is neither installed nor
        fetchable (no network), saying how to install it offline.
    """
    if settings.atlas_dir is not None:
        folder = Path(settings.atlas_dir)
        if not (folder / "atlas.json").is_file():
            raise SetupError(f"--atlas-dir {folder} holds no atlas.json")
        return folder
    if settings.atlas in (None, "none"):
        return None
    for folder in _default_atlas_candidates(settings.atlas):
        if (folder / "atlas.json").is_file():
            return folder
    offline = ("on a machine with network run 'qsmbids atlas fetch' (or 'qsmbids atlas "
               "fetch --mirror file:///DIR' with the originals copied there), or pass "
               "--atlas-dir DIR, or --atlas none to skip registration and regional tables")
    if settings.atlas != "default":
        raise SetupError(f"atlas '{settings.atlas}' is not installed: {offline}")
    from qsmbids.atlas.fetch import FetchError, install_default_atlas

    try:
        return (install or install_default_atlas)(say, n_threads=settings.omp_nthreads)
    except (FetchError, OSError) as exc:
        raise SetupError(f"atlas 'default' is not installed and could not be fetched "
                         f"({exc}): {offline}") from None


def _default_atlas_candidates(name: str) -> list[Path]:
    candidates = []
    env = os.environ.get("QSMBIDS_ATLAS_DIR")
    if env:
        candidates.append(Path(env))
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "qsmbids"
    candidates += [cache / "atlas", cache / "atlases" / name, cache / name]
    return candidates


def resolve_user_mask(settings: Settings, run: GreRun) -> Path | None:
    """The ``--mask`` for a run: the file itself, or ``<run>*_mask.nii[.gz]`` in the folder."""
    if settings.mask is None:
        return None
    mask = Path(settings.mask)
    if mask.is_file():
        return mask
    if mask.is_dir():
        found = sorted(p for p in mask.rglob(f"{run.prefix}_*mask.nii*"))
        if found:
            return found[0]
        raise SetupError(f"no mask for {run.prefix} in {mask} (looked for "
                         f"{run.prefix}_*mask.nii[.gz])")
    raise SetupError(f"--mask {mask} does not exist")


def _with_user_field_maps(settings: Settings,
                          runs: list[GreRun]) -> tuple[list[GreRun], list[RunOutcome]]:
    """Runs with their phase replaced by the ``--field-map`` file found for each; a run
    without a usable one is set aside, naming what was looked for or what is wrong."""
    from qsmbids.bids.user_field_map import find_user_field_map, with_user_field_map

    assert settings.field_map is not None
    kept, set_aside = [], []
    for run in runs:
        try:
            path = find_user_field_map(settings.field_map, run, len(runs))
            kept.append(with_user_field_map(run, path, settings.field_map_units))
        except ValueError as exc:
            set_aside.append(RunOutcome(run.prefix, "failed", str(exc)))
    return kept, set_aside


# ----------------------------------------------------------------------------- progress/logs


class Progress:
    """Concise progress lines on a stream and a detailed log file per run.

    Used as nipype's ``status_callback``: called in the main process with each node
    and ``start``/``end``/``exception``.
    """

    def __init__(self, settings: Settings, runs: list[GreRun], stream: TextIO | None) -> None:
        from qsmbids.workflows.base import workflow_name

        self.stream = stream
        self.total = len(runs)
        self.done = 0
        self.by_wf = {workflow_name(r): r for r in runs}
        self.logs: dict[str, TextIO] = {}
        self.started: dict[str, float] = {}
        self.errors: dict[str, str] = {}
        for run in runs:
            path = log_path(settings.output_dir, run.entities)
            path.parent.mkdir(parents=True, exist_ok=True)
            handle = open(path, "a", encoding="utf-8")
            self.logs[run.prefix] = handle
            self._log(run.prefix, f"qsmbids run of {run.prefix} (settings {settings.digest()})")
            self._log(run.prefix, summarize([run]))
            for note in run.notes:
                self._log(run.prefix, f"note: {note}")

    def _run_of(self, node) -> GreRun | None:
        for part in str(node.fullname).split("."):
            if part in self.by_wf:
                return self.by_wf[part]
        return None

    def _log(self, prefix: str, text: str) -> None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        handle = self.logs[prefix]
        handle.write(f"{stamp} {text}\n")
        handle.flush()

    def say(self, text: str) -> None:
        if self.stream is not None:
            self.stream.write(text + "\n")
            self.stream.flush()

    def __call__(self, node, status: str) -> None:
        run = self._run_of(node)
        if run is None:
            return
        key = f"{run.prefix}.{node.name}"
        if status == "start":
            self.started[key] = time.perf_counter()
            self._log(run.prefix, f"start {node.name} (mem_gb={node.mem_gb}, "
                                  f"threads={node.n_procs})")
            self.say(f"[{self.done}/{self.total} runs done] {run.prefix}: {node.name}")
            return
        elapsed = time.perf_counter() - self.started.pop(key, time.perf_counter())
        if status == "exception":
            message = _node_error(node)
            self.errors.setdefault(run.prefix, f"step '{node.name}' failed: {message}")
            self._log(run.prefix, f"FAILED {node.name} after {elapsed:.1f} s: {message}")
            detail = _node_traceback(node)
            if detail:
                self._log(run.prefix, detail)
            self.done += 1 if node.name == "sink" else 0
            return
        result = _node_result(node)
        runtime = getattr(result, "runtime", None)
        peak = getattr(runtime, "peak_rss_gb", None) if runtime is not None else None
        cached = runtime is None or not hasattr(runtime, "duration")
        memory = f", peak {peak:.2f} GB" if isinstance(peak, float) else ""
        self._log(run.prefix, f"end {node.name} ({elapsed:.1f} s{memory})"
                              + (" [cached]" if cached else ""))
        if node.name == "sink":
            self.done += 1
            self.say(f"[{self.done}/{self.total} runs done] {run.prefix}: finished")

    def note(self, prefix: str, text: str) -> None:
        self._log(prefix, text)

    def close(self) -> None:
        for handle in self.logs.values():
            handle.close()


def _node_result(node):
    with contextlib.suppress(Exception):
        return node.result
    return None


def _node_traceback(node) -> str:
    result = _node_result(node)
    runtime = getattr(result, "runtime", None)
    tb = getattr(runtime, "traceback", None) if runtime is not None else None
    return "".join(tb) if isinstance(tb, (list, tuple)) else (tb or "")


def _node_error(node) -> str:
    tb = _node_traceback(node).strip().splitlines()
    return tb[-1] if tb else "see the crash file in the work folder"


# ----------------------------------------------------------------------------- the loop


def _configure_nipype(settings: Settings) -> None:
    from nipype import config
    from nipype import logging as nlogging

    level = "INFO" if settings.verbose >= 2 else "WARNING"
    config.update_config({
        "logging": {"workflow_level": level, "interface_level": level, "utils_level": level,
                    "log_to_file": False},
        "execution": {"crashfile_format": "txt", "stop_on_first_crash": False,
                      "remove_unnecessary_outputs": False, "check_version": False,
                      "crashdump_dir": str(Path(settings.work_dir) / "crash"),
                      "parameterize_dirs": False, "poll_sleep_duration": 0.05},
        "monitoring": {"enabled": False},
    })
    nlogging.update_logging(config)


def _plugin_args(settings: Settings, progress: Progress | None) -> dict:
    args = dict(settings.plugin_arguments)
    if settings.plugin == "MultiProc":
        args.setdefault("n_procs", settings.nprocs)
        args.setdefault("memory_gb", settings.mem_gb)
        args.setdefault("raise_insufficient", False)
        # Workers from a fork server, not forked from this (multi-threaded: FFT, numba,
        # ITK) process: a fork taken while another thread holds a lock can hang a worker.
        args.setdefault("mp_context", "forkserver")
    if progress is not None and not settings.graph_plugin:
        args["status_callback"] = progress
    return args


def run_participant(settings: Settings, stream: TextIO | str | None = "stderr") -> int:
    """Process every selected run; print a summary; return the exit code (0 or 1).

    Parameters
    ----------
    settings
        What to do (see :class:`~qsmbids.workflows.settings.Settings`).
    stream
        Where progress lines and the summary go (None: silent).
    """
    from qsmbids.bids.citation import methods_boilerplate

    if stream == "stderr":
        stream = sys.stderr
    say = (lambda text: stream.write(text + "\n")) if stream is not None else (lambda t: None)
    atlas_dir = resolve_atlas(settings, say)
    context = NameContext(ref=settings.reference, **_atlas_labels(atlas_dir))
    init_output_dir(settings.output_dir, settings.bids_dir,
                    citation=methods_boilerplate(settings, atlas_dir))
    discovery = discover_runs(
        settings.bids_dir, participant_label=settings.participant_label or None,
        session_label=settings.session_label or None, bids_filters=settings.filters,
        field_strength=settings.field_strength, min_echoes=settings.min_echoes)
    outcomes: list[RunOutcome] = [RunOutcome(p.name, "failed", p.message)
                                  for p in discovery.problems]
    for subject in sorted({r.subject for r in discovery.runs}):
        remove_stale_temporaries(Path(settings.output_dir) / f"sub-{subject}")
    todo: list = []
    from qsmbids.workflows.base import RunInputs

    runs = list(discovery.runs)
    hematocrits: dict[str, float] = {}
    if settings.veins:
        from qsmbids.bids.participants import HEMATOCRIT_SOURCE, read_hematocrits

        hematocrits, problems = read_hematocrits(settings.bids_dir)
        for problem in problems:
            say(f"qsmbids: warning: {problem}")
    if settings.field_map is not None:
        runs, set_aside = _with_user_field_maps(settings, runs)
        outcomes += set_aside
    for run in runs:
        state = run_state(settings.output_dir, run.entities, settings.digest())
        if state.complete and not settings.overwrite:
            outcomes.append(RunOutcome(run.prefix, "skipped", "outputs already complete"))
            continue
        if state.reason.startswith("settings differ") and not settings.overwrite:
            outcomes.append(RunOutcome(
                run.prefix, "failed", "OUTPUT_DIR holds outputs of this run made with other "
                "settings; use --overwrite to replace them or choose another OUTPUT_DIR"))
            continue
        problems = validate_run(run, workers=settings.nprocs)
        if problems:
            outcomes.append(RunOutcome(run.prefix, "failed", "; ".join(problems)))
            continue
        try:
            hct = hematocrits.get(run.subject)
            todo.append(RunInputs(run, resolve_user_mask(settings, run), atlas_dir, context,
                                  hematocrit=None if hct is None else (hct, HEMATOCRIT_SOURCE)))
        except SetupError as exc:
            outcomes.append(RunOutcome(run.prefix, "failed", str(exc)))
    n_total = len(discovery.runs) + len(discovery.problems)
    if n_total == 0:
        say(nothing_found(settings, discovery.skipped))
        return int(ExitCode.NO_INPUT)
    say(f"qsmbids: {n_total} run(s) found, {len(todo)} to process, "
        f"{sum(o.status == 'skipped' for o in outcomes)} already complete, "
        f"{sum(o.status == 'failed' for o in outcomes)} set aside")
    for inputs in todo:
        for note in inputs.run.notes:
            say(f"  {inputs.run.prefix}: {note}")
    if todo:
        outcomes += _execute(settings, todo, stream)
    finished = {o.name for o in outcomes if o.status in ("done", "skipped")}
    if finished and not settings.graph_plugin:
        from qsmbids.cli.reports import write_participant_reports

        done_runs = [r for r in runs if r.prefix in finished]
        for subject, where in write_participant_reports(
                settings, done_runs, context, atlas_dir,
                methods_boilerplate(settings, atlas_dir), say=say).items():
            say(f"qsmbids: sub-{subject} report: {where}")
    return report(outcomes, stream, graph=settings.graph_plugin and bool(todo))


def nothing_found(settings: Settings, skipped: tuple[str, ...]) -> str:
    """What a participant level without any GRE run saw: NIfTI files per suffix in the
    selected subjects' folders, and the GRE-suffixed images set aside with the reason."""
    root = Path(settings.bids_dir)
    subjects = ([root / f"sub-{label}" for label in settings.participant_label]
                if settings.participant_label else sorted(root.glob("sub-*")))
    suffixes: dict[str, int] = {}
    for folder in subjects:
        for path in folder.rglob("*.nii*"):
            stem = path.name.split(".")[0]
            suffix = stem.rsplit("_", 1)[-1] if "_" in stem else stem
            suffixes[suffix] = suffixes.get(suffix, 0) + 1
    seen = (", ".join(f"{n} {k}" for k, n in sorted(suffixes.items())) if suffixes
            else "no NIfTI files")
    lines = [f"qsmbids: no GRE run to process in {root} ({len(subjects)} subject folder(s) "
             f"selected; they hold {seen}). QSM needs magnitude and phase (or real and "
             "imaginary) images with the suffix MEGRE, T2starw or GRE, a part entity and "
             "EchoTime in their sidecars."]
    lines += [f"  skipped {item}" for item in skipped[:20]]
    if len(skipped) > 20:
        lines.append(f"  ... and {len(skipped) - 20} more")
    return "\n".join(lines)


def _atlas_labels(atlas_dir: Path | None) -> dict[str, str]:
    if atlas_dir is None:
        return {}
    from qsmbids.atlas.model import load_atlas

    atlas = load_atlas(atlas_dir, check_images=False)
    return {"atlas": atlas.name, "template": atlas.space}


def _plugin(settings: Settings, progress: Progress | None) -> dict:
    """``workflow.run`` arguments: MultiProc submits the longest remaining path first
    (:mod:`qsmbids.workflows.scheduler`); other plugins are nipype's own."""
    args = _plugin_args(settings, progress)
    if settings.plugin == "MultiProc":
        from qsmbids.workflows.scheduler import CriticalPathMultiProcPlugin

        return {"plugin": CriticalPathMultiProcPlugin(plugin_args=args)}
    return {"plugin": settings.plugin, "plugin_args": args}


def _execute(settings: Settings, todo: list, stream: TextIO | None) -> list[RunOutcome]:
    from qsmbids.workflows.base import init_participant_wf

    _configure_nipype(settings)
    runs = [t.run for t in todo]
    for run in runs:
        manifest_path(settings.output_dir, run.entities).unlink(missing_ok=True)
    progress = Progress(settings, runs, stream if settings.progress else None)
    outcomes: list[RunOutcome] = []
    try:
        workflow = init_participant_wf(settings, todo)
        # nipype's MultiProc runs a full garbage collection before each submission; with
        # the scientific stack imported here each took 0.22 s (37 of them, 8.2 s of a
        # cached 1 mm run). Frozen, the objects that exist now are not scanned again
        gc.freeze()
        try:
            workflow.run(**_plugin(settings, progress))
        except RuntimeError as exc:  # nipype: some nodes failed; reported per run below
            LOGGER.debug("workflow finished with errors: %s", exc)
        finally:
            gc.unfreeze()
        if settings.graph_plugin:
            return [RunOutcome(r.prefix, "submitted", f"submitted with {settings.plugin}")
                    for r in runs]
        for run in runs:
            state = run_state(settings.output_dir, run.entities, settings.digest())
            if state.complete:
                outcomes.append(RunOutcome(run.prefix, "done"))
                progress.note(run.prefix, "run complete")
            else:
                reason = progress.errors.get(run.prefix, f"outputs incomplete ({state.reason})")
                outcomes.append(RunOutcome(run.prefix, "failed", reason))
                progress.note(run.prefix, f"run FAILED: {reason}")
    except Exception as exc:  # the graph could not be built or run at all
        detail = traceback.format_exc()
        for run in runs:
            progress.note(run.prefix, detail)
            outcomes.append(RunOutcome(run.prefix, "failed", f"{type(exc).__name__}: {exc}"))
    finally:
        progress.close()
    return outcomes


def report(outcomes: list[RunOutcome], stream: TextIO | None, *, graph: bool = False) -> int:
    """Print the end-of-run summary; return 1 when any run failed, else 0."""
    failed = [o for o in outcomes if o.status == "failed"]
    if stream is not None:
        counts = {s: sum(o.status == s for o in outcomes)
                  for s in ("done", "skipped", "submitted", "failed")}
        stream.write("qsmbids summary: " + ", ".join(
            f"{n} {s}" for s, n in counts.items() if n or s in ("done", "failed")) + "\n")
        for outcome in sorted(failed, key=lambda o: o.name):
            message = " ".join(outcome.message.split())
            stream.write(f"  FAILED {outcome.name}: {message}\n")
        if graph:
            stream.write("  runs were submitted to the cluster; rerun the same command "
                         "afterwards to check they completed\n")
        stream.flush()
    return int(ExitCode.RUNS_FAILED if failed else ExitCode.OK)
