"""Veins in a susceptibility map: a vein mask, venous susceptibility and OEF.

Deoxygenated haemoglobin makes venous blood paramagnetic: relative to water (and to
fully oxygenated blood, whose own shift is neglected),

    delta_chi_vein = Hct x delta_chi_do x OEF

with ``delta_chi_do`` the susceptibility difference between fully deoxygenated and
fully oxygenated red cells, 3.39 ppm in SI units (0.27 ppm cgs x 4 pi; Spees et al.,
MRM 2001; Jain et al., MRM 2012) and ``Hct`` the haematocrit (Fan et al., MRM 2014;
Harada et al., RadioGraphics 2022). Inverting it gives the oxygen extraction fraction
(OEF) from the susceptibility of large veins, where partial volumes and the
regularisation of the inversion matter least.

The vein mask combines Frangi's vesselness of the susceptibility map (bright tubes;
scikit-image's implementation, Frangi et al., MICCAI 1998) with a susceptibility floor,
inside the brain mask shrunk by a margin (its edge is where inversion errors and
sinuses outside the mask live) and outside any excluded region (the deep nuclei,
bright blobs that are not veins).

Arrays are (x, y, z) voxel order; susceptibility in ppm, lengths in mm.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import scipy.ndimage as ndi

from qsmbids.recon.masking import distance_to_outside, grown_bounding_box, within

if TYPE_CHECKING:
    from qsmbids.recon.vein_boxes import ConvergedCubes

#: susceptibility difference between fully deoxygenated and oxygenated red blood
#: cells, ppm (SI; 0.27 ppm cgs x 4 pi; Spees et al. 2001, Jain et al. 2012)
DELTA_CHI_DO_PPM = 3.39
#: haematocrit used when a participant's is not given (``participants.tsv`` column
#: ``hematocrit``): a middle value of the adult range 0.40-0.45
DEFAULT_HEMATOCRIT = 0.42
#: vessel radii the vesselness looks for, mm
DEFAULT_RADII_MM = (0.5, 1.0, 1.5)
#: least susceptibility of a vein voxel, ppm (above the deep nuclei's typical values
#: and below blood's ~0.5 ppm at OEF 0.35)
DEFAULT_VEIN_CHI_MIN_PPM = 0.15
#: least Frangi vesselness of a vein seed (0..1): vein centres reach 0.5-0.8 on
#: qsm-forward heads at 1 mm, a round microbleed about 0.13
DEFAULT_VESSELNESS_MIN = 0.3
#: Frangi's structuredness constant for susceptibility maps (ppm per squared voxel):
#: half the largest Hessian norm scikit-image found on the qsm-forward head at 1 mm,
#: fixed so that one strong structure (a calcification) does not change every voxel's
#: vesselness
DEFAULT_VESSELNESS_GAMMA = 0.02
#: least diameter of the veins whose susceptibility is measured, mm
DEFAULT_MEASURE_DIAMETER_MM = 2.0
#: least depth inside the brain mask of the centre-line voxels measured, mm: nearer the
#: surface background removal takes part of a vein's field with the background (on a
#: qsm-forward head the sinuses at the surface read 0.13-0.16 ppm low whether TV stopped
#: early or converged; on the vein head painted by partial volume, the whole mask's
#: converged value was 0.004-0.010 ppm low at SNR 80 and 0.013-0.014 at SNR 30 from 8,
#: 10, 15 or 20 mm deep, 0.038-0.070 from 5 mm or less)
DEFAULT_MEASURE_DEPTH_MM = 10.0
#: coarsest (mean) voxel edge at which the venous susceptibility is measured, mm: at
#: 2 mm even a 4 mm vein has no voxel free of partial volume after the inversion's
#: smoothing, and its peak falls well below the blood's value
MAX_MEASURE_VOXEL_MM = 1.5


def venous_chi_from_oef(oef: float, hematocrit: float = DEFAULT_HEMATOCRIT) -> float:
    """Susceptibility of venous blood relative to water (ppm) at ``oef`` (0..1)."""
    _check_fraction(oef, "oef")
    _check_fraction(hematocrit, "hematocrit")
    return float(hematocrit * DELTA_CHI_DO_PPM * oef)


def oef_from_venous_chi(delta_chi_ppm: float, hematocrit: float = DEFAULT_HEMATOCRIT
                        ) -> float:
    """Oxygen extraction fraction from the venous susceptibility relative to water.

    Parameters
    ----------
    delta_chi_ppm
        Susceptibility of venous blood relative to water (or CSF), ppm.
    hematocrit
        Haematocrit, 0..1.

    Returns
    -------
    float
        OEF (a fraction; plausible values 0.2-0.5, not clipped, so an implausible
        measurement stays visible).
    """
    _check_fraction(hematocrit, "hematocrit")
    if hematocrit == 0:
        raise ValueError("hematocrit must be > 0")
    return float(delta_chi_ppm / (DELTA_CHI_DO_PPM * hematocrit))


def _check_fraction(value: float, name: str) -> None:
    if not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{name} must be a fraction in [0, 1], got {value}")


def vesselness(chi_ppm: np.ndarray, mask: np.ndarray, voxel_size_mm: Sequence[float],
               radii_mm: Sequence[float] = DEFAULT_RADII_MM, *,
               where: np.ndarray | None = None,
               gamma: float = DEFAULT_VESSELNESS_GAMMA, workers: int = 1) -> np.ndarray:
    """Frangi vesselness of bright tubes in a susceptibility map, inside ``mask``.

    The map outside the mask is set to its median inside (so the mask's edge is not a
    ridge). With ``where``, the filter runs only on boxes around the connected parts of
    ``where`` (grown by three of the largest scales), which is where the answer is
    needed: veins are sparse, so this costs a fraction of the whole brain's box. The
    structuredness constant ``gamma`` is fixed (scikit-image's default is half of
    the largest Hessian norm in the image), so the result at a voxel does not depend
    on the box around it, nor on the strongest structure in the head.

    Parameters
    ----------
    chi_ppm
        Susceptibility map, ppm, (x, y, z).
    mask
        Brain mask (bool), (x, y, z).
    voxel_size_mm
        Voxel edge lengths, mm; the scales are set from their mean (near-isotropic
        voxels are assumed).
    radii_mm
        Vessel radii looked for, mm (Gaussian scales sigma = radius).
    where
        Voxels whose vesselness is wanted (bool); default: all of ``mask``.
    gamma
        Frangi's structuredness constant, in the map's Hessian units (ppm per
        squared voxel at the scales used).
    workers
        Threads: each box and scale is filtered on its own (the filter's value is the
        largest over the scales, each scale's independent of the others with a fixed
        ``gamma``, so the result is the same; the Gaussian derivatives and eigenvalues
        release the GIL).

    Returns
    -------
    numpy.ndarray
        float32 in [0, 1], (x, y, z); 0 outside ``mask`` (and, with ``where``, away
        from it).
    """
    from skimage.filters import frangi

    chi = np.asarray(chi_ppm, np.float32)
    mask = np.asarray(mask, bool)
    out = np.zeros(chi.shape, np.float32)
    if not mask.any():
        return out
    spacing = float(np.mean(voxel_size_mm))
    sigmas = [max(r / spacing, 0.5) for r in radii_mm]
    fill = np.float32(np.median(chi[mask]))
    whole = ndi.find_objects(mask.astype(np.uint8))[0]
    boxes = [whole]
    if where is not None:
        reach = int(np.ceil(3 * max(sigmas))) + 1
        grown = ndi.binary_dilation(np.asarray(where, bool) & mask, iterations=reach)
        found = [b for b in ndi.find_objects(ndi.label(grown)[0]) if b is not None]
        volume = lambda box: int(np.prod([s.stop - s.start for s in box]))  # noqa: E731
        if not found:
            return out
        if sum(map(volume, found)) < volume(whole):
            boxes = found
    def filtered(task: tuple[tuple[slice, ...], float]) -> np.ndarray:
        box, sigma = task
        sub = np.where(mask[box], chi[box], fill)
        return frangi(sub, sigmas=[sigma], black_ridges=False, gamma=gamma)

    tasks = [(box, sigma) for box in boxes for sigma in sigmas]
    with ThreadPoolExecutor(max(1, min(workers, len(tasks)))) as pool:
        # each response is taken in as soon as it is done (the maximum does not depend
        # on the order), so no more than a few are held at once
        running = {pool.submit(filtered, task): task[0] for task in tasks}
        for done in as_completed(running):
            box = running[done]
            out[box] = np.maximum(out[box], np.where(mask[box], done.result(), 0.0))
    return out


def candidate_vesselness(chi_ppm: np.ndarray, brain_mask: np.ndarray,
                         voxel_size_mm: Sequence[float], *,
                         chi_min_ppm: float = DEFAULT_VEIN_CHI_MIN_PPM,
                         edge_margin_mm: float = 3.0,
                         radii_mm: Sequence[float] = DEFAULT_RADII_MM,
                         depth_mm: np.ndarray | None = None, workers: int = 1) -> np.ndarray:
    """The vesselness :func:`vein_mask` needs, before any region is excluded.

    Frangi's filter (:func:`vesselness`) on boxes around the voxels that could seed a
    vein: at least ``chi_min_ppm`` and ``edge_margin_mm`` inside the brain. With its
    fixed structuredness constant, a voxel's value does not depend on which other
    voxels are candidates, so :func:`vein_mask` may exclude the nuclei afterwards.
    ``depth_mm``: ``distance_to_outside(brain_mask, voxel_size_mm)`` when computed
    already (default: computed here); ``workers``: threads (see :func:`vesselness`).

    Returns
    -------
    numpy.ndarray
        float32 in [0, 1], (x, y, z).
    """
    chi = np.asarray(chi_ppm, np.float32)
    brain = np.asarray(brain_mask, bool)
    if depth_mm is None:
        depth_mm = distance_to_outside(brain, voxel_size_mm)
    candidates = (depth_mm >= edge_margin_mm) & (chi >= chi_min_ppm)
    return vesselness(chi, brain, voxel_size_mm, radii_mm, where=candidates, workers=workers)


def vein_mask(chi_ppm: np.ndarray, brain_mask: np.ndarray, voxel_size_mm: Sequence[float],
              *, exclude: np.ndarray | None = None,
              chi_min_ppm: float = DEFAULT_VEIN_CHI_MIN_PPM,
              vesselness_min: float = DEFAULT_VESSELNESS_MIN,
              edge_margin_mm: float = 3.0, exclude_margin_mm: float = 2.0,
              min_volume_mm3: float = 8.0, min_elongation: float = 3.0,
              radii_mm: Sequence[float] = DEFAULT_RADII_MM, fill_fraction: float = 0.5,
              vesselness_map: np.ndarray | None = None,
              depth_mm: np.ndarray | None = None) -> np.ndarray:
    """Veins of a susceptibility map: bright, tubular, away from the brain edge and nuclei.

    Seeds are the voxels whose susceptibility is at least ``chi_min_ppm`` and whose
    vesselness is at least ``vesselness_min``, at least ``edge_margin_mm`` inside the
    brain mask and ``exclude_margin_mm`` from ``exclude``. Each vein then holds the
    voxels connected to its seeds that are above half its local peak (relative to the
    brain's median susceptibility): the half-maximum width, which for a vein blurred
    by the voxel grid and the inversion marks the voxels at least half filled with
    blood. In veins thinner than a few voxels the peak itself is lowered by partial
    volume, so there the level is the blood's susceptibility measured on the large
    veins' centre lines (:func:`venous_measure`, those :data:`DEFAULT_MEASURE_DEPTH_MM`
    or more inside the brain, or any when none is) when it is higher. Components
    smaller than ``min_volume_mm3`` are dropped, and so are those that are not
    elongated (longest principal axis under ``min_elongation`` times the
    shortest and under 20 mm: microbleeds, calcification rims).

    Parameters
    ----------
    chi_ppm
        Susceptibility map, ppm, (x, y, z).
    brain_mask
        Brain mask (bool), (x, y, z).
    voxel_size_mm
        Voxel edge lengths, mm.
    exclude
        Regions that are not veins (bool), e.g. the deep nuclei from the atlas.
    chi_min_ppm, vesselness_min, edge_margin_mm, exclude_margin_mm, min_volume_mm3,
    min_elongation, radii_mm
        See above.
    fill_fraction
        The least fraction of the way from the brain's median to a vein's level that a
        connected voxel holds to join it: 0.5, the voxels at least half filled with
        blood; less finds where a vein may lie that the map reads low.
    vesselness_map
        The map's vesselness (:func:`candidate_vesselness` with the same
        ``chi_min_ppm``, ``edge_margin_mm`` and ``radii_mm``), when it was computed
        already: the vein workflow computes it while the atlas registration that gives
        ``exclude`` still runs. Default: computed here.
    depth_mm
        ``distance_to_outside(brain_mask, voxel_size_mm)`` (mm, x, y, z), when computed
        already (the vein node gives the same to :func:`venous_measure`). Default:
        computed here.

    Returns
    -------
    numpy.ndarray
        bool, (x, y, z).
    """
    chi = np.asarray(chi_ppm, np.float32)
    brain = np.asarray(brain_mask, bool)
    voxel = np.asarray(voxel_size_mm, float)
    # Everything below happens inside the brain, or (the excluded regions' margin, the
    # vesselness's scales) within a few mm of it: it runs on the brain's bounding box,
    # grown by those reaches, which is a fraction of a head's image.
    reach = max(exclude_margin_mm, 3 * max(radii_mm)) + max(voxel)
    box = grown_bounding_box(brain, [int(np.ceil(reach / d)) + 1 for d in voxel])
    if box is None:
        return np.zeros(brain.shape, bool)
    if any(s.stop - s.start < n for s, n in zip(box, brain.shape, strict=True)):
        def crop(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else np.asarray(a)[box]

        out = np.zeros(brain.shape, bool)
        out[box] = vein_mask(
            chi[box], brain[box], voxel, exclude=crop(exclude), chi_min_ppm=chi_min_ppm,
            vesselness_min=vesselness_min, edge_margin_mm=edge_margin_mm,
            exclude_margin_mm=exclude_margin_mm, min_volume_mm3=min_volume_mm3,
            min_elongation=min_elongation, radii_mm=radii_mm, fill_fraction=fill_fraction,
            vesselness_map=crop(vesselness_map), depth_mm=crop(depth_mm))
        return out
    if depth_mm is None:
        depth_mm = distance_to_outside(brain, voxel)
    inside = depth_mm >= edge_margin_mm
    if exclude is not None and np.any(exclude):
        inside &= ~within(np.asarray(exclude, bool), voxel, exclude_margin_mm)
    candidates = inside & (chi >= chi_min_ppm)
    if vesselness_map is None:
        v = vesselness(chi, brain, voxel, radii_mm, where=candidates)
    else:
        v = np.asarray(vesselness_map, np.float32)
    seeds = candidates & (v >= vesselness_min)
    if not seeds.any():
        return seeds
    background = np.float32(np.median(chi[brain]))
    reach = [max(1, int(np.ceil(max(radii_mm) / d))) for d in voxel]
    peak = ndi.maximum_filter(np.where(seeds, chi, background),
                              size=[2 * r + 1 for r in reach])

    def half_maximum(level: np.ndarray) -> np.ndarray:
        half = inside & (chi - background >= fill_fraction * (level - background)) \
            & (level > background)
        labels, _ = ndi.label(half)
        return np.isin(labels, np.unique(labels[seeds & half])) & (labels > 0)

    veins = half_maximum(peak)
    # A thin vein's own peak is lowered by its partial volume, and half of it would
    # take in the rim around it: where the large veins give the blood's value, half
    # of that is the least a voxel at least half filled with blood can hold. The blood
    # is read where the venous measure reads it, deep inside the brain: veins near its
    # surface read low (at peak SNR 30 on the qsm-forward vein head, every centre line
    # gave 0.44 ppm, the deep ones 0.48, the truth 0.50, and the lower level took in a
    # 1.5 mm vein's 45 % filled neighbours); without deep veins (a crop), every one.
    blood = venous_measure(chi, veins, voxel, depth_mm=depth_mm).chi_ppm
    if not np.isfinite(blood):
        blood = venous_measure(chi, veins, voxel).chi_ppm
    if np.isfinite(blood) and blood > background:
        veins = half_maximum(np.maximum(peak, np.float32(blood)))
    return _tubular_components(veins, voxel, min_volume_mm3, min_elongation)


def _tubular_components(mask: np.ndarray, voxel: np.ndarray, min_volume_mm3: float,
                        min_elongation: float) -> np.ndarray:
    """The components of ``mask`` of at least ``min_volume_mm3`` that are elongated:
    their longest principal axis at least ``min_elongation`` times their shortest
    (scikit-image's ``regionprops``), or at least 20 mm long (a branching network).
    A round microbleed or calcification rim is bright and, at its edges, tube-like to
    Frangi's filter, but it is not elongated."""
    from skimage.measure import regionprops

    labels, n = ndi.label(mask)
    keep = np.zeros(n + 1, bool)
    for region in regionprops(labels, spacing=tuple(voxel)):
        if region.area < min_volume_mm3:  # area is the volume (mm^3) with spacing
            continue
        major, minor = region.axis_major_length, region.axis_minor_length
        keep[region.label] = major >= 20.0 or major >= min_elongation * max(minor, 1e-6)
    return keep[labels]


@dataclass(frozen=True)
class VenousMeasure:
    """Susceptibility of the large veins and the OEF it implies.

    Attributes
    ----------
    chi_ppm
        Median susceptibility along the centre lines of the veins measured, ppm,
        relative to the map's reference (NaN when there are none).
    n_voxels
        Centre-line voxels measured.
    min_diameter_mm
        The least vein diameter measured, mm.
    hematocrit
        Haematocrit used.
    oef
        ``chi_ppm / (DELTA_CHI_DO_PPM x hematocrit)`` (NaN when not measured).
    n_boxes
        Cubes TV was solved to convergence in (0: the map's own values were read).
    coverage
        Fraction of the centre-line voxels those cubes covered.
    """

    chi_ppm: float
    n_voxels: int
    min_diameter_mm: float
    hematocrit: float
    oef: float
    n_boxes: int = 0
    coverage: float = 1.0


def centre_lines(veins: np.ndarray, voxel_size_mm: Sequence[float],
                 min_diameter_mm: float = DEFAULT_MEASURE_DIAMETER_MM) -> np.ndarray:
    """Centre-line voxels of the veins at least ``min_diameter_mm`` wide (bool, (x, y, z)).

    A vein's centre line is the ridge of the mask's distance transform (the voxels
    deepest among their 3x3x3 neighbours: the medial axis); a centre-line voxel's vein
    diameter is ``2 d - v``, with ``d`` its distance to the mask's edge and ``v`` the
    mean voxel size.
    """
    veins = np.asarray(veins, bool)
    voxel = np.asarray(voxel_size_mm, float)
    core = np.zeros(veins.shape, bool)
    if veins.any():
        box = grown_bounding_box(veins, 1)
        inside = veins[box]
        depth = ndi.distance_transform_edt(np.pad(inside, 1), sampling=voxel)[
            1:-1, 1:-1, 1:-1]
        ridge = depth >= ndi.maximum_filter(depth, size=3)
        core[box] = inside & ridge & (2 * depth - voxel.mean() >= min_diameter_mm)
    return core


def venous_measure(chi_ppm: np.ndarray, veins: np.ndarray, voxel_size_mm: Sequence[float],
                   *, hematocrit: float = DEFAULT_HEMATOCRIT,
                   min_diameter_mm: float = DEFAULT_MEASURE_DIAMETER_MM,
                   depth_mm: np.ndarray | None = None,
                   min_depth_mm: float = DEFAULT_MEASURE_DEPTH_MM,
                   converged: ConvergedCubes | None = None) -> VenousMeasure:
    """Venous susceptibility along the centre lines of the large veins, and OEF.

    A vein's centre line is the ridge of the mask's distance transform (the voxels
    deepest among their 3x3x3 neighbours: the medial axis, free of noise, unlike the
    susceptibility's own maxima); a centre-line voxel's vein diameter is ``2 d - v``,
    with ``d`` its distance to the mask's edge and ``v`` the mean voxel size. Only
    veins at least ``min_diameter_mm`` wide are measured: in thinner ones the voxel
    and the inversion's smoothing lower the peak below the blood's value.

    Parameters
    ----------
    chi_ppm
        Susceptibility map, ppm, (x, y, z), referenced to water or CSF for the OEF
        to hold (a whole-brain reference shifts it by chi_CSF - mean brain chi).
    veins
        Vein mask (bool), (x, y, z), from :func:`vein_mask`.
    voxel_size_mm
        Voxel edge lengths, mm.
    hematocrit
        Haematocrit (0..1).
    min_diameter_mm
        The least vein diameter measured, mm.
    depth_mm, min_depth_mm
        With the depth of each voxel inside the brain mask (mm, x, y, z:
        :func:`qsmbids.recon.masking.distance_to_outside`), only centre-line voxels at
        least ``min_depth_mm`` deep are measured.
    converged
        The cubes TV was solved to convergence in (:mod:`qsmbids.recon.vein_boxes`),
        whose values ``chi_ppm`` then holds (``ConvergedCubes.chi_ppm``, shifted to its
        reference): only the centre-line voxels they cover are read. The delivered map
        stops TV early, where the veins are still off (on a qsm-forward head with known
        blood at peak SNR 30, 0.083 ppm low along B0 against 0.013 converged). None:
        every centre-line voxel of ``chi_ppm``.

    Returns
    -------
    VenousMeasure
    """
    _check_fraction(hematocrit, "hematocrit")
    chi = np.asarray(chi_ppm, np.float32)
    core = centre_lines(veins, voxel_size_mm, min_diameter_mm)
    if depth_mm is not None:
        core &= np.asarray(depth_mm) >= min_depth_mm
    n = int(core.sum())
    if n == 0:
        return VenousMeasure(float("nan"), 0, float(min_diameter_mm), float(hematocrit),
                             float("nan"))
    if converged is None:
        value = float(np.median(chi[core]))
        return VenousMeasure(value, n, float(min_diameter_mm), float(hematocrit),
                             oef_from_venous_chi(value, hematocrit))
    read = core & converged.covered
    value = float(np.median(chi[read])) if read.any() else float("nan")
    return VenousMeasure(value, int(read.sum()), float(min_diameter_mm),
                         float(hematocrit), oef_from_venous_chi(value, hematocrit),
                         converged.n_boxes, float(read.sum() / n))
