"""Cohort QC figures (PNG, matplotlib's Agg canvas): :func:`plot_region_distributions`
(box + strip per region, outliers and flagged runs marked), :func:`plot_values_vs_age`
(scatter with a linear fit) and :func:`plot_thumbnail_montage` (one thumbnail per run).
Susceptibility in ppm, ages in years."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from qsmbids.report.figures import _new_figure, _save, region_colour


@dataclass(frozen=True)
class CohortValues:
    """One region's values across runs, for the cohort plots.

    Attributes
    ----------
    region
        Region name.
    values
        One value per run (e.g. mean susceptibility, ppm).
    ids
        Label of each value (e.g. ``sub-01`` or ``sub-01 ses-1``).
    outlier
        True where the value is flagged (robust z-score).
    ages
        Age of each participant in years (NaN where unknown), or ``None``.
    qc_flagged
        True where the run has QC warnings (drawn differently, left out of fits), or
        ``None``.
    """

    region: str
    values: np.ndarray
    ids: tuple[str, ...]
    outlier: np.ndarray
    ages: np.ndarray | None = None
    qc_flagged: np.ndarray | None = None

    @property
    def trusted(self) -> np.ndarray:
        """Values neither outliers nor from runs with QC warnings."""
        flagged = self.outlier if self.qc_flagged is None else self.outlier | self.qc_flagged
        return ~flagged


def _light_figure(width_in: float, height_in: float) -> Figure:
    fig = Figure(figsize=(width_in, height_in), dpi=100, facecolor="white")
    FigureCanvasAgg(fig)
    return fig


def _scatter_cohort(ax, x: np.ndarray, entry: CohortValues, *, annotate: bool) -> None:
    """Points of one region: normal (region colour), QC-flagged runs (orange triangles),
    outliers (red crosses, with their id when ``annotate``)."""
    qc = entry.qc_flagged if entry.qc_flagged is not None else np.zeros_like(entry.outlier)
    normal = entry.trusted
    ax.scatter(x[normal], entry.values[normal], s=16, color=region_colour(entry.region),
               edgecolors="black", linewidths=0.3, zorder=3)
    ax.scatter(x[qc & ~entry.outlier], entry.values[qc & ~entry.outlier], s=30,
               facecolors="none", edgecolors="#e67700", marker="^", zorder=4)
    ax.scatter(x[entry.outlier], entry.values[entry.outlier], s=40, color="red", marker="X",
               zorder=5)
    if annotate:
        for xi, yi, name in zip(x[entry.outlier], entry.values[entry.outlier],
                                np.asarray(entry.ids)[entry.outlier], strict=True):
            ax.annotate(name, (xi, yi), textcoords="offset points", xytext=(4, 3),
                        fontsize=7, color="red")


_COHORT_KEY = ("red ✕: outlier (robust |z| above the limit); orange △: run with QC "
               "warnings")


def plot_region_distributions(cohort: Sequence[CohortValues], path: str | os.PathLike, *,
                              ylabel: str = "mean susceptibility (ppm)",
                              title: str = "Regional values across participants") -> Path:
    """Box plot plus jittered points per region; outliers in red with their id.

    Parameters
    ----------
    cohort
        One entry per region, in display order.
    path
        PNG file to write.
    ylabel, title
        Axis label (with units) and title.
    """
    fig = _light_figure(max(6.0, 0.75 * len(cohort) + 1.5), 4.8)
    ax = fig.add_axes((0.09, 0.27, 0.89, 0.62))
    data = [c.values[np.isfinite(c.values)] for c in cohort]
    ax.boxplot(data, positions=np.arange(len(cohort)), widths=0.55, showfliers=False,
               medianprops={"color": "black"}, boxprops={"color": "#555555"})
    rng = np.random.default_rng(0)
    for pos, entry in enumerate(cohort):
        _scatter_cohort(ax, pos + rng.uniform(-0.18, 0.18, size=entry.values.size), entry,
                        annotate=True)
    ax.set_xticks(np.arange(len(cohort)), [c.region for c in cohort], rotation=45, ha="right")
    ax.set_ylabel(ylabel)
    ax.set_title(f"{title}\n{_COHORT_KEY}", fontsize=9)
    ax.axhline(0.0, color="#bbbbbb", linewidth=0.6, zorder=0)
    ax.grid(axis="y", color="#eeeeee")
    return _save(fig, path)


def linear_fit(x: np.ndarray, y: np.ndarray) -> tuple[float, float] | None:
    """Least-squares line ``y = slope x + intercept`` over finite pairs (None if < 3)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 3 or np.ptp(x[ok]) == 0:
        return None
    slope, intercept = np.polyfit(x[ok], y[ok], 1)
    return float(slope), float(intercept)


def plot_values_vs_age(cohort: Sequence[CohortValues], path: str | os.PathLike, *,
                       ylabel: str = "ppm", n_cols: int = 4) -> Path:
    """One small scatter plot per region against age, with a least-squares line fitted
    to the trusted values (outliers and runs with QC warnings left out).

    Parameters
    ----------
    cohort
        One entry per region; entries without ages are skipped.
    path
        PNG file to write.
    ylabel
        Units of the values.
    n_cols
        Plots per row.
    """
    entries = [c for c in cohort if c.ages is not None and np.isfinite(c.ages).any()]
    if not entries:
        raise ValueError("no region has values with a known age")
    n_rows = -(-len(entries) // n_cols)
    fig = _light_figure(3.1 * n_cols, 2.6 * n_rows + 0.7)
    grid = fig.add_gridspec(n_rows, n_cols, left=0.06, right=0.99, bottom=0.06,
                            top=1 - 1.0 / fig.get_figheight(), hspace=0.6, wspace=0.3)
    for k, entry in enumerate(entries):
        ax = fig.add_subplot(grid[k // n_cols, k % n_cols])
        _scatter_cohort(ax, entry.ages, entry, annotate=False)
        keep = entry.trusted
        fit = linear_fit(entry.ages[keep], entry.values[keep])
        note = "too few points for a fit"
        if fit is not None:
            ages = entry.ages[keep & np.isfinite(entry.ages)]
            xs = np.array([ages.min(), ages.max()])
            ax.plot(xs, fit[0] * xs + fit[1], color="black", linewidth=1)
            note = f"slope {1000 * fit[0]:+.2f} ppb/year"
        ax.set_title(f"{entry.region}\n{note}", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.set_xlabel("age (years)", fontsize=7)
        ax.set_ylabel(ylabel, fontsize=7)
        ax.grid(color="#eeeeee")
    fig.suptitle("Regional values against age (line: least-squares fit without flagged "
                 f"points)\n{_COHORT_KEY}", fontsize=9, y=1 - 0.1 / fig.get_figheight(),
                 va="top")
    return _save(fig, path)


def plot_thumbnail_montage(thumbnails: Sequence[tuple[str, np.ndarray]],
                           path: str | os.PathLike, *, title: str, n_cols: int = 6) -> Path:
    """Grid of same-sized RGB thumbnails with a caption each (e.g. one participant's
    basal ganglia per cell, ordered by age).

    Parameters
    ----------
    thumbnails
        (caption, RGB(A) image array) pairs in display order.
    path
        PNG file to write.
    title
        Figure title.
    n_cols
        Thumbnails per row.
    """
    if not thumbnails:
        raise ValueError("no thumbnails to show")
    n_cols = min(n_cols, len(thumbnails))
    n_rows = -(-len(thumbnails) // n_cols)
    width = max(2.2 * n_cols, 4.0)
    margin = (1.0 - 2.2 * n_cols / width) / 2.0  # centre few thumbnails in a wider figure
    fig = _new_figure(width, 2.35 * n_rows + 0.6)
    grid = fig.add_gridspec(n_rows, n_cols, left=margin + 0.005, right=1.0 - margin - 0.005,
                            bottom=0.005, top=1 - 0.6 / fig.get_figheight(), hspace=0.12,
                            wspace=0.02)
    for k, (caption, image) in enumerate(thumbnails):
        ax = fig.add_subplot(grid[k // n_cols, k % n_cols])
        ax.imshow(image, interpolation="lanczos")
        ax.set_axis_off()
        ax.set_title(caption, color="white", fontsize=8, pad=2)
    fig.suptitle(title, color="white", fontsize=10, y=1 - 0.06 / fig.get_figheight(),
                 va="top")
    return _save(fig, path)
