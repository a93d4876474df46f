"""``antsRegistration`` command lines from a preset's schedule (no images, no I/O).

The stages follow the antsRegistrationSyN recipe: centre-of-mass initialisation,
Rigid then Affine with Mattes mutual information (32 bins, every voxel or the preset's
regular sampling),
then SyN with the chosen metric, each over its own multi-resolution levels. With
``--collapse-output-transforms`` ANTs writes one affine (``<prefix>0GenericAffine.mat``)
and one displacement field pair (``<prefix>1Warp.nii.gz``, ``<prefix>1InverseWarp.nii.gz``).
"""

from __future__ import annotations

from collections.abc import Sequence

#: Winsorize intensities to these quantiles before registering (as antsRegistrationSyN)
WINSORIZE = (0.005, 0.995)
#: SyN update-field and total-field smoothing (variances, voxels^2); the gradient step
#: comes from the preset's schedule
SYN_SMOOTHING = (3.0, 0.0)
LINEAR_STEP = 0.1


def _levels(shrink: Sequence[int], smooth: Sequence[float], iterations: Sequence[int],
            convergence: float) -> list[str]:
    if not len(shrink) == len(smooth) == len(iterations):
        raise ValueError("shrink factors, smoothing sigmas and iterations need one value "
                         f"per level, got {shrink}, {smooth}, {iterations}")
    return ["--convergence", f"[{'x'.join(str(int(i)) for i in iterations)},{convergence:g},10]",
            "--shrink-factors", "x".join(str(int(f)) for f in shrink),
            "--smoothing-sigmas", "x".join(f"{s:g}" for s in smooth) + "vox"]


def mattes(fixed: str, moving: str, *, sampling: float | None = None) -> str:
    """Mattes mutual information term (32 bins).

    ``sampling``: fraction of the voxels on a jittered regular grid (ANTs ``Regular``;
    the jitter follows the random seed), or ``None`` for every voxel (no randomness).
    """
    if sampling is None:
        return f"MI[{fixed},{moving},1,32]"
    if not 0 < sampling <= 1:
        raise ValueError(f"MI sampling fraction must lie in (0, 1], got {sampling}")
    return f"MI[{fixed},{moving},1,32,Regular,{sampling:g}]"


def linear_stage(kind: str, fixed: str, moving: str, shrink: Sequence[int],
                 smooth: Sequence[float], iterations: Sequence[int], *,
                 sampling: float | None = None) -> list[str]:
    """One ``Rigid`` or ``Affine`` stage with Mattes MI (``sampling``: :func:`mattes`)."""
    if kind not in ("Rigid", "Affine"):
        raise ValueError(f"linear stage must be Rigid or Affine, got {kind!r}")
    return ["--metric", mattes(fixed, moving, sampling=sampling),
            "--transform", f"{kind}[{LINEAR_STEP:g}]",
            *_levels(shrink, smooth, iterations, 1e-6)]


def similarity_term(metric: str, fixed: str, moving: str, *, weight: float = 1.0,
                    cc_radius: int = 1) -> str:
    """One ANTs metric term: ``"CC"`` (radius ``cc_radius``) or ``"mattes"`` (dense MI)."""
    if metric == "CC":
        return f"CC[{fixed},{moving},{weight:g},{int(cc_radius)}]"
    if metric == "mattes":
        return f"MI[{fixed},{moving},{weight:g},32]"
    raise ValueError(f"SyN metric must be 'CC' or 'mattes', got {metric!r}")


def syn_stage(metric: str, fixed: str, moving: str, shrink: Sequence[int],
              smooth: Sequence[float], iterations: Sequence[int], *, convergence: float,
              cc_radius: int, step: float = 0.1, also: Sequence[str] = (),
              field_smoothing: tuple[float, float] = SYN_SMOOTHING) -> list[str]:
    """The SyN stage with ``metric`` ``"CC"`` (radius ``cc_radius``) or ``"mattes"`` (dense).

    ``step`` is SyN's gradient step (``SyN[step,3,0]``; 0.1 in antsRegistrationSyN).
    ``also``: further metric terms (:func:`similarity_term`) of other image pairs that
    the same deformation must match (a multi-channel SyN; ANTs weighs each term).
    ``field_smoothing``: variances (voxels^2) of the Gaussian smoothing of the update
    field and of the total field (``SyN[step,update,total]``).
    """
    if not step > 0:
        raise ValueError(f"SyN gradient step must be positive, got {step}")
    terms = [similarity_term(metric, fixed, moving, cc_radius=cc_radius), *also]
    flow, total = field_smoothing
    return [*(arg for term in terms for arg in ("--metric", term)),
            "--transform", f"SyN[{step:g},{flow:g},{total:g}]",
            *_levels(shrink, smooth, iterations, convergence)]


def registration_command(fixed: str, moving: str, out_prefix: str, stages: list[list[str]], *,
                         fixed_mask: str | None = None, seed: int | None = None,
                         warped: str | None = None, centre_of_mass: bool = True
                         ) -> list[str]:
    """The whole ``antsRegistration`` argument list (float precision, collapsed outputs).

    Parameters
    ----------
    fixed, moving
        NIfTI paths; the moving image is brought onto the fixed one.
    out_prefix
        Prefix of the transform files.
    stages
        Stage argument lists (:func:`linear_stage`, :func:`syn_stage`), in order.
    fixed_mask
        Metric mask on the fixed grid (NIfTI path).
    seed
        ANTs' random seed (sampling); ``None`` leaves it random.
    warped
        Where to write the moving image resampled onto the fixed grid (optional).
    centre_of_mass
        Start from the transform that aligns the centres of mass (False: from the
        identity, for images already brought close, as in a refinement).
    """
    args = ["--dimensionality", "3", "--float", "1", "--collapse-output-transforms", "1",
            "--use-histogram-matching", "0", "--verbose", "0",
            "--winsorize-image-intensities", f"[{WINSORIZE[0]:g},{WINSORIZE[1]:g}]"]
    if centre_of_mass:
        args += ["--initial-moving-transform", f"[{fixed},{moving},1]"]
    for stage in stages:
        args += stage
    if fixed_mask:
        args += ["--masks", fixed_mask]
    if seed is not None:
        args += ["--random-seed", str(int(seed))]
    output = f"[{out_prefix},{warped}]" if warped else f"[{out_prefix}]"
    return [*args, "--output", output]
