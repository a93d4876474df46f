"""Digital head phantom in an MNI-like RAS+ frame: labels, susceptibility, M0 and R2*.

The anatomy is a set of smooth implicit shapes (:mod:`qsmbids.sim.shapes`) placed at
roughly MNI152 positions (origin near the anterior commissure, x to the right, y
anterior, z superior, mm): scalp and face soft tissue, skull and skull base, air
cavities (frontal, sphenoid and maxillary sinuses, nasal cavity, mastoids), CSF,
a folded cortical ribbon, white matter, cerebellum, brainstem, ventricles, the
superior sagittal, straight and transverse sinuses and internal cerebral veins, an
optional choroid-plexus calcification and a microbleed, and left/right caudate,
putamen, globus pallidus, thalamus, substantia nigra, red nucleus and dentate.

Shapes are painted in order, later ones over earlier ones. A voxel's label is that
of the last shape whose surface contains its centre; its susceptibility, M0 and R2*
are blended through soft edges (an error-function profile of width
``edge_sigma_mm``), so the maps are band-limited as MRI sees them and a tilted
dipole kernel does not ring on binary edges. Veins of a known oxygenation are the
exception: a soft edge is as wide as a thin vein, so they are painted by the fraction
of each voxel they fill.

Outside air has chi = 0: the field of the head's outer surface is taken as shimmed
away (add a residual shim with ``extra_field_ppm`` of the signal simulator). Air
cavities inside the head have chi = +9.4 ppm (air relative to water), and the skull
-2 ppm, so the simulated field has a realistic background part near the sinuses and
ear canals.

Because :func:`evaluate_head` works on any array of world coordinates, a subject is
made by evaluating the same continuous phantom at warped coordinates, so labels and
maps stay consistent without resampling.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field, replace

import numpy as np
import scipy.ndimage as ndi
import scipy.special

from qsmbids.sim.shapes import Ellipsoid, HeightField, Shape, Tube, Union
from qsmbids.sim.tissues import BRAIN_LABELS, LABEL_NAMES, LABELS, TissueProperties, tissue_table
from qsmbids.sim.veins import VenousBlood, probe_veins

#: world bounding box of the phantom's field of view (mm, RAS+), like MNI152's 181x217x181
FOV_MIN_MM = (-90.0, -126.0, -72.0)
FOV_MAX_MM = (90.0, 90.0, 108.0)
#: soft-edge width relative to the voxel size (0.7 keeps the Nyquist content below 10%)
EDGE_SIGMA_VOXELS = 0.7
#: points per voxel edge counting the fraction of a voxel a vein of known blood fills
#: (4 gave a 1.5 mm vein's cross-section 6 % too large at one position against the
#: tube's area; 8 gives it within 1.2 % for every probe vein)
FILLED_SUPERSAMPLE = 8


@dataclass(frozen=True)
class HeadPhantom:
    """A digital head on a voxel grid.

    Attributes
    ----------
    chi
        Susceptibility, ppm relative to water, float32, (x, y, z): the whole FOV
        including the bone and air-cavity sources of the background field.
    labels
        int16, (x, y, z): labels of :data:`qsmbids.sim.tissues.LABEL_NAMES`, 0 outside.
    brain_mask
        bool, (x, y, z): brain (cerebrum with its sulci and ventricles, cerebellum,
        brainstem).
    m0
        Signal at TE = 0 (a.u., CSF = 1), float32; 0 outside the head and in air.
    r2star
        R2* at 3 T, 1/s, float32 (see :func:`qsmbids.sim.tissues.r2star_at_field`).
    voxel_size
        mm along (x, y, z).
    affine
        4x4 voxel-to-world affine, RAS+, axial (no obliquity).
    label_names
        label number -> name.
    """

    chi: np.ndarray
    labels: np.ndarray
    brain_mask: np.ndarray
    m0: np.ndarray
    r2star: np.ndarray
    voxel_size: tuple[float, float, float]
    affine: np.ndarray
    label_names: dict[int, str] = field(default_factory=lambda: dict(LABEL_NAMES))


@dataclass(frozen=True)
class PhantomMaps:
    """Phantom maps at arbitrary points (same fields as :class:`HeadPhantom`'s arrays)."""

    chi: np.ndarray
    labels: np.ndarray
    brain_mask: np.ndarray
    m0: np.ndarray
    r2star: np.ndarray


class SmoothNoise:
    """Band-limited random field of unit standard deviation over the phantom's FOV.

    Parameters
    ----------
    seed
        Random seed.
    correlation_mm
        Gaussian smoothing width, mm (size of the "gyri").
    spacing_mm
        Spacing of the underlying grid, mm.
    """

    def __init__(self, seed: int, correlation_mm: float = 6.0, spacing_mm: float = 2.0):
        self.origin = np.asarray(FOV_MIN_MM) - 10
        shape = tuple(int(n) for n in np.ceil((np.asarray(FOV_MAX_MM) + 10 - self.origin)
                                              / spacing_mm) + 1)
        rng = np.random.default_rng(seed)
        grid = ndi.gaussian_filter(rng.standard_normal(shape, dtype=np.float32),
                                   correlation_mm / spacing_mm, mode="wrap")
        self.grid = grid / grid.std()
        self.spacing = spacing_mm

    def __call__(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        idx = [(c - o) / self.spacing for c, o in zip((x, y, z), self.origin, strict=True)]
        return ndi.map_coordinates(self.grid, idx, order=1, mode="nearest").astype(np.float32)


@functools.lru_cache(maxsize=4)
def _folding(seed: int) -> SmoothNoise:
    """The cortical folding pattern of ``seed`` (cached: the same for every subject)."""
    return SmoothNoise(seed)


def _bilateral(make) -> dict[str, Shape]:
    """Shapes named ``*_L`` / ``*_R`` from ``make(sign)`` (sign -1 left, +1 right)."""
    return {"L": make(-1.0), "R": make(1.0)}


def _nuclei() -> list[tuple[str, Shape]]:
    """Deep grey nuclei in painting order (later ones override)."""
    shapes: list[tuple[str, Shape]] = []

    def thalamus(s):
        return Ellipsoid((s * 12.5, -18.5, 6.0), (9.0, 16.0, 10.0), (0, 0, s * 12.0),
                         taper=-0.3)

    def caudate(s):
        return Tube(((s * 14.0, 20.0, 5.0), (s * 14.5, 10.0, 9.0), (s * 16.0, -4.0, 16.0),
                     (s * 19.0, -18.0, 19.0), (s * 24.0, -30.0, 14.0)),
                    (6.5, 6.0, 4.0, 3.0, 2.0))

    def putamen(s):
        return Ellipsoid((s * 26.0, 3.0, 1.0), (6.0, 18.0, 10.0), (0, 0, -s * 10.0), power=2.4)

    def pallidum(s):
        return Ellipsoid((s * 18.5, -2.0, -1.5), (4.5, 11.0, 6.5), (0, 0, -s * 15.0))

    def nigra(s):
        return Ellipsoid((s * 10.0, -17.0, -13.0), (3.5, 10.0, 3.5), (-15.0, 0, -s * 35.0))

    def red_nucleus(s):
        return Ellipsoid((s * 5.0, -19.5, -9.0), (3.6, 4.5, 5.0))

    def dentate(s):
        return Ellipsoid((s * 14.5, -58.0, -34.5), (6.0, 9.0, 7.0), (0, 0, s * 30.0))

    for name, make in (("Thalamus", thalamus), ("Caudate", caudate), ("Putamen", putamen),
                       ("GlobusPallidus", pallidum), ("SubstantiaNigra", nigra),
                       ("RedNucleus", red_nucleus), ("Dentate", dentate)):
        for side, shape in _bilateral(make).items():
            shapes.append((f"{name}_{side}", shape))
    return shapes


def _ventricles() -> Shape:
    lateral = []
    for s in (-1.0, 1.0):
        lateral.append(Ellipsoid((s * 7.0, 13.0, 14.0), (3.5, 12.0, 7.0)))  # frontal horn
        lateral.append(Tube(((s * 7.5, 8.0, 17.0), (s * 9.0, -12.0, 22.0), (s * 14.0, -32.0, 18.0),
                             (s * 22.0, -42.0, 10.0), (s * 24.0, -58.0, 6.0)),
                            (3.0, 3.5, 4.0, 5.0, 2.0)))  # body, atrium, occipital horn
        lateral.append(Tube(((s * 22.0, -42.0, 10.0), (s * 29.0, -34.0, -4.0),
                             (s * 30.0, -16.0, -18.0)), (4.0, 2.5, 2.0)))  # temporal horn
    third = Ellipsoid((0.0, -12.0, 4.0), (1.8, 14.0, 9.0))
    fourth = Ellipsoid((0.0, -44.0, -32.0), (6.0, 4.0, 7.0))
    return Union((*lateral, third, fourth))


def _veins() -> Shape:
    center_y, center_z, ry, rz = -17.0, 12.0, 92.0 - 4.0, 72.0 - 4.0
    angles = np.deg2rad(np.linspace(25, 190, 12))
    sss_pts = tuple((0.0, center_y + ry * np.cos(a), center_z + rz * np.sin(a)) for a in angles)
    sss = Tube(sss_pts, tuple(np.linspace(2.5, 4.5, len(angles))))
    straight = Tube(((0.0, -40.0, 12.0), (0.0, -62.0, 2.0), (0.0, -92.0, -4.0)), (2.0, 2.5, 3.0))
    internal = [Tube(((s * 2.5, -2.0, 16.0), (s * 2.0, -28.0, 14.0), (0.0, -40.0, 12.0)),
                     (1.2, 1.3, 1.6)) for s in (-1.0, 1.0)]
    transverse = [Tube(((0.0, -100.0, -6.0), (s * 35.0, -96.0, -14.0), (s * 55.0, -66.0, -30.0)),
                       (3.5, 3.5, 3.0)) for s in (-1.0, 1.0)]
    return Union((sss, straight, *internal, *transverse))


@dataclass(frozen=True)
class _Anatomy:
    head: Shape
    skull_outer: Shape
    cranium: Shape
    skull_base: Shape
    sinuses: tuple[Shape, ...]
    cerebrum: Shape
    deep: Shape
    cerebellum: Shape
    cerebellar_wm: Shape
    brainstem: Shape
    ventricles: Shape
    nuclei: list
    veins: Shape


def _anatomy() -> _Anatomy:
    c = (0.0, -17.0, 12.0)
    return _Anatomy(
        head=Ellipsoid(c, (84.0, 104.0, 84.0)),
        skull_outer=Ellipsoid(c, (79.0, 99.0, 79.0)),
        cranium=Ellipsoid(c, (72.0, 92.0, 72.0)),
        # skull base: posterior fossa, middle fossa (from y=-28), anterior fossa (from y=18)
        skull_base=HeightField(-62.0, ((18.0, -28.0, 4.0), (18.0, 18.0, 4.0))),
        sinuses=(
            Ellipsoid((0.0, 70.0, -14.0), (12.0, 9.0, 9.0)),  # frontal
            Ellipsoid((0.0, 5.0, -56.0), (11.0, 10.0, 8.0)),  # sphenoid
            Ellipsoid((-27.0, 38.0, -50.0), (11.0, 14.0, 12.0)),  # maxillary
            Ellipsoid((27.0, 38.0, -50.0), (11.0, 14.0, 12.0)),
            Ellipsoid((0.0, 48.0, -46.0), (5.0, 20.0, 13.0)),  # nasal cavity
            Ellipsoid((-52.0, -28.0, -44.0), (8.0, 9.0, 7.0)),  # mastoid / ear canal
            Ellipsoid((52.0, -28.0, -44.0), (8.0, 9.0, 7.0)),
        ),
        cerebrum=Ellipsoid((0.0, -17.0, 16.0), (69.0, 88.0, 64.0)),
        # no interhemispheric fissure around the corpus callosum and deep nuclei
        deep=Ellipsoid((0.0, -12.0, 8.0), (30.0, 48.0, 22.0)),
        cerebellum=Ellipsoid((0.0, -62.0, -36.0), (48.0, 28.0, 21.0)),
        cerebellar_wm=Ellipsoid((0.0, -56.0, -32.0), (28.0, 14.0, 10.0)),
        brainstem=Union((
            Ellipsoid((0.0, -22.0, -8.0), (18.0, 14.0, 10.0)),  # midbrain
            Ellipsoid((0.0, -28.0, -28.0), (14.0, 13.0, 13.0)),  # pons
            Ellipsoid((0.0, -37.0, -50.0), (8.0, 9.0, 14.0)),  # medulla
        )),
        ventricles=_ventricles(), nuclei=_nuclei(), veins=_veins(),
    )


#: distance standing for "far outside" where a shape was not evaluated, mm
_FAR = np.float32(1e4)
#: thickness of the cortical ribbon and amplitude of its folding, mm
CORTEX_MM = 4.0
FOLDING_MM = 3.5
#: bumped whenever the phantom's anatomy changes (invalidates cached simulations)
PHANTOM_REVISION = 2
#: CSF around the brainstem where it crosses the skull base (foramen magnum), mm
CANAL_MM = 3.0


class _Canvas:
    """Paints shapes onto maps sampled at world coordinates ``coords`` (3, ...)."""

    def __init__(self, coords: np.ndarray, edge_sigma_mm: float, spacing_mm: float):
        self.coords = coords
        self.sigma = float(edge_sigma_mm)
        self.spacing = float(spacing_mm)
        shape = coords.shape[1:]
        self.labels = np.zeros(shape, np.int16)
        self.chi = np.zeros(shape, np.float32)
        self.m0 = np.zeros(shape, np.float32)
        self.r2star = np.zeros(shape, np.float32)
        self.step = 4 if coords.ndim == 4 else 1
        self.coarse = coords[:, :: self.step, :: self.step, :: self.step] if coords.ndim == 4 \
            else coords
        self.margin = 2.0 * self.step * spacing_mm + 4 * self.sigma
        self.everywhere = (slice(None),) * (coords.ndim - 1)

    def region(self, shape: Shape) -> tuple[slice, ...] | None:
        """Index slices holding every sample within reach of ``shape`` (None: none)."""
        if self.coords.ndim != 4:
            return self.everywhere
        lo, hi = shape.bbox()
        lo = np.maximum(lo - self.margin, -1e9)
        hi = np.minimum(hi + self.margin, 1e9)
        inside = np.ones(self.coarse.shape[1:], bool)
        for a in range(3):
            inside &= (self.coarse[a] >= lo[a]) & (self.coarse[a] <= hi[a])
        hits = np.nonzero(inside)
        if hits[0].size == 0:
            return None
        full = self.coords.shape[1:]
        return tuple(slice(max(int(h.min()) * self.step - self.step, 0),
                           min((int(h.max()) + 2) * self.step, n))
                     for h, n in zip(hits, full, strict=True))

    def sdf(self, shape: Shape, region=None) -> np.ndarray:
        """Distance to ``shape`` on ``region`` (default: everywhere)."""
        region = self.everywhere if region is None else region
        return shape.sdf(*(self.coords[a][region] for a in range(3)))

    def full_sdf(self, shape: Shape) -> np.ndarray:
        """Distance to ``shape`` everywhere, evaluated only within its bounding box."""
        out = np.full(self.labels.shape, _FAR, np.float32)
        region = self.region(shape)
        if region is not None:
            out[region] = self.sdf(shape, region)
        return out

    def paint_distance(self, d: np.ndarray, region, label: int, props: TissueProperties):
        """Paint the samples of ``region`` with distance ``d`` to a shape (soft blend)."""
        frac = 0.5 * scipy.special.erfc(d * np.float32(1 / (self.sigma * np.sqrt(2))))
        self._blend(frac.astype(np.float32, copy=False), region, d < 0, label, props)

    def paint_filled(self, shape: Shape, label: int, props: TissueProperties, *,
                     supersample: int = FILLED_SUPERSAMPLE) -> None:
        """Paint ``shape`` by the fraction of each voxel it fills (its partial volume).

        The fraction is counted on ``supersample ** 3`` points spread evenly over the
        voxel (edge ``spacing_mm``, along the world axes) wherever the shape's surface
        passes within half a voxel diagonal of the voxel centre; elsewhere a voxel is
        wholly in or out. Unlike :meth:`paint`'s soft edge, which is band-limited but
        as wide as a thin vessel, this keeps a vessel as wide as it is: a voxel holds
        the vessel's value in proportion to how much of it the vessel fills, and is
        labelled when it is at least half filled. Each sample stands for a voxel of
        edge ``spacing_mm`` centred on it, on a grid or scattered.
        """
        offsets = ((np.arange(supersample) + 0.5) / supersample - 0.5) * self.spacing
        for part in shape.parts():
            region = self.region(part)
            if region is None:
                continue
            d = self.sdf(part, region)
            frac = (d < 0).astype(np.float32)
            edge = np.abs(d) < 0.5 * np.sqrt(3) * self.spacing
            if edge.any():
                points = [self.coords[a][region][edge] for a in range(3)]
                inside = np.zeros(points[0].shape, np.float32)
                for dx in offsets:
                    for dy in offsets:
                        for dz in offsets:
                            inside += part.sdf(points[0] + np.float32(dx),
                                               points[1] + np.float32(dy),
                                               points[2] + np.float32(dz)) < 0
                frac[edge] = inside / np.float32(supersample**3)
            self._blend(frac, region, frac >= 0.5, label, props)

    def _blend(self, frac: np.ndarray, region, labelled: np.ndarray, label: int,
               props: TissueProperties) -> None:
        """Blend ``props`` into ``region`` by ``frac`` (0..1); label the ``labelled``."""
        for array, value in ((self.chi, props.chi_ppm), (self.m0, props.m0),
                             (self.r2star, props.r2star_3t)):
            view = array[region]
            view += frac * (np.float32(value) - view)
        self.labels[region][labelled] = label

    def paint(self, shape: Shape, label: int, props: TissueProperties) -> None:
        """Paint ``shape`` piece by piece, each piece only within its bounding box."""
        for part in shape.parts():
            region = self.region(part)
            if region is not None:
                self.paint_distance(self.sdf(part, region), region, label, props)


def evaluate_head(
    coords_mm: np.ndarray,
    *,
    edge_sigma_mm: float,
    age_years: float = 40.0,
    calcification: bool = True,
    microbleed: bool = False,
    seed: int = 0,
    spacing_mm: float | None = None,
    venous_blood: VenousBlood | None = None,
    probe_shift_mm: tuple[float, float, float] = (0.0, 0.0, 0.0),
) -> PhantomMaps:
    """Evaluate the continuous head phantom at world coordinates.

    Parameters
    ----------
    coords_mm
        World (template, RAS+) coordinates in mm, shape (3, x, y, z) for a volume
        (a regular or smoothly warped grid) or (3, N) for scattered points.
    edge_sigma_mm
        Width of the soft tissue edges, mm (about 0.7 voxel).
    age_years
        Age for the deep-nuclei susceptibility model.
    calcification, microbleed
        Include a choroid-plexus calcification (right atrium) / a left frontal
        white-matter microbleed.
    seed
        Seed of the cortical folding pattern.
    spacing_mm
        Largest distance between neighbouring samples, mm (default: measured).
    venous_blood
        When given, every vein's susceptibility follows from its OEF and haematocrit
        and the probe veins of :func:`qsmbids.sim.veins.probe_veins` are added (0.5-4 mm,
        along and across B0); the veins are then painted by the fraction of each voxel
        they fill (``_Canvas.paint_filled``), not with soft edges, so a vein is as wide
        as it is said to be. Default: veins at the QSM challenge's 0.19 ppm, soft
        edges, no probes.
    probe_shift_mm
        Moves the probe veins (x, y, z, mm; :func:`qsmbids.sim.veins.probe_veins`).

    Returns
    -------
    PhantomMaps
        chi (ppm), labels, brain_mask, m0, r2star (3 T, 1/s), shaped like the samples.
    """
    coords = np.asarray(coords_mm, dtype=np.float32)
    if coords.shape[0] != 3 or coords.ndim not in (2, 4):
        raise ValueError(f"coords_mm must have shape (3, x, y, z) or (3, N), got {coords.shape}")
    if spacing_mm is None:
        spacing_mm = 1.0
        if coords.ndim == 4:
            spacing_mm = max(float(np.abs(np.diff(coords[:, :3, :3, :3], axis=a)).max())
                             for a in (1, 2, 3))
    table = tissue_table(age_years)
    anat = _anatomy()
    cv = _Canvas(coords, edge_sigma_mm, spacing_mm)
    every = cv.everywhere

    def props(name):
        return LABELS[name], table[LABELS[name]]

    # head, skull, air cavities, intracranial CSF
    d_head = cv.sdf(anat.head)
    d_ic = np.maximum(cv.sdf(anat.cranium), cv.sdf(anat.skull_base))
    cv.paint_distance(d_head, every, *props("SoftTissue"))
    # the medulla leaves the cranium through the foramen magnum: a CSF sheath of
    # CANAL_MM around the brainstem, never bone (else the medulla's tip lies in bone
    # and its voxels blend white matter with bone's chi inside the brain mask)
    d_canal = cv.full_sdf(anat.brainstem) - np.float32(CANAL_MM)
    d_bone = np.maximum(np.maximum(cv.sdf(anat.skull_outer), d_ic - 7), -d_canal)
    cv.paint_distance(d_bone, every, *props("Bone"))
    for sinus in anat.sinuses:  # air away from the brain (>= 3 mm) and the skin (>= 3 mm)
        region = cv.region(sinus)
        if region is not None:
            d = np.maximum(cv.sdf(sinus, region), 3 - d_ic[region])
            cv.paint_distance(np.maximum(d, d_head[region] + 3), region, *props("AirCavity"))
    cv.paint_distance(np.minimum(d_ic, np.maximum(d_canal, d_head + 3)), every, *props("CSF"))
    # brain: folded cerebrum (grey ribbon over white matter), cerebellum, brainstem
    d_cb = np.maximum(cv.full_sdf(anat.cerebellum), d_ic + 2)
    d_cerh = np.maximum(np.maximum(cv.sdf(anat.cerebrum), d_ic + 2), 3 - d_cb)
    d_cer = d_cerh.copy()
    near = np.abs(d_cer) < 4 * FOLDING_MM + CORTEX_MM
    d_cer[near] += np.float32(FOLDING_MM) * _folding(seed)(*(c[near] for c in coords))
    d_cer = np.maximum(d_cer, d_ic + 1)
    fissure = np.abs(coords[0]) < 6
    d_fis = np.abs(coords[0][fissure]) - np.float32(1.2)
    d_fis = np.maximum(d_fis, -anat.deep.sdf(*(c[fissure] for c in coords)))
    d_cer[fissure] = np.maximum(d_cer[fissure], -d_fis)
    cv.paint_distance(d_cer, every, *props("GreyMatter"))
    cv.paint_distance(d_cer + np.float32(CORTEX_MM), every, *props("WhiteMatter"))
    cv.paint_distance(d_cb, every, *props("GreyMatter"))
    cv.paint(anat.cerebellar_wm, *props("WhiteMatter"))
    cv.paint(anat.brainstem, *props("WhiteMatter"))
    cv.paint(anat.ventricles, *props("CSF"))
    for name, shape in anat.nuclei:
        cv.paint(shape, *props(name))
    vein = props("Vein")
    if venous_blood is None:
        cv.paint(anat.veins, *vein)
    else:
        # veins of known blood are painted by their partial volume: the soft edge
        # (0.7 voxel) is as wide as a thin vein, and would paint a 1.5 mm vein at 1 mm
        # as a 2-3 voxel wide haze whose centre holds only 70 % of the blood
        vein = (vein[0], replace(vein[1], chi_ppm=venous_blood.chi_ppm))
        for probe in probe_veins(probe_shift_mm):
            cv.paint_filled(probe.shape, *vein)
        cv.paint_filled(anat.veins, *vein)
    if calcification:
        cv.paint(Ellipsoid((22.0, -42.0, 11.0), (2.5, 2.5, 2.5)), *props("Calcification"))
    if microbleed:
        cv.paint(Ellipsoid((-28.0, 22.0, 28.0), (1.8, 1.8, 1.8)), *props("Microbleed"))
    d_brain = np.minimum(np.minimum(d_cerh, d_cb), cv.full_sdf(anat.brainstem))
    brain = (d_brain < 0) & np.isin(cv.labels, BRAIN_LABELS)
    return PhantomMaps(cv.chi, cv.labels, brain, cv.m0, cv.r2star)


def phantom_grid(voxel_size_mm: float) -> tuple[tuple[int, int, int], np.ndarray]:
    """Shape and RAS+ affine of the phantom's axial grid at ``voxel_size_mm``.

    The grid covers :data:`FOV_MIN_MM` .. :data:`FOV_MAX_MM` (181x217x181 at 1 mm,
    91x109x91 at 2 mm, like MNI152).
    """
    if not 0.5 <= voxel_size_mm <= 4.0:
        raise ValueError(f"voxel_size_mm must be within 0.5..4 mm, got {voxel_size_mm}")
    extent = np.asarray(FOV_MAX_MM) - np.asarray(FOV_MIN_MM)
    shape = tuple(int(n) for n in np.floor(extent / voxel_size_mm + 1e-6) + 1)
    affine = np.diag([voxel_size_mm] * 3 + [1.0])
    affine[:3, 3] = FOV_MIN_MM
    return shape, affine


def grid_coordinates(shape, affine: np.ndarray) -> np.ndarray:
    """World coordinates (3, x, y, z), float32 mm, of every voxel centre of a grid."""
    idx = np.indices(shape, dtype=np.float32)
    aff = np.asarray(affine, np.float32)
    return np.einsum("ij,j...->i...", aff[:3, :3], idx) + aff[:3, 3].reshape(3, 1, 1, 1)


def make_head_phantom(
    voxel_size_mm: float = 1.0,
    *,
    age_years: float = 40.0,
    calcification: bool = True,
    microbleed: bool = False,
    seed: int = 0,
    venous_blood: VenousBlood | None = None,
    probe_shift_mm: tuple[float, float, float] = (0.0, 0.0, 0.0),
) -> HeadPhantom:
    """The head phantom on an axial RAS+ grid covering an MNI-like field of view.

    Parameters
    ----------
    voxel_size_mm
        Isotropic voxel size, mm (1.0 to 3.0 intended).
    age_years
        Age for the deep-nuclei iron/susceptibility model.
    calcification
        Include a strongly diamagnetic calcification in the right choroid plexus.
    microbleed
        Include a strongly paramagnetic microbleed in the left frontal white matter.
    seed
        Seed of the cortical folding pattern (0: the template's).
    venous_blood
        Oxygenation of the veins, adding the probe veins (see :func:`evaluate_head`).
    probe_shift_mm
        Moves the probe veins (x, y, z, mm).

    Returns
    -------
    HeadPhantom
    """
    shape, affine = phantom_grid(voxel_size_mm)
    coords = grid_coordinates(shape, affine)
    maps = evaluate_head(coords, edge_sigma_mm=EDGE_SIGMA_VOXELS * voxel_size_mm,
                         age_years=age_years, calcification=calcification,
                         microbleed=microbleed, seed=seed, spacing_mm=voxel_size_mm,
                         venous_blood=venous_blood, probe_shift_mm=probe_shift_mm)
    return HeadPhantom(maps.chi, maps.labels, maps.brain_mask, maps.m0, maps.r2star,
                       (float(voxel_size_mm),) * 3, affine, dict(LABEL_NAMES))


#: qsm-ci segmentation labels of the phantom's tissues (REFERENCE.md section 3)
QSMCI_LABELS: dict[str, int] = {
    "Caudate": 1, "GlobusPallidus": 2, "Putamen": 3, "RedNucleus": 4, "Dentate": 5,
    "SubstantiaNigra": 6, "Thalamus": 7, "WhiteMatter": 8, "GreyMatter": 9, "CSF": 10,
    "Vein": 11, "Bone": 13, "AirCavity": 14, "SoftTissue": 15, "Calcification": 16,
}


def to_qsmci_seg(labels: np.ndarray) -> np.ndarray:
    """Map phantom labels to the qsm-ci convention (1 caudate, 2 GP, 3 putamen, 4 RN,
    5 dentate, 6 SN, 7 thalamus, 8 WM, 9 GM, 10 CSF, 11 blood, 13 bone, 14 air,
    15 muscle/soft tissue, 16 calcification); outside air and the microbleed map to 0.

    Returns
    -------
    numpy.ndarray
        uint8, same shape as ``labels``.
    """
    lut = np.zeros(max(LABEL_NAMES) + 1, np.uint8)
    for label, name in LABEL_NAMES.items():
        lut[label] = QSMCI_LABELS.get(name.rsplit("_", 1)[0] if label < 20 else name, 0)
    labels = np.asarray(labels)
    if labels.size and (labels.min() < 0 or labels.max() >= lut.size):
        raise ValueError(f"labels outside 0..{lut.size - 1}: not phantom labels")
    return lut[labels]
