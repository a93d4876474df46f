"""Settings of a qsmbids run: one frozen dataclass handed explicitly to every factory.

Method choices come from the command line; a *preset* fills every choice the user
did not make. Only the fields that change the numbers enter :meth:`Settings.digest`
(paths, process counts and plugins do not), so a rerun with other resources reuses
finished outputs while a rerun with another method does not silently mix results.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from qsmbids.recon.registry import names as method_names
from qsmbids.recon.swi import DEFAULT_SLAB_MM
from qsmbids.recon.units import FIELD_MAP_UNITS, PHASE_UNITS
from qsmbids.recon.veins import DEFAULT_HEMATOCRIT
from qsmbids.registration.schedules import PRESETS as REGISTRATION

#: method names offered on the command line, per step (first = default), from the
#: registry (qsmbids.recon.registry)
UNWRAPPING = method_names("unwrapping")
BG_REMOVAL = method_names("bg_removal")
INVERSION = method_names("inversion")
REFERENCE = method_names("reference")
#: contrasts the atlas registration uses (first = default): the anatomy (T1w, else the
#: GRE magnitude), then a refinement of the deep grey matter on the susceptibility map;
#: or the anatomy alone
REGISTRATION_CONTRAST = ("anatomy+chi", "anatomy")

#: named presets: the method per step when not given explicitly
PRESETS: dict[str, dict[str, str]] = {
    # fast: cheap methods, fast registration
    "fast": {"unwrapping": "laplacian", "bg_removal": "vsharp", "inversion": "tkd",
             "registration": "fast"},
    # accurate: the most accurate measured combination (the default)
    "accurate": {"unwrapping": "romeo", "bg_removal": "pdf", "inversion": "tv",
                 "registration": "fast"},
}
DEFAULT_PRESET = "accurate"

#: nipype plugins accepted by --plugin
PLUGINS = ("MultiProc", "Linear", "SLURM", "SLURMGraph", "SGE", "SGEGraph", "PBS",
           "PBSGraph", "LSF", "Condor", "DAGMan")

#: fields that do not change the numbers (not part of the digest)
_RESOURCE_FIELDS = {"bids_dir", "output_dir", "work_dir", "participant_label",
                    "session_label", "bids_filters", "plugin", "plugin_args", "nprocs",
                    "omp_nthreads", "mem_gb", "overwrite", "verbose", "progress"}

#: input files or folders named by the settings (their content enters the digest)
_INPUT_PATH_FIELDS = ("atlas_dir", "mask", "field_map")
#: files up to this size are hashed; larger ones count by name and size
_HASHED_BYTES = 1 << 20


def content_identity(path: Path | None) -> str | None:
    """What a settings path holds, independent of where it lies: a file's SHA-256, or a
    folder's file names (relative), sizes and, for files up to 1 MiB (JSON, TSV,
    masks), their SHA-256. None stays None; a missing path gives its name."""
    if path is None:
        return None
    path = Path(path)

    def file_hash(item: Path) -> str:
        return hashlib.sha256(item.read_bytes()).hexdigest()[:16]

    if path.is_file():
        return "file:" + file_hash(path)
    if not path.is_dir():
        return "missing:" + path.name
    entries = sorted(
        (str(item.relative_to(path)), size,
         file_hash(item) if size <= _HASHED_BYTES else "")
        for item in path.rglob("*") if item.is_file()
        for size in (item.stat().st_size,))
    return "folder:" + hashlib.sha256(json.dumps(entries).encode()).hexdigest()[:16]


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _available_memory_gb() -> float:
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        return pages / 1024**3 * 0.9
    except (ValueError, OSError, AttributeError):  # pragma: no cover
        return 8.0


@dataclass(frozen=True)
class Settings:
    """Everything that decides what a qsmbids run does.

    Attributes
    ----------
    bids_dir, output_dir, work_dir
        Input dataset (read only), derivative dataset, nipype work folder.
    participant_label, session_label
        Selected labels (without prefixes); empty for all.
    bids_filters
        pybids filters keyed by query (``megre``, ``t1w``), as JSON text (hashable).
    field_strength
        B0 in tesla overriding/replacing ``MagneticFieldStrength`` (None: sidecars).
    phase_sign
        +1 or -1: multiplies the phase (its handedness) right after it is read.
    phase_units
        None: phase units from the sidecar and the values
        (:func:`qsmbids.recon.phase_scaling.scale_phase_to_radians`); or one of
        :data:`PHASE_UNITS` forcing the conversion for data the rules cannot decide.
    unwrapping, bg_removal, inversion, reference
        Method per step (see the module constants).
    registration
        ANTs registration preset, ``fast`` or ``accurate``.
    registration_contrast
        ``anatomy+chi``: after the anatomical registration, refine the deep grey
        matter on the susceptibility map against the atlas's susceptibility template;
        ``anatomy``: the anatomical registration alone.
    deterministic
        Repeatable registration (fixed seed, one ANTs thread).
    preset
        Name of the preset the methods were filled from.
    atlas
        Atlas name (``default``: the qsmbids MNI atlas, ``none``: no regional tables)
        or None with ``atlas_dir`` set.
    atlas_dir
        Folder with an atlas in the qsmbids layout (``atlas.json``).
    mask
        None for automatic masks; a NIfTI used for every run, or a folder searched
        for ``<run>*_mask.nii[.gz]``.
    field_map, field_map_units
        None, or a field map replacing each run's wrapped phase: a NIfTI for one run,
        or a folder searched for ``<run>*fieldmap.nii[.gz]``; its units (Hz, rad/s,
        ppm, rad) where no sidecar gives them (None: the sidecar's ``Units``).
    veins
        Write the vein outputs: SWI and its minIP, the QSM venogram, the vein mask and
        the venous susceptibility and OEF table.
    hematocrit
        Haematocrit (fraction) for the OEF of participants without a ``hematocrit``
        column value in ``participants.tsv``.
    slab_mm
        Slab thickness of the minIP and the venogram, mm.
    plugin, plugin_args
        nipype execution plugin and its arguments (JSON text).
    nprocs, omp_nthreads, mem_gb
        Processes at once, threads per process, memory for scheduling (GB).
    overwrite
        Redo runs whose outputs are complete.
    """

    bids_dir: Path
    output_dir: Path
    work_dir: Path
    participant_label: tuple[str, ...] = ()
    session_label: tuple[str, ...] = ()
    bids_filters: str = "{}"
    field_strength: float | None = None
    phase_units: str | None = None
    phase_sign: int = 1
    unwrapping: str = PRESETS[DEFAULT_PRESET]["unwrapping"]
    bg_removal: str = PRESETS[DEFAULT_PRESET]["bg_removal"]
    inversion: str = PRESETS[DEFAULT_PRESET]["inversion"]
    reference: str = "wholebrain"
    registration: str = PRESETS[DEFAULT_PRESET]["registration"]
    registration_contrast: str = REGISTRATION_CONTRAST[0]
    deterministic: bool = False
    preset: str = DEFAULT_PRESET
    atlas: str | None = "default"
    atlas_dir: Path | None = None
    mask: Path | None = None
    field_map: Path | None = None
    field_map_units: str | None = None
    veins: bool = True
    hematocrit: float = DEFAULT_HEMATOCRIT
    slab_mm: float = DEFAULT_SLAB_MM
    plugin: str = "MultiProc"
    plugin_args: str = "{}"
    nprocs: int = field(default_factory=_cpu_count)
    omp_nthreads: int = 0
    mem_gb: float = field(default_factory=_available_memory_gb)
    overwrite: bool = False
    verbose: int = 0
    progress: bool = True

    def __post_init__(self) -> None:
        checks = {"unwrapping": UNWRAPPING, "bg_removal": BG_REMOVAL,
                  "inversion": INVERSION, "reference": REFERENCE,
                  "registration": REGISTRATION, "preset": tuple(PRESETS),
                  "registration_contrast": REGISTRATION_CONTRAST,
                  "plugin": PLUGINS}
        for name, allowed in checks.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}; "
                                 f"got {getattr(self, name)!r}")
        if self.phase_sign not in (1, -1):
            raise ValueError(f"phase_sign must be 1 or -1; got {self.phase_sign!r}")
        if self.phase_units is not None and self.phase_units not in PHASE_UNITS:
            raise ValueError(f"phase_units must be one of {', '.join(PHASE_UNITS)} or None; "
                             f"got {self.phase_units!r}")
        if self.field_map_units is not None and self.field_map_units not in FIELD_MAP_UNITS:
            raise ValueError(f"field_map_units must be one of {', '.join(FIELD_MAP_UNITS)} "
                             f"or None; got {self.field_map_units!r}")
        if self.reference == "csf" and self.atlas in (None, "none") and self.atlas_dir is None:
            raise ValueError("reference 'csf' needs an atlas (its CSF labels give the "
                             "reference): drop '--atlas none', give --atlas-dir, or use "
                             "--reference wholebrain")
        if not 0.0 < self.hematocrit < 1.0:
            raise ValueError(f"hematocrit must be a fraction between 0 and 1 (e.g. 0.42); "
                             f"got {self.hematocrit!r}")
        if not self.slab_mm > 0:
            raise ValueError(f"slab_mm must be > 0 mm; got {self.slab_mm!r}")
        if self.field_map_units is not None and self.field_map is None:
            raise ValueError("field_map_units is set without a field map: give "
                             "--field-map PATH or drop --field-map-units")
        if self.omp_nthreads <= 0:
            object.__setattr__(self, "omp_nthreads", max(1, self.nprocs))

    @classmethod
    def from_preset(cls, preset: str = DEFAULT_PRESET, **chosen: Any) -> Settings:
        """Settings with the preset's methods, overridden by the non-None ``chosen`` values."""
        if preset not in PRESETS:
            raise ValueError(f"preset must be one of {', '.join(PRESETS)}; got {preset!r}")
        values: dict[str, Any] = dict(PRESETS[preset])
        values.update({k: v for k, v in chosen.items() if v is not None})
        return cls(preset=preset, **values)

    @property
    def filters(self) -> dict[str, dict[str, Any]]:
        """``bids_filters`` decoded."""
        return json.loads(self.bids_filters)

    @property
    def plugin_arguments(self) -> dict[str, Any]:
        """``plugin_args`` decoded."""
        return json.loads(self.plugin_args)

    @property
    def graph_plugin(self) -> bool:
        """True for plugins that submit the whole graph and return (no waiting)."""
        return self.plugin.endswith("Graph") or self.plugin == "DAGMan"

    @property
    def min_echoes(self) -> int:
        """Fewest echoes the chosen methods need: one (with one echo, phase offset removal
        and the R2*/T2* maps are left out; the offset goes with the background field)."""
        return 1

    def method_record(self) -> dict[str, Any]:
        """The settings that change the results (written into manifests and logs)."""
        record = {f.name: getattr(self, f.name) for f in fields(self)
                  if f.name not in _RESOURCE_FIELDS}
        return json.loads(json.dumps(record, default=str))

    def digest(self) -> str:
        """Short hash of :meth:`method_record` (identifies results made with these
        settings), with the files it names (atlas, masks, field maps) recorded by their
        content, not their location: moving them keeps finished outputs valid, editing
        them does not."""
        record = self.method_record()
        for name in _INPUT_PATH_FIELDS:
            record[name] = content_identity(getattr(self, name))
        text = json.dumps(record, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]
