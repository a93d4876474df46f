"""Static QC figures (PNG) made with matplotlib's Agg canvas: headless, no network.

Volumes are 3-D arrays in (close to) RAS+ voxel order — x towards the subject's right,
y anterior, z superior — as :func:`nibabel.as_closest_canonical` gives; voxel sizes in
mm. Slices are shown in neurological convention (subject's left on the left of the
picture) and every panel says so with ``L``/``R`` (or ``A``/``P``) marks.

Participant figures: :func:`plot_mosaic` (axial/coronal/sagittal slices with optional
mask outline, label outlines and edges of another image, e.g. the registered template)
and :func:`plot_region_zoom` (the QSM around the basal ganglia, SN/RN or dentate,
centred on the label centroid), and the thumbnails of the cohort montage
(:func:`write_thumbnail`). The cohort figures are in :mod:`qsmbids.report.cohort_figures`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize, to_rgb
from matplotlib.figure import Figure
from matplotlib.image import imsave
from matplotlib.lines import Line2D
from scipy import ndimage
from skimage.feature import canny

from qsmbids.atlas.regions import bilateral_name
from qsmbids.atomic import atomic_write

#: fixed display window of susceptibility maps, ppm
QSM_WINDOW_PPM: tuple[float, float] = (-0.15, 0.25)

VIEWS: tuple[str, ...] = ("axial", "coronal", "sagittal")
_VIEW_AXIS = {"sagittal": 0, "coronal": 1, "axial": 2}
#: (horizontal axis, vertical axis, marks at the left and right end) of each view
_VIEW_LAYOUT = {"axial": (0, 1, ("L", "R")), "coronal": (0, 2, ("L", "R")),
                "sagittal": (1, 2, ("P", "A"))}

#: one colour per (bilateral) region family; left and right share it
REGION_COLOURS: dict[str, str] = {
    "Caudate": "#1f77ff", "Putamen": "#ff7f0e", "GlobusPallidus": "#2ca02c",
    "Thalamus": "#d62728", "SubstantiaNigra": "#e377c2", "RedNucleus": "#ffdd00",
    "Dentate": "#17becf",
}
_FALLBACK_COLOURS = ("#9467bd", "#8c564b", "#bcbd22", "#7f7f7f", "#aec7e8", "#98df8a")

MASK_COLOUR = "#ff3b30"
EDGE_COLOUR = "#00e5ff"


@dataclass(frozen=True)
class Overlays:
    """What to draw over a grey-scale volume; arrays on the same grid as the volume.

    Attributes
    ----------
    mask
        Boolean mask drawn as an outline (``MASK_COLOUR``).
    labels
        Integer label image; each label in ``label_names`` is outlined in its colour.
    label_names
        Label number -> region name (the colour comes from the name's family).
    edges_of
        Image whose edges (Canny, per slice) are drawn (``EDGE_COLOUR``), e.g. the
        template registered to the subject.
    """

    mask: np.ndarray | None = None
    labels: np.ndarray | None = None
    label_names: Mapping[int, str] | None = None
    edges_of: np.ndarray | None = None


def region_colour(name: str) -> str:
    """Colour of a region: its family's colour (``Caudate_L`` -> ``Caudate``)."""
    base = bilateral_name(name)
    if base in REGION_COLOURS:
        return REGION_COLOURS[base]
    return _FALLBACK_COLOURS[sum(map(ord, base)) % len(_FALLBACK_COLOURS)]


def _new_figure(width_in: float, height_in: float) -> Figure:
    fig = Figure(figsize=(width_in, height_in), dpi=100, facecolor="black")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: str | os.PathLike) -> Path:
    """Write ``fig`` to ``path`` atomically, in the format its suffix names (PNG, SVG)."""
    fmt = Path(path).suffix.lstrip(".").lower() or "png"
    # zlib level 3: a third of the default's encoding time for files ~10% larger
    options = {"pil_kwargs": {"compress_level": 3}} if fmt == "png" else {}
    return atomic_write(path, lambda tmp: fig.savefig(tmp, facecolor=fig.get_facecolor(),
                                                      format=fmt, **options))


def _check_volume(volume: np.ndarray, voxel_size: Sequence[float]) -> np.ndarray:
    volume = np.asarray(volume)
    if volume.ndim != 3:
        raise ValueError(f"expected a 3-D volume (x, y, z), got shape {volume.shape}")
    if len(voxel_size) != 3 or min(voxel_size) <= 0:
        raise ValueError(f"voxel_size must be three positive lengths in mm, got {voxel_size}")
    return volume


def _slice(volume: np.ndarray, view: str, index: int) -> np.ndarray:
    """2-D slice arranged (vertical, horizontal) for ``imshow(origin='lower')``."""
    axis = _VIEW_AXIS[view]
    taken = volume[(slice(None),) * axis + (index,)]  # a view, no copy
    h_axis, v_axis, _ = _VIEW_LAYOUT[view]
    # the remaining axes keep their order; horizontal is the lower-numbered one
    return taken.T if h_axis < v_axis else taken


def _cut(slice2d: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """Rows ``v0:v1``, columns ``h0:h1`` of a slice, zero-padded where the box leaves it."""
    h0, h1, v0, v1 = box
    rows, cols = slice2d.shape
    out = np.zeros((v1 - v0, h1 - h0), dtype=slice2d.dtype)
    src = slice2d[max(v0, 0):min(v1, rows), max(h0, 0):min(h1, cols)]
    out[max(-v0, 0):max(-v0, 0) + src.shape[0], max(-h0, 0):max(-h0, 0) + src.shape[1]] = src
    return out


def _outline_pixels(binary: np.ndarray, width: int) -> np.ndarray:
    """Inner boundary (``width`` pixels thick) of a binary image."""
    if not binary.any():
        return binary
    return binary & ~ndimage.binary_erosion(binary, iterations=width, border_value=1)


def _render_panel(volume: np.ndarray, voxel_size: Sequence[float], view: str, index: int,
                  box: tuple[int, int, int, int], px_per_mm: float,
                  window: tuple[float, float], cmap: str, overlays: Overlays,
                  blank: np.ndarray | None, line_px: int) -> np.ndarray:
    """RGB image (rows top to bottom) of one slice, resampled to square pixels."""
    h_axis, v_axis, _ = _VIEW_LAYOUT[view]
    factors = (voxel_size[v_axis] * px_per_mm, voxel_size[h_axis] * px_per_mm)

    def up(array: np.ndarray, order: int = 1) -> np.ndarray:
        cut = np.nan_to_num(_cut(_slice(array, view, index), box).astype(np.float32))
        return ndimage.zoom(cut, factors, order=order, grid_mode=True, mode="grid-constant")

    norm = np.clip((up(volume) - window[0]) / (window[1] - window[0]), 0.0, 1.0)
    rgb = colormaps[cmap](norm)[..., :3]
    if blank is not None:
        rgb[up(blank) < 0.5] = 0.0
    if overlays.edges_of is not None:
        edges_image = up(overlays.edges_of)
        span = float(edges_image.max() - edges_image.min())
        if span > 0:
            scale = float(np.mean(factors))
            edges = canny((edges_image - edges_image.min()) / span, sigma=1.0 * scale,
                          low_threshold=0.08 / scale, high_threshold=0.16 / scale)
            rgb[edges] = to_rgb(EDGE_COLOUR)
    if overlays.mask is not None:
        rgb[_outline_pixels(up(overlays.mask > 0) > 0.5, line_px)] = to_rgb(MASK_COLOUR)
    if overlays.labels is not None and overlays.label_names:
        labels2d = _cut(_slice(overlays.labels, view, index), box)
        for value in np.unique(labels2d):
            name = overlays.label_names.get(int(value))
            if name is None:
                continue
            region = ndimage.zoom((labels2d == value).astype(np.float32), factors, order=1,
                                  grid_mode=True, mode="grid-constant") > 0.5
            rgb[_outline_pixels(region, line_px)] = to_rgb(region_colour(name))
    return rgb[::-1]


@dataclass(frozen=True)
class _Panel:
    rgb: np.ndarray
    marks: tuple[str, str]
    tag: str


def _compose(rows: Sequence[Sequence[_Panel]], gap: int = 4) -> tuple[np.ndarray, list]:
    """Paste panels row by row on a black canvas; return it and each panel's origin."""
    heights = [max(p.rgb.shape[0] for p in row) for row in rows]
    widths = [sum(p.rgb.shape[1] for p in row) + gap * (len(row) - 1) for row in rows]
    canvas = np.zeros((sum(heights) + gap * (len(rows) - 1), max(widths), 3), np.float32)
    placed = []
    top = 0
    for row, height in zip(rows, heights, strict=True):
        left = 0
        for panel in row:
            h, w = panel.rgb.shape[:2]
            canvas[top:top + h, left:left + w] = panel.rgb
            placed.append((panel, left, top, w, h))
            left += w + gap
        top += height + gap
    return canvas, placed


def _mosaic_figure(rows: Sequence[Sequence[_Panel]], path: str | os.PathLike, *, title: str,
                   window: tuple[float, float], units: str, cmap: str,
                   legend: Sequence[tuple[str, str]]) -> Path:
    """Lay the composed panels out at one figure pixel per image pixel; add the colour
    bar, the title (with the window) and the legend; write the PNG."""
    canvas, placed = _compose(rows)
    height, width = canvas.shape[:2]
    top_px, right_px, bottom_px = (58 if legend else 36), 92, 6
    fig = _new_figure((width + right_px) / 100.0, (height + top_px + bottom_px) / 100.0)
    fig_w, fig_h = width + right_px, height + top_px + bottom_px
    ax = fig.add_axes((0.0, bottom_px / fig_h, width / fig_w, height / fig_h))
    ax.imshow(canvas, interpolation="nearest", aspect="auto")
    ax.set_axis_off()
    text = {"color": "white", "fontsize": 7}
    for panel, left, top, w, h in placed:
        ax.text(left + 3, top + h - 3, panel.marks[0], ha="left", va="bottom", **text)
        ax.text(left + w - 3, top + h - 3, panel.marks[1], ha="right", va="bottom", **text)
        ax.text(left + 3, top + 3, panel.tag, ha="left", va="top", color="#bbbbbb", fontsize=6)
    cax = fig.add_axes(((width + 14) / fig_w, bottom_px / fig_h + 0.02, 14 / fig_w,
                        height / fig_h - 0.04))
    bar = fig.colorbar(ScalarMappable(Normalize(*window), colormaps[cmap]), cax=cax)
    bar.set_label(units, color="white", fontsize=8)
    bar.ax.tick_params(colors="white", labelsize=7)
    fig.text(0.01, 1 - 8 / fig_h, f"{title} — window {window[0]:.3g} to {window[1]:.3g} {units}",
             color="white", fontsize=10, va="top", ha="left")
    _colour_legend(fig, legend, top=1 - 30 / fig_h)
    return _save(fig, path)


def _colour_legend(fig: Figure, legend: Sequence[tuple[str, str]], top: float) -> None:
    """One-line legend of coloured lines under the title (dark figures)."""
    if not legend:
        return
    handles = [Line2D([], [], color=colour, linewidth=2) for _, colour in legend]
    fig.legend(handles, [label for label, _ in legend], loc="upper left",
               bbox_to_anchor=(0.0, top), ncol=len(legend), frameon=False, fontsize=8,
               labelcolor="white", handlelength=1.5, columnspacing=1.2, borderpad=0.2)


def _bounding_box(extent_mask: np.ndarray, view: str, margin_vox: int
                  ) -> tuple[int, int, int, int]:
    """(h0, h1, v0, v1) of the mask's projection in a view's slice coordinates."""
    h_axis, v_axis, _ = _VIEW_LAYOUT[view]
    box = []
    for axis in (h_axis, v_axis):
        where = np.flatnonzero(extent_mask.any(axis=tuple(a for a in range(3) if a != axis)))
        lo, hi = ((int(where[0]), int(where[-1]) + 1) if where.size
                  else (0, extent_mask.shape[axis]))
        box += [max(lo - margin_vox, 0), min(hi + margin_vox, extent_mask.shape[axis])]
    return tuple(box)


def choose_slices(extent_mask: np.ndarray, axis: int, n: int, margin: float = 0.12
                  ) -> list[int]:
    """``n`` evenly spaced slice indices along ``axis`` through the mask's extent.

    Parameters
    ----------
    extent_mask
        Boolean array (x, y, z) of the voxels worth showing (e.g. the brain mask).
    axis
        0 sagittal, 1 coronal, 2 axial.
    n
        Number of slices.
    margin
        Fraction of the extent skipped at each end (the first/last slices of a brain
        show little).
    """
    profile = np.asarray(extent_mask).any(axis=tuple(a for a in range(3) if a != axis))
    where = np.flatnonzero(profile)
    if where.size == 0:
        lo, hi = 0, extent_mask.shape[axis] - 1
    else:
        lo, hi = int(where[0]), int(where[-1])
    span = hi - lo
    positions = lo + span * (margin + (1 - 2 * margin) * (np.arange(n) + 0.5) / n)
    return sorted({int(p) for p in np.rint(positions)})


def robust_window(volume: np.ndarray, mask: np.ndarray | None = None, *, symmetric: bool,
                  percentile: float = 99.0) -> tuple[float, float]:
    """Display window from the voxels in ``mask``: (-p, p) of |values| or (0, p).

    Parameters
    ----------
    volume
        Image values.
    mask
        Voxels to take the percentile over (default: finite non-zero voxels).
    symmetric
        True for signed maps (fields), False for non-negative ones (magnitude, R2*).
    percentile
        Percentile of the (absolute) values used as the window limit.
    """
    values = np.asarray(volume)[mask > 0] if mask is not None else np.asarray(volume).ravel()
    values = values[::max(1, values.size // 500_000)]  # a window needs no exact percentile
    values = values[np.isfinite(values) & (values != 0)]
    if values.size == 0:
        return (-1.0, 1.0) if symmetric else (0.0, 1.0)
    top = float(np.percentile(np.abs(values) if symmetric else values, percentile))
    top = top if top > 0 else 1.0
    return (-top, top) if symmetric else (0.0, top)


def plot_mosaic(
    volume: np.ndarray,
    voxel_size: Sequence[float],
    path: str | os.PathLike,
    *,
    title: str,
    window: tuple[float, float],
    units: str,
    cmap: str = "gray",
    overlays: Overlays = Overlays(),
    extent_mask: np.ndarray | None = None,
    blank_outside: bool = False,
    n_cols: int = 6,
    views: Sequence[str] = VIEWS,
    legend: Sequence[tuple[str, str]] = (),
    panel_px: int = 170,
) -> Path:
    """Write a mosaic: one row of slices per view, a colour bar, the window stated.

    Slices are resampled to square pixels (linear interpolation; outlines from the
    resampled masks), cropped to the extent of ``extent_mask`` and composed into one
    image, so a figure costs a fraction of a second.

    Parameters
    ----------
    volume
        3-D image (RAS+ voxel order).
    voxel_size
        Voxel edge lengths, mm.
    path
        PNG file to write (folders are created).
    title
        Figure title (the window and units are appended).
    window
        (low, high) display limits in ``units``.
    units
        Units of the values (``"ppm"``, ``"1/s"``, ``"a.u."``).
    cmap
        Matplotlib colour map.
    overlays
        Outlines/edges to draw.
    extent_mask
        Voxels that decide where the slices go and the crop (default: the overlay
        mask, else finite non-zero voxels).
    blank_outside
        Show voxels outside ``extent_mask`` black (e.g. a QSM outside the brain).
    n_cols
        Slices per view.
    views
        Any of ``"axial"``, ``"coronal"``, ``"sagittal"``.
    legend
        (label, colour) pairs listed under the title, e.g. ``[("mask", MASK_COLOUR)]``.
    panel_px
        Size in pixels of the largest side of the crop.

    Returns
    -------
    Path
        ``path``.
    """
    volume = _check_volume(volume, voxel_size)
    for name in views:
        if name not in _VIEW_AXIS:
            raise ValueError(f"unknown view {name!r}; use {VIEWS}")
    if extent_mask is None:
        extent_mask = (overlays.mask > 0 if overlays.mask is not None
                       else np.isfinite(volume) & (volume != 0))
    extent_mask = np.asarray(extent_mask, dtype=bool)
    margin = int(np.ceil(6.0 / min(voxel_size)))
    boxes = {view: _bounding_box(extent_mask, view, margin) for view in views}
    largest_mm = max(max((b[1] - b[0]) * voxel_size[_VIEW_LAYOUT[v][0]],
                         (b[3] - b[2]) * voxel_size[_VIEW_LAYOUT[v][1]])
                     for v, b in boxes.items())
    px_per_mm = panel_px / largest_mm
    rows = []
    for view in views:
        marks = _VIEW_LAYOUT[view][2]
        rows.append([
            _Panel(_render_panel(volume, voxel_size, view, index, boxes[view], px_per_mm,
                                 window, cmap, overlays,
                                 extent_mask if blank_outside else None, 1),
                   marks, f"{view} {index}")
            for index in choose_slices(extent_mask, _VIEW_AXIS[view], n_cols)])
    return _mosaic_figure(rows, path, title=title, window=window, units=units, cmap=cmap,
                          legend=legend)


def label_centroid(labels: np.ndarray, values: Sequence[int]) -> tuple[int, int, int] | None:
    """Voxel index (x, y, z) of the centroid of the voxels carrying any of ``values``."""
    selected = np.isin(np.asarray(labels), np.asarray(list(values)))
    if not selected.any():
        return None
    return tuple(int(np.rint(index.mean())) for index in np.nonzero(selected))


def plot_region_zoom(
    volume: np.ndarray,
    voxel_size: Sequence[float],
    labels: np.ndarray,
    label_names: Mapping[int, str],
    centre: tuple[int, int, int],
    path: str | os.PathLike,
    *,
    title: str,
    half_width_mm: float,
    window: tuple[float, float] = QSM_WINDOW_PPM,
    units: str = "ppm",
    slice_step_mm: float = 4.0,
    panel_px: int = 210,
) -> Path:
    """Zoomed views around ``centre``: three axial slices and one coronal, plain (top
    row) and with the region outlines (bottom row).

    Parameters
    ----------
    volume
        Image to show (typically the QSM, ppm), RAS+ voxel order.
    voxel_size
        Voxel edge lengths, mm.
    labels
        Atlas labels in the same grid.
    label_names
        Label number -> region name of the labels to outline (and list in the legend).
    centre
        Voxel index (x, y, z) the views are centred on (e.g. :func:`label_centroid`).
    path
        PNG file to write.
    title
        Figure title.
    half_width_mm
        Half the side of the square field of view, mm.
    window
        Display limits (default: the fixed QSM window).
    units
        Units of the values.
    slice_step_mm
        Distance between the axial slices, mm.
    panel_px
        Side of each panel in pixels.
    """
    volume = _check_volume(volume, voxel_size)
    overlays = Overlays(labels=labels, label_names=label_names)
    step = max(1, int(np.rint(slice_step_mm / voxel_size[2])))
    panels = [("axial", int(np.clip(centre[2] + k * step, 0, volume.shape[2] - 1)))
              for k in (-1, 0, 1)]
    panels.append(("coronal", int(centre[1])))
    px_per_mm = panel_px / (2.0 * half_width_mm)
    plain, outlined = [], []
    for view, index in panels:
        h_axis, v_axis, marks = _VIEW_LAYOUT[view]
        half_h = int(np.ceil(half_width_mm / voxel_size[h_axis]))
        half_v = int(np.ceil(half_width_mm / voxel_size[v_axis]))
        box = (centre[h_axis] - half_h, centre[h_axis] + half_h + 1,
               centre[v_axis] - half_v, centre[v_axis] + half_v + 1)
        for row, drawn in ((plain, Overlays()), (outlined, overlays)):
            rgb = _render_panel(volume, voxel_size, view, index, box, px_per_mm, window,
                                "gray", drawn, None, 2)
            row.append(_Panel(rgb, marks, f"{view} {index}"))
    families: dict[str, str] = {}
    for value in np.unique(np.asarray(labels)):
        name = label_names.get(int(value))
        if name is not None:
            families.setdefault(bilateral_name(name), region_colour(name))
    return _mosaic_figure([plain, outlined], path, title=title, window=window, units=units,
                          cmap="gray", legend=list(families.items()))


def write_thumbnail(volume: np.ndarray, voxel_size: Sequence[float], centre: Sequence[int],
                    path: str | os.PathLike, *, half_width_mm: float,
                    window: tuple[float, float] = QSM_WINDOW_PPM, panel_px: int = 200) -> Path:
    """A bare axial slice through ``centre`` (no outlines or text), for cohort montages.

    Parameters
    ----------
    volume
        Image (RAS+ voxel order), e.g. the QSM in ppm.
    voxel_size
        Voxel edge lengths, mm.
    centre
        Voxel index (x, y, z) of the slice centre.
    path
        PNG file to write.
    half_width_mm
        Half the side of the square field of view, mm.
    window
        Display limits (default: the fixed QSM window).
    panel_px
        Side of the image in pixels.
    """
    volume = _check_volume(volume, voxel_size)
    half_h = int(np.ceil(half_width_mm / voxel_size[0]))
    half_v = int(np.ceil(half_width_mm / voxel_size[1]))
    box = (centre[0] - half_h, centre[0] + half_h + 1, centre[1] - half_v, centre[1] + half_v + 1)
    rgb = _render_panel(volume, voxel_size, "axial",
                        int(centre[2]), box, panel_px / (2.0 * half_width_mm), window, "gray",
                        Overlays(), None, 1)
    return atomic_write(path, lambda tmp: imsave(tmp, np.clip(rgb, 0, 1), format="png"))
