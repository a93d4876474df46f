"""The phantom's own template space and atlas, written like a real atlas folder.

The template is the unwarped head phantom (:func:`qsmbids.sim.phantom.make_head_phantom`)
at a reference age, skull-stripped, with a T1-weighted-like contrast (white matter
bright, grey matter and nuclei darker, CSF dark; the iron-rich pallidum, thalamus,
nigra and red nucleus a little brighter than the striatum, as on T1w). Its labels are
the phantom's, so the atlas ``Regions`` map each default region to its own phantom
label and subjects simulated from the same phantom have exactly known regions.

The folder follows the shared atlas layout (:mod:`qsmbids.atlas.model`), so the
registration and regional-statistics code use it like any real atlas.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Literal

import nibabel as nib
import numpy as np
import scipy.ndimage as ndi

from qsmbids import __version__
from qsmbids.atlas.model import TEMPLATE_CONTRASTS, Atlas, write_atlas
from qsmbids.atlas.regions import phantom_references, phantom_regions
from qsmbids.sim.phantom import EDGE_SIGMA_VOXELS, HeadPhantom, make_head_phantom
from qsmbids.sim.subject import AcquisitionSpec
from qsmbids.sim.tissues import BRAIN_LABELS, LABEL_NAMES

#: template space and atlas name of the phantom
PHANTOM_SPACE = "qsmbidsPhantom"
PHANTOM_ATLAS = "qsmbidsPhantom"
#: age of the template phantom, years
TEMPLATE_AGE = 40.0

#: T1w-like intensity per tissue (white matter = 1)
T1W_INTENSITY: dict[str, float] = {
    "WhiteMatter": 1.0, "GreyMatter": 0.62, "CSF": 0.15, "Vein": 0.45,
    "Calcification": 0.3, "Microbleed": 0.5,
    "Caudate": 0.66, "Putamen": 0.68, "GlobusPallidus": 0.82, "Thalamus": 0.8,
    "SubstantiaNigra": 0.74, "RedNucleus": 0.76, "Dentate": 0.72,
}


def t1w_like(phantom: HeadPhantom) -> np.ndarray:
    """Skull-stripped T1w-like image of ``phantom`` (float32, white matter = 1).

    Tissue intensities (:data:`T1W_INTENSITY`) with the phantom's soft edges
    (Gaussian, ``EDGE_SIGMA_VOXELS``), zero outside the brain mask.
    """
    lut = np.zeros(max(LABEL_NAMES) + 1, np.float32)
    for label, name in LABEL_NAMES.items():
        base = name.rsplit("_", 1)[0] if label < 20 else name
        lut[label] = T1W_INTENSITY.get(base, 0.0)
    image = lut[np.where(phantom.brain_mask, phantom.labels, 0)]
    return ndi.gaussian_filter(image, EDGE_SIGMA_VOXELS).astype(np.float32) * phantom.brain_mask


def phantom_label_names() -> dict[int, str]:
    """Labels of the phantom atlas: the default regions and the brain tissues."""
    return {label: LABEL_NAMES[label] for label in BRAIN_LABELS}


#: echo times of the magnitude template, s (those of the simulator's default acquisition)
TEMPLATE_ECHO_TIMES_S: tuple[float, ...] = AcquisitionSpec().echo_times_s


def magnitude_like(phantom: HeadPhantom,
                   echo_times_s: float | Sequence[float] = TEMPLATE_ECHO_TIMES_S) -> np.ndarray:
    """Skull-stripped GRE-magnitude-like image at 3 T, in the brain.

    Parameters
    ----------
    phantom
        The head phantom.
    echo_times_s
        One echo time or several, s. Several give the root-sum-of-squares over echoes
        of ``M0 exp(-R2* TE)``: the contrast of the registration target
        (:func:`qsmbids.registration.combine_echoes`), where the iron-rich pallidum,
        nigra and red nucleus are dark. A single short echo is nearly flat across the
        deep grey matter (pallidum within 5% of white matter at 4 ms).

    Returns
    -------
    numpy.ndarray
        float32 (x, y, z), zero outside the brain mask.
    """
    tes = np.atleast_1d(np.asarray(echo_times_s, dtype=np.float32))
    if tes.size == 0 or np.any(tes < 0):
        raise ValueError(f"echo times must be >= 0 s, got {echo_times_s}")
    power = np.zeros(phantom.m0.shape, np.float32)
    for te in tes:
        power += (phantom.m0 * np.exp(-phantom.r2star * te)) ** 2
    image = np.sqrt(power)
    return (image * phantom.brain_mask).astype(np.float32)


def write_phantom_atlas(atlas_dir: str | os.PathLike, voxel_size_mm: float = 1.0, *,
                        age_years: float = TEMPLATE_AGE,
                        contrast: Literal["T1w", "magnitude"] = "T1w",
                        echo_times_s: float | Sequence[float] = TEMPLATE_ECHO_TIMES_S
                        ) -> Atlas:
    """Write the phantom template and atlas in the shared atlas-folder layout.

    Parameters
    ----------
    atlas_dir
        Output folder (created): ``atlas.json``, ``tpl-qsmbidsPhantom_desc-brain_T1w``,
        ``..._desc-brain_mask``, ``..._atlas-qsmbidsPhantom_dseg`` (.nii.gz) and ``.tsv``.
    voxel_size_mm
        Template voxel size, mm (1 mm like MNI152; 2 mm for quick demos).
    age_years
        Age of the template phantom.
    contrast
        Template contrast: ``T1w`` (:func:`t1w_like`) or ``magnitude`` (echo-combined
        GRE magnitude, :func:`magnitude_like`, the contrast of the registration target
        of GRE-only runs). The file keeps the layout's ``desc-brain_T1w`` name either way.
    echo_times_s
        Echo time(s) of the magnitude contrast, s.

    Returns
    -------
    qsmbids.atlas.model.Atlas
        The validated atlas.
    """
    if contrast not in TEMPLATE_CONTRASTS:
        raise ValueError(f"contrast must be one of {TEMPLATE_CONTRASTS}, got {contrast!r}")
    phantom = make_head_phantom(voxel_size_mm, age_years=age_years, calcification=False)
    image = t1w_like(phantom) if contrast == "T1w" else magnitude_like(phantom, echo_times_s)
    labels = np.where(phantom.brain_mask & np.isin(phantom.labels, BRAIN_LABELS),
                      phantom.labels, 0).astype(np.int16)
    affine = phantom.affine
    return write_atlas(
        atlas_dir, name=PHANTOM_ATLAS, space=PHANTOM_SPACE,
        template=nib.Nifti1Image(image, affine),
        labels=nib.Nifti1Image(labels, affine),
        template_mask=nib.Nifti1Image(phantom.brain_mask.astype(np.uint8), affine),
        label_names=phantom_label_names(), regions=phantom_regions(),
        references=phantom_references(),
        license="CC0 (synthetic)",
        citation=[f"qsmbids {__version__} digital head phantom (qsmbids.sim.phantom)"],
        extra={"TemplateAgeYears": age_years, "VoxelSizeMM": voxel_size_mm,
               "TemplateContrast": contrast,
               **({"TemplateEchoTimes": [float(t) for t in np.atleast_1d(echo_times_s)]}
                  if contrast == "magnitude" else {}),
               "Description": "Template and labels of the qsmbids digital head phantom: "
                              "subjects simulated by 'qsmbids simulate' are warped copies"},
    )

