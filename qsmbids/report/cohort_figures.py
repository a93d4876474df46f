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

from qsmbids.atomic import atomic_write
from qsmbids.report.figures import _save, region_colour


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
    size, alpha = _marker_for(int(normal.sum()))
    ax.scatter(x[normal], entry.values[normal], s=size, alpha=alpha,
               color=region_colour(entry.region), edgecolors="black",
               linewidths=0.3 if size >= 8 else 0.0, zorder=3)
    ax.scatter(x[qc & ~entry.outlier], entry.values[qc & ~entry.outlier], s=30,
               facecolors="none", edgecolors="#e67700", marker="^", zorder=4)
    ax.scatter(x[entry.outlier], entry.values[entry.outlier], s=40, color="red", marker="X",
               zorder=5)
    if annotate:
        for xi, yi, name in zip(x[entry.outlier], entry.values[entry.outlier],
                                np.asarray(entry.ids)[entry.outlier], strict=True):
            ax.annotate(name, (xi, yi), textcoords="offset points", xytext=(4, 3),
                        fontsize=7, color="red")


def _marker_for(n_points: int) -> tuple[float, float]:
    """Marker area (pt^2) and opacity for ``n_points`` points in one column or panel:
    full markers up to 100 runs, then smaller and translucent so that a cohort of a
    thousand shows its density instead of a solid blot."""
    if n_points <= 100:
        return 16.0, 1.0
    return max(3.0, 16.0 * np.sqrt(100.0 / n_points)), max(0.35, np.sqrt(100.0 / n_points))


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


#: at most this many thumbnails get their caption drawn on them; more are numbered
MAX_CAPTIONED_TILES = 36


def plot_thumbnail_montage(thumbnails: Sequence[tuple[str, np.ndarray]],
                           path: str | os.PathLike, *, title: str,
                           flagged: Sequence[bool] | None = None,
                           n_cols: int | None = None) -> Path:
    """Grid of same-sized RGB thumbnails (e.g. one participant's basal ganglia per
    cell, ordered by age), composed into one PNG.

    Up to :data:`MAX_CAPTIONED_TILES` thumbnails carry their caption; a larger cohort
    (hundreds of runs) gets each tile's number in display order instead, so that the
    page stays one readable picture (the caller lists the numbers' captions). The
    tiles are pasted into one array and lettered with Pillow, so a thousand runs cost
    about a second and the size of the picture in memory.

    Parameters
    ----------
    thumbnails
        (caption, RGB(A) image array, uint8 or floats in 0..1) pairs in display order,
        all of one size.
    path
        PNG file to write.
    title
        Figure title.
    flagged
        Per thumbnail, True to frame it in red (e.g. runs with QC warnings).
    n_cols
        Thumbnails per row (default: 6 for captioned tiles, else about 1.6 times as
        many columns as rows).
    """
    from PIL import Image, ImageDraw, ImageFont

    if not thumbnails:
        raise ValueError("no thumbnails to show")
    tiles = [_rgb_uint8(image) for _, image in thumbnails]
    height, width = tiles[0].shape[:2]
    if any(tile.shape[:2] != (height, width) for tile in tiles):
        raise ValueError("the thumbnails differ in size")
    n = len(tiles)
    captioned = n <= MAX_CAPTIONED_TILES
    if n_cols is None:
        n_cols = 6 if captioned else int(np.ceil(np.sqrt(1.6 * n)))
    n_cols = min(n_cols, n)
    n_rows = -(-n // n_cols)
    gap = max(2, width // 25)
    label_px = 18 if captioned else 0  # a band above each tile for its caption
    cell_h, cell_w = height + gap + label_px, width + gap
    canvas_width = max(n_cols * cell_w + gap, 400)
    title_px = max(44, canvas_width // 60)
    canvas = np.zeros((title_px + n_rows * cell_h + gap, canvas_width, 3), np.uint8)
    frame = max(2, width // 40)
    corners = []
    for k, tile in enumerate(tiles):
        top = title_px + (k // n_cols) * cell_h + gap + label_px
        left = (k % n_cols) * cell_w + gap
        canvas[top:top + height, left:left + width] = tile
        if flagged is not None and flagged[k]:
            box = canvas[top:top + height, left:left + width]
            for edge in (box[:frame], box[-frame:], box[:, :frame], box[:, -frame:]):
                edge[...] = (220, 40, 40)
        corners.append((top, left))
    image = Image.fromarray(canvas)
    draw = ImageDraw.Draw(image)
    title_font = ImageFont.load_default(size=max(14, canvas_width // 110))
    for line, text in enumerate(title.splitlines()[:2]):
        draw.text((canvas_width / 2, 6 + title_px // 2.5 * line), text, fill="white",
                  anchor="ma", font=title_font)
    font = ImageFont.load_default(size=11 if captioned else max(8, min(12, width // 7)))
    for k, (top, left) in enumerate(corners):
        if captioned:
            draw.text((left + width / 2, top - label_px / 2), thumbnails[k][0], fill="white",
                      anchor="mm", font=font)
        else:
            label = str(k + 1)
            right, bottom = draw.textbbox((left + 2, top + 2), label, font=font)[2:]
            draw.rectangle((left, top, right + 2, bottom + 2), fill=(0, 0, 0))
            draw.text((left + 2, top + 2), label, fill="white", font=font)
    return atomic_write(path, lambda tmp: image.save(tmp, format="PNG", compress_level=3))


def _rgb_uint8(image: np.ndarray) -> np.ndarray:
    """An RGB(A) image (uint8, or floats in 0..1) as uint8 RGB."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise ValueError(f"a thumbnail must be an RGB(A) image, got shape {image.shape}")
    if image.dtype != np.uint8:
        image = np.clip(np.round(image * 255.0), 0, 255).astype(np.uint8)
    return image[..., :3]
