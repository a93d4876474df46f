"""The susceptibility template repainted with the subject's own values.

The painted template (:mod:`qsmbids.atlas.chi_template`) gives each atlas label a
literature susceptibility. A subject's nuclei differ from those values (iron rises
with age, by tens of percent in the putamen, nigra and red nucleus), and local
cross-correlation, though blind to offset and scale, is not blind to the *relative*
contrast of neighbouring structures: when the subject's nigra is brighter against its
surroundings than the template's, the refinement widens the template's nigra to match
the blurred edge, and the warped labels grow over their neighbours. Measured on
qsm-forward subjects painted from the atlas (``benchmarks/bench_nuclei_registration.py``,
70-year-old, 1 mm): the labels of the nigra, red nucleus and putamen came out 6-9 %
too large, and the mean of the true map under the nigra's labels was 0.008 ppm low.
Painting the template with the subject's true regional values removed the bias (nigra
volume within 2 % of the truth, every nucleus within 0.003 ppm); painting it with the
values read from the reconstruction as below, with the refinement's smoother field
(:data:`qsmbids.registration.refine.FIELD_SMOOTHING_MM2`), brought every nucleus of four
benchmark subjects within 0.0041 ppm at 1 mm.

So before the refinement the template is repainted with values read from the subject's
own map: each atlas label is brought onto the subject through the anatomical
registration, and its value is the median of the map over the label's interior (its
voxels whose six neighbours carry the same label, inside the brain mask), which the
anatomical registration's misplacement of a few millimetres leaves little biased.
Labels with fewer than :data:`MIN_VOXELS` voxels in the brain keep their literature
value, shifted by the median offset between the subject's values and the literature's
(the map's reference differs from the literature's).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import nibabel as nib
import numpy as np

from qsmbids.atlas import chi_template
from qsmbids.atlas.model import Atlas
from qsmbids.recon.masking import grown_bounding_box

#: fewest interior voxels (on the subject's grid) a label's value is read from
MIN_VOXELS = 10


@dataclass(frozen=True)
class SubjectTemplate:
    """Result of :func:`subject_susceptibility_template`.

    Attributes
    ----------
    image
        The repainted template (ppm, template grid), smoothed as the literature one.
    label_ppm
        The value each label was painted with, ppm (on the map's reference).
    measured
        Labels whose value was read from the subject's map (the others: literature
        value plus the offset).
    offset_ppm
        Median of (subject value - literature value) over the measured labels.
    """

    image: nib.Nifti1Image
    label_ppm: dict[int, float]
    measured: tuple[int, ...]
    offset_ppm: float

    def region_values(self, regions: Mapping[str, tuple[int, ...]]) -> dict[str, float]:
        """Mean painted value per region (ppm), for sidecars and reports."""
        return {name: float(np.mean([self.label_ppm[label] for label in labels]))
                for name, labels in regions.items()
                if labels and all(label in self.label_ppm for label in labels)}


def interior_medians(chi: np.ndarray, brain: np.ndarray, labels: np.ndarray,
                     min_voxels: int = MIN_VOXELS) -> dict[int, float]:
    """Median of ``chi`` over the interior of each label, inside ``brain``.

    The interior of a label is its voxels whose six face neighbours carry the same
    label (a voxel on the image's edge is not interior); a label with fewer than
    ``min_voxels`` interior voxels (a small nucleus on a coarse grid) is read over all
    its voxels instead. Computed on the bounding box of the labelled brain.

    Parameters
    ----------
    chi
        Susceptibility map, ppm (x, y, z).
    brain
        Brain mask, same grid.
    labels
        Integer labels, same grid (0: none).
    min_voxels
        Labels with fewer voxels in the brain get no value.

    Returns
    -------
    dict
        Label -> median, ppm.
    """
    labels, chi = np.asarray(labels), np.asarray(chi)
    inside = np.asarray(brain, bool) & (labels > 0) & np.isfinite(chi)
    box = grown_bounding_box(inside, 1)  # a head's labelled brain is a part of the image
    if box is None:
        return {}
    labels, chi, inside = labels[box].astype(np.int64), chi[box].astype(np.float64), inside[box]
    interior = inside.copy()
    padded = np.pad(labels, 1)  # beyond the image: no label, so an edge voxel is not interior
    for axis in range(3):
        for shift in (1, -1):
            interior &= labels == np.roll(padded, shift, axis=axis)[1:-1, 1:-1, 1:-1]
    values = _medians_by_label(labels[interior], chi[interior], min_voxels)
    rest = inside & ~np.isin(labels, list(values))  # too small for an interior
    values.update(_medians_by_label(labels[rest], chi[rest], min_voxels))
    return values


def _medians_by_label(labels: np.ndarray, values: np.ndarray,
                      min_voxels: int) -> dict[int, float]:
    """Median of ``values`` per label of ``labels`` (1-D, same length), for labels with
    at least ``min_voxels`` values: one sort by (label, value) instead of one
    selection per label (``scipy.ndimage.median`` took 1 s per call on a 1 mm head)."""
    order = np.lexsort((values, labels))
    labels, values = labels[order], values[order]
    present, starts, counts = np.unique(labels, return_index=True, return_counts=True)
    keep = counts >= min_voxels
    present, starts, counts = present[keep], starts[keep], counts[keep]
    lower = values[starts + (counts - 1) // 2]
    upper = values[starts + counts // 2]
    return {int(label): float(m) for label, m in zip(present, (lower + upper) / 2,
                                                     strict=True)}


def subject_susceptibility_template(atlas: Atlas, chi, mask, chain, *,
                                    n_threads: int | None = None,
                                    labels_on_subject=None) -> SubjectTemplate:
    """The atlas's susceptibility template painted with the subject's values.

    Parameters
    ----------
    atlas
        The atlas (labels, regions and references name the literature values).
    chi, mask
        The subject's susceptibility map (ppm) and brain mask: nibabel images or paths.
    chain
        Template -> subject :class:`qsmbids.registration.core.TransformChain` (the
        anatomical registration).
    n_threads
        ITK threads of the label warp.
    labels_on_subject
        The atlas labels already brought onto the map's grid through ``chain``
        (nibabel image or path; the anatomical registration's ``dseg``), read instead
        of warping them again (1.3 s at 1 mm).

    Returns
    -------
    SubjectTemplate
    """
    from qsmbids.registration.antsio import load_nifti
    from qsmbids.registration.core import warp_labels_to_subject

    chi_img, mask_img = load_nifti(chi), load_nifti(mask)
    if labels_on_subject is not None:
        warped = load_nifti(labels_on_subject)
        if warped.shape[:3] != chi_img.shape[:3]:
            raise ValueError(f"labels on the subject {warped.shape} are not on the map's "
                             f"grid {chi_img.shape}")
    else:
        # nearest neighbour: four times faster than genericLabel on a 1 mm head (0.8 s
        # against 4.4 s), and the interiors the values are read from are the same
        warped = warp_labels_to_subject(atlas.labels, chi_img, chain,
                                        interpolation="nearestNeighbor", n_threads=n_threads)
    measured = interior_medians(np.asarray(chi_img.dataobj, np.float32),
                                np.asarray(mask_img.dataobj) > 0,
                                np.asarray(warped.dataobj))
    literature = chi_template.label_susceptibility(atlas.label_names, atlas.regions,
                                                   atlas.references)
    measured = {label: value for label, value in measured.items() if label in literature}
    offset = (float(np.median([measured[k] - literature[k] for k in measured]))
              if measured else 0.0)
    label_ppm = {label: measured.get(label, value + offset)
                 for label, value in literature.items()}
    labels_img = nib.load(str(atlas.labels))
    painted = chi_template.paint_susceptibility(np.asarray(labels_img.dataobj), label_ppm,
                                                labels_img.header.get_zooms()[:3])
    return SubjectTemplate(nib.Nifti1Image(painted, labels_img.affine), label_ppm,
                           tuple(sorted(measured)), offset)
