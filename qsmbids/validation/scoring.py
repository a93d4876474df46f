"""Scores of susceptibility maps: the peer scorer ``qsm-ci`` on simulated heads, and the
checks that need no truth on real scanner data.

On simulated heads :func:`score_peer_head` reports qsm-ci's NRMSE (demeaned, %), XSIM,
HFEN (%) and coverage over the TRUE brain mask (voxels the pipeline left out count as
0 against the truth, as QSM-CI scores), and the error of each deep-grey nucleus mean,
both maps referenced to their mean over the true brain mask (the same demeaning as the
NRMSE, so a reference-region choice does not enter).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

#: qsm-ci segmentation label of each deep grey nucleus
QSMCI_NUCLEI: dict[str, int] = {
    "caudate": 1, "pallidum": 2, "putamen": 3, "red_nucleus": 4, "dentate": 5,
    "substantia_nigra": 6, "thalamus": 7,
}


@dataclass(frozen=True)
class PeerScore:
    """Accuracy of one map against the truth.

    Attributes
    ----------
    nrmse, hfen
        qsm-ci's demeaned NRMSE and HFEN over the true brain mask, %.
    xsim
        qsm-ci's XSIM (1 is perfect).
    coverage
        Fraction of the true brain mask with a finite, non-zero value.
    nucleus_error_ppm
        Nucleus name -> (recon mean - truth mean), ppm, both referenced to their mean
        over the true brain mask.
    """

    nrmse: float
    hfen: float
    xsim: float
    coverage: float
    nucleus_error_ppm: Mapping[str, float]

    @property
    def worst_nucleus(self) -> tuple[str, float]:
        """The nucleus with the largest absolute error and that error (ppm)."""
        name = max(self.nucleus_error_ppm, key=lambda k: abs(self.nucleus_error_ppm[k]))
        return name, self.nucleus_error_ppm[name]


def score_peer_head(recon_ppm: np.ndarray, truth_ppm: np.ndarray, brain_mask: np.ndarray,
                    seg: np.ndarray) -> PeerScore:
    """Score a susceptibility map (ppm, (x, y, z)) against a simulated head's truth.

    Parameters
    ----------
    recon_ppm
        Reconstructed chi, ppm, any reference (shifted to the truth's mean over the
        brain voxels it covers); NaN/inf count as missing.
    truth_ppm
        True chi, ppm.
    brain_mask
        True brain mask (bool), where the score is taken.
    seg
        qsm-ci labels (:data:`QSMCI_NUCLEI` for the nuclei).

    Returns
    -------
    PeerScore
    """
    from qsm_ci.qsm_eval import score_arrays

    mask = np.asarray(brain_mask, bool)
    finite = mask & np.isfinite(recon_ppm)
    truth = np.where(mask, truth_ppm, 0.0).astype(np.float64)
    # chi is known up to a constant: put the map on the truth's reference (the mean over
    # the brain) before scoring, since qsm-ci's XSIM (unlike its NRMSE) is not shift
    # invariant (a perfect map demeaned to 0 scores XSIM 0.60 against a truth of mean
    # -0.015 ppm)
    shift = truth[finite].mean() - recon_ppm[finite].mean() if finite.any() else 0.0
    recon = np.where(finite, recon_ppm + shift, 0.0).astype(np.float64)
    metrics, _ = score_arrays(recon, truth, mask.astype(np.uint8), kind="chi",
                              seg=np.asarray(seg, np.int16))
    recon_ref = recon - recon[mask].mean()
    truth_ref = truth - truth[mask].mean()
    errors = {}
    for name, label in QSMCI_NUCLEI.items():
        region = mask & (seg == label)
        if region.any():
            errors[name] = float(recon_ref[region].mean() - truth_ref[region].mean())
    return PeerScore(float(metrics["nrmse"]), float(metrics["hfen"]), float(metrics["xsim"]),
                     float(metrics["coverage"]), errors)


def field_error_by_edge_distance(field_ppm: np.ndarray, truth_ppm: np.ndarray,
                                 mask: np.ndarray, voxel_size: Sequence[float],
                                 bands_mm: Sequence[float] = (2, 4, 6, 8, 12, 20, np.inf)
                                 ) -> list[tuple[str, float, float, int]]:
    """Error of a field map (ppm) against the truth in bands of distance to the mask edge.

    Both fields are demeaned over the voxels deeper than 12 mm (the field is only known
    up to a constant there is no reason to fit at the edge).

    Returns
    -------
    list of (band label, mean error ppm, RMS error ppm, voxels)
    """
    import scipy.ndimage as ndi

    mask = np.asarray(mask, bool)
    depth = ndi.distance_transform_edt(np.pad(mask, 1), sampling=voxel_size)[1:-1, 1:-1, 1:-1]
    deep = mask & (depth > 12)
    reference = deep if deep.sum() > 100 else mask
    error = (field_ppm - field_ppm[reference].mean()) - (truth_ppm - truth_ppm[reference].mean())
    rows, low = [], 0.0
    for high in bands_mm:
        band = mask & (depth > low) & (depth <= high)
        label = f"{low:g}-{high:g} mm" if np.isfinite(high) else f">{low:g} mm"
        if band.any():
            values = error[band]
            rows.append((label, float(values.mean()), float(np.sqrt(np.mean(values**2))),
                         int(band.sum())))
        low = high
    return rows


@dataclass(frozen=True)
class MapSpread:
    """Truth-free summary of a map on real data.

    Attributes
    ----------
    mask_ml
        Brain-mask volume, ml.
    iqr_ppm, p01_ppm, p99_ppm
        Interquartile range and 1st/99th percentiles of chi in the mask, ppm.
    """

    mask_ml: float
    iqr_ppm: float
    p01_ppm: float
    p99_ppm: float


def map_spread(chi_ppm: np.ndarray, mask: np.ndarray, voxel_size: Sequence[float]) -> MapSpread:
    """Mask volume and the spread of chi (ppm) inside it."""
    mask = np.asarray(mask, bool)
    values = np.asarray(chi_ppm, np.float64)[mask]
    p01, p25, p75, p99 = np.percentile(values, [1, 25, 75, 99])
    return MapSpread(float(mask.sum() * np.prod(voxel_size) / 1000), float(p75 - p25),
                     float(p01), float(p99))


#: the in-vivo order of the regional means, group by group: every region of a group
#: lies above every region of the next (pallidum, nigra and red nucleus above putamen
#: and caudate, above thalamus, above white matter)
NUCLEI_ORDER: tuple[tuple[str, ...], ...] = (
    ("GlobusPallidus", "SubstantiaNigra", "RedNucleus"),
    ("Putamen", "Caudate"),
    ("Thalamus",),
    ("WhiteMatter",),
)


def nuclei_order_holds(means_ppm: Mapping[str, float]) -> tuple[bool, str]:
    """Check the in-vivo order of bilateral regional means (ppm, whole-brain referenced).

    Parameters
    ----------
    means_ppm
        Region (bilateral name, and the ``WhiteMatter`` reference) -> mean, ppm. Without
        ``WhiteMatter``, the whole-brain mean (0 ppm, which white matter lies below)
        stands in for it.

    Returns
    -------
    holds, description
        Whether every region of each group of :data:`NUCLEI_ORDER` lies above every
        region of the next; the description lists the means.
    """
    means = dict(means_ppm)
    means.setdefault("WhiteMatter", 0.0)
    groups = [[(name, means[name]) for name in group if name in means]
              for group in NUCLEI_ORDER]
    holds = all(groups) and all(min(v for _, v in upper) > max(v for _, v in lower)
                                for upper, lower in itertools.pairwise(groups))
    text = " > ".join(" ".join(f"{n[:2]} {v:+.3f}" for n, v in g) for g in groups)
    return bool(holds), text
