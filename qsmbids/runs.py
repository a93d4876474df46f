"""The runs discovery finds: a GRE run (or a field-map run) ready to reconstruct, a run
set aside with its reason, and how they are named and summarised."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qsmbids.entities import LABEL_KEYS, RUN_ENTITIES, join_entities


@dataclass(frozen=True)
class GreRun:
    """One multi-echo GRE acquisition, ready to reconstruct.

    Attributes
    ----------
    subject, session, acquisition, reconstruction, run
        BIDS labels (None where the entity is absent).
    suffix
        ``MEGRE``, ``T2starw`` or ``GRE``.
    echo_times
        Echo times in seconds, increasing.
    magnitude, phase, real, imag
        Files per echo in echo order, or one 4-D file each when ``four_d``;
        empty tuples for parts that are absent (either mag+phase or real+imag).
    four_d
        True when each part is one 4-D file holding all echoes along the 4th axis.
    channels
        Uncombined receive-coil channels: 1 for combined data; N when each per-echo
        file holds N channels along its 4th axis, or each 4-D file is 5-D (x, y, z,
        echo, channel).
    field_map, field_map_units, field_map_echo_time
        A field map given instead of wrapped phase (a BIDS ``fieldmap``, or a file
        passed with ``--field-map``), its units (Hz, rad/s, ppm, or rad for an
        unwrapped phase) and, for rad, the echo time in s of that phase; the magnitude
        stays in ``magnitude`` (all echoes of a GRE run, or the field map's own
        ``magnitude``) and ``phase`` is empty. None for runs of wrapped phase.
    field_strength
        B0 in tesla (from ``MagneticFieldStrength`` or ``--field-strength``).
    phase_units
        ``Units`` of the phase sidecar (``rad``, ``arbitrary``) or None if absent.
    t1w
        A T1w image of the same subject and session, or None.
    bids_dir
        Root of the raw dataset (to make ``bids:raw:`` URIs).
    metadata
        Sidecar of the first phase (or first magnitude) file, merged by pybids.
    notes
        Remarks found during discovery (e.g. field strength overridden).
    """

    subject: str
    session: str | None
    acquisition: str | None
    reconstruction: str | None
    run: str | None
    suffix: str
    echo_times: tuple[float, ...]
    magnitude: tuple[Path, ...]
    phase: tuple[Path, ...]
    real: tuple[Path, ...] = ()
    imag: tuple[Path, ...] = ()
    four_d: bool = False
    channels: int = 1
    field_map: Path | None = None
    field_map_units: str | None = None
    field_map_echo_time: float | None = None
    field_strength: float = 3.0
    phase_units: str | None = None
    t1w: Path | None = None
    bids_dir: Path = Path(".")
    metadata: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)
    notes: tuple[str, ...] = ()

    @property
    def entities(self) -> dict[str, str]:
        """BIDS entities of the run (short keys, in name order), e.g. {'sub': '01', 'run': '1'}."""
        out = {"sub": self.subject}
        for long in RUN_ENTITIES:
            value = getattr(self, long)
            if value is not None:
                out[LABEL_KEYS[long]] = value
        return out

    @property
    def prefix(self) -> str:
        """File name stem of the run, e.g. ``sub-01_ses-pre_acq-fast_run-2``."""
        return join_entities(self.entities)

    @property
    def n_echoes(self) -> int:
        """Number of echoes."""
        return len(self.echo_times)

    @property
    def complex_parts(self) -> bool:
        """True when the data are real/imaginary instead of magnitude/phase."""
        return bool(self.real)

    @property
    def files(self) -> tuple[Path, ...]:
        """Every image of the run."""
        extra = (self.field_map,) if self.field_map is not None else ()
        return self.magnitude + self.phase + self.real + self.imag + extra


@dataclass(frozen=True)
class RunProblem:
    """A run that cannot be processed, with the reason.

    Attributes
    ----------
    name
        The run's file name stem (e.g. ``sub-01_ses-1_run-2``).
    message
        What is wrong, naming the file(s) concerned.
    subject
        Subject label.
    """

    name: str
    message: str
    subject: str = ""

    def __str__(self) -> str:
        return f"{self.name}: {self.message}"


@dataclass(frozen=True)
class Discovery:
    """Result of :func:`discover_runs`: runs to process, runs set aside, and GRE-suffixed
    images that are not QSM input (``skipped``: one line each, naming the file and why)."""

    runs: tuple[GreRun, ...]
    problems: tuple[RunProblem, ...]
    skipped: tuple[str, ...] = ()


def bids_uri(path: Path, bids_dir: Path, dataset: str = "raw") -> str:
    """BIDS URI of a file of a dataset, e.g. ``bids:raw:sub-01/anat/sub-01_T1w.nii.gz``."""
    rel = Path(path).absolute().relative_to(Path(bids_dir).absolute())
    return f"bids:{dataset}:{rel.as_posix()}"


def run_sources(run: GreRun) -> list[str]:
    """URIs of the files a run's derivatives come from: BIDS URIs for the raw dataset's
    files, ``file:`` URIs for files given from elsewhere (a ``--field-map``)."""
    root = Path(run.bids_dir).absolute()
    return [bids_uri(p, root) if Path(p).absolute().is_relative_to(root)
            else Path(p).absolute().as_uri() for p in run.files]


def summarize(runs: Iterable[GreRun]) -> str:
    """One line per run: name, echoes, field strength, layout (for the log)."""
    lines = []
    for run in runs:
        if run.field_map is not None:
            lines.append(f"{run.prefix}: field map ({run.field_map_units}) + magnitude, "
                         f"{run.field_strength:g} T")
            continue
        parts = "real/imag" if run.complex_parts else "mag/phase"
        layout = "4-D" if run.four_d else "per-echo files"
        if run.channels > 1:
            layout += f", {run.channels} coil channels"
        tes = ", ".join(f"{t * 1e3:.2f}" for t in run.echo_times)
        t1 = " + T1w" if run.t1w else ""
        lines.append(f"{run.prefix}: {run.n_echoes} echoes (TE {tes} ms), "
                     f"{run.field_strength:g} T, {parts}, {layout}{t1}")
    return "\n".join(lines)
