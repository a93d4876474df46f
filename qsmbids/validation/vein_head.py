"""The vein head: veins of known oxygenation, forward-simulated by qsm-forward, and its scores.

A head of qsmbids' design whose veins carry blood of a known oxygenation (OEF 0.35,
haematocrit 0.42: 0.498 ppm relative to water) and twelve straight probe veins 0.5-4 mm
wide along and across B0 (:mod:`qsmbids.sim.veins`), all painted by the fraction of
each voxel they fill, is simulated by ``qsm-forward`` (:mod:`qsmbids.validation.peer_heads`).
Its truth scores a run's vein mask per probe vein (Dice against the voxels the sharp
tube fills at least half) and its venous susceptibility over the probe veins along B0,
across B0 and over the whole mask, relative to the ventricles' CSF (water).

Targets (issue 19): Dice >= 0.7 for veins >= 1.5 mm; venous susceptibility within
0.03 ppm and OEF within 0.05 of the truth, along and across B0. Used by
``benchmarks/bench_veins.py`` and the slow test ``tests/test_vein_head.py``.

Arrays are (x, y, z) on the phantom's grid (:func:`qsmbids.sim.phantom.phantom_grid`);
susceptibility in ppm.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.ndimage as ndi

from qsmbids.recon import veins
from qsmbids.sim.phantom import grid_coordinates
from qsmbids.sim.veins import ProbeVein, VenousBlood, probe_vein_labels, probe_veins
from qsmbids.validation.peer_heads import PeerHeadCase
from qsmbids.validation.warps import dice

#: the head's blood: OEF 0.35, haematocrit 0.42 (0.498 ppm relative to water)
BLOOD = VenousBlood(oef=0.35, hematocrit=0.42)
DICE_TARGET, CHI_TARGET_PPM, OEF_TARGET = 0.7, 0.03, 0.05
#: the least probe-vein diameter held to the Dice target, mm
DICE_MIN_DIAMETER_MM = 1.5
#: qsm-ci segmentation labels: 1-7 the deep nuclei, 10 CSF
NUCLEI_SEG, CSF_SEG = tuple(range(1, 8)), 10
#: how far around a probe vein's ends and sides its found voxels are looked for, mm
PROBE_REACH_MM = 4.0


def vein_head_case(voxel_mm: float = 1.0, peak_snr: float = 80.0,
                   probe_shift_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
                   ) -> PeerHeadCase:
    """The qsm-forward case of the vein head at ``voxel_mm`` (isotropic) and ``peak_snr``,
    its probe veins moved by ``probe_shift_mm`` (x, y, z, mm)."""
    return PeerHeadCase(f"veins{int(voxel_mm * 10)}", voxel_size_mm=(voxel_mm,) * 3,
                        phantom_voxel_mm=voxel_mm, peak_snr=peak_snr, venous_blood=BLOOD,
                        probe_shift_mm=tuple(float(v) for v in probe_shift_mm))


@dataclass(frozen=True)
class ProbeScore:
    """The vein mask on one probe vein.

    Attributes
    ----------
    name, diameter_mm, orientation
        The probe (:class:`qsmbids.sim.veins.ProbeVein`).
    dice
        Dice of the mask near the probe with the voxels the tube fills at least half
        (NaN when neither has any).
    n_true, n_found
        Those voxels, and the mask's voxels near the probe.
    """

    name: str
    diameter_mm: float
    orientation: str
    dice: float
    n_true: int
    n_found: int


def probe_neighbourhoods(shape: tuple[int, int, int], affine: np.ndarray,
                         probes: Sequence[ProbeVein] | None = None) -> dict[str, np.ndarray]:
    """Each probe vein's bounding box grown by :data:`PROBE_REACH_MM` (bool, (x, y, z));
    ``probes``: default :func:`~qsmbids.sim.veins.probe_veins` where they are."""
    coords = grid_coordinates(shape, affine)
    out = {}
    for probe in probe_veins() if probes is None else probes:
        lo, hi = probe.shape.bbox()
        box = np.ones(shape, bool)
        for a in range(3):
            box &= (coords[a] >= lo[a] - PROBE_REACH_MM) & (coords[a] <= hi[a] + PROBE_REACH_MM)
        out[probe.name] = box
    return out


def score_probe_masks(found: np.ndarray, affine: np.ndarray,
                      near: dict[str, np.ndarray] | None = None,
                      probes: Sequence[ProbeVein] | None = None) -> list[ProbeScore]:
    """Dice of the vein mask ``found`` (bool, the phantom's grid) per probe vein."""
    found = np.asarray(found, bool)
    probes = probe_veins() if probes is None else tuple(probes)
    near = probe_neighbourhoods(found.shape, affine, probes) if near is None else near
    truth = probe_vein_labels(found.shape, affine, probes)
    scores = []
    for k, probe in enumerate(probes, start=1):
        true, here = truth == k, found & near[probe.name]
        scores.append(ProbeScore(probe.name, probe.diameter_mm, probe.orientation,
                                 dice(here, true), int(true.sum()), int(here.sum())))
    return scores


def dice_target_met(scores: Sequence[ProbeScore]) -> bool:
    """Whether every probe vein of at least :data:`DICE_MIN_DIAMETER_MM` reaches the target."""
    return all(s.dice >= DICE_TARGET for s in scores if s.diameter_mm >= DICE_MIN_DIAMETER_MM)


def measured_selections(found: np.ndarray, affine: np.ndarray,
                        near: dict[str, np.ndarray] | None = None,
                        probes: Sequence[ProbeVein] | None = None) -> dict[str, np.ndarray]:
    """The parts of the vein mask whose venous susceptibility is scored: the probe veins
    of at least :data:`DICE_MIN_DIAMETER_MM` along B0, those across, and the whole mask."""
    found = np.asarray(found, bool)
    probes = probe_veins() if probes is None else tuple(probes)
    near = probe_neighbourhoods(found.shape, affine, probes) if near is None else near
    out = {}
    for orientation in ("along", "across"):
        members = [p.name for p in probes
                   if p.diameter_mm >= DICE_MIN_DIAMETER_MM and p.orientation == orientation]
        out[f"probes >= {DICE_MIN_DIAMETER_MM:g} mm {orientation}"] = \
            found & np.logical_or.reduce([near[n] for n in members])
    out["whole vein mask"] = found
    return out


def csf_level(chi_ppm: np.ndarray, mask: np.ndarray, seg: np.ndarray) -> tuple[float, int]:
    """The map's median over the ventricles' CSF (qsm-ci label 10, eroded by one voxel,
    inside ``mask``) and the voxels it used: the water level the blood is measured from."""
    csf = ndi.binary_erosion((np.asarray(seg) == CSF_SEG) & np.asarray(mask, bool),
                             iterations=1)
    return float(np.median(np.asarray(chi_ppm)[csf])), int(csf.sum())


def venous_errors(measure: veins.VenousMeasure) -> tuple[float, float, bool]:
    """A measure's venous susceptibility error (ppm), OEF error, and whether both meet
    their targets."""
    error, oef_error = measure.chi_ppm - BLOOD.chi_ppm, measure.oef - BLOOD.oef
    met = bool(abs(error) <= CHI_TARGET_PPM and abs(oef_error) <= OEF_TARGET)
    return float(error), float(oef_error), met
