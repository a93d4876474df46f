"""The cohort report's venous section: the OEF of every run, its distribution and age.

Reads ``OUTPUT_DIR/group_veins.tsv`` (written by the group level from the runs'
``*_desc-veins_stats.tsv``) and returns HTML for :mod:`qsmbids.report.group`: a figure
of the OEF per run (box and points; against age when ``participants.tsv`` has ages)
and the runs whose OEF is missing or outside the plausible range, by name.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from qsmbids.report import html as hp
from qsmbids.report.qc_thresholds import DEFAULT_THRESHOLDS, QCThresholds


def venous_section(table: str | os.PathLike | None, png_uri, *,
                   thresholds: QCThresholds = DEFAULT_THRESHOLDS) -> list[str]:
    """HTML of the venous section (empty when there is no venous table).

    Parameters
    ----------
    table
        ``group_veins.tsv`` (None or missing: no section).
    png_uri
        Turns a plotting function ``f(path) -> path`` into a PNG data URI.
    thresholds
        Gives the plausible OEF range (``min_venous_oef``, ``max_venous_oef``).
    """
    if table is None or not Path(table).is_file():
        return []
    frame = pd.read_csv(table, sep="\t", na_values=["n/a"])
    if frame.empty or "oef" not in frame.columns:
        return []
    ids = _run_ids(frame)
    oef = pd.to_numeric(frame["oef"], errors="coerce").to_numpy(float)
    ages = (pd.to_numeric(frame["age"], errors="coerce").to_numpy(float)
            if "age" in frame.columns else np.full(len(frame), np.nan))
    low, high = thresholds.min_venous_oef, thresholds.max_venous_oef
    measured = np.isfinite(oef)
    odd = measured & ((oef < low) | (oef > high))
    body = ['<h2 id="veins">Oxygen extraction (veins)</h2>',
            f"<p>{int(measured.sum())} of {len(frame)} run(s) with a venous OEF; median "
            f"{np.nanmedian(oef) if measured.any() else float('nan'):.3f}.</p>"]
    if measured.any():
        body.append(hp.figure(
            png_uri(lambda p: plot_oef(oef, ages, p, odd=odd, plausible=(low, high))),
            "OEF per run",
            "Oxygen extraction fraction of each run from the susceptibility of its large "
            "veins (OEF = venous chi / (3.39 ppm x haematocrit)): box and points, and "
            "against age where participants.tsv gives ages. Red crosses lie outside the "
            f"plausible {low:g}-{high:g}; the grey band is the healthy adult range "
            "0.3-0.4.", light=True))
    notes = [f"{run}: OEF {value:.2f} outside {low:g}-{high:g}"
             for run, value in zip(np.asarray(ids)[odd], oef[odd], strict=True)]
    reasons = (frame["note"].fillna("") if "note" in frame.columns
               else pd.Series([""] * len(frame)))
    notes += [f"{run}: no OEF ({reason or 'no vein measured'})"
              for run, reason in zip(np.asarray(ids)[~measured], reasons[~measured],
                                     strict=True)]
    body.append(hp.warning_list(notes, none_text="Every run has a plausible OEF.",
                                heading="Runs to check"))
    return body


def _run_ids(frame: pd.DataFrame) -> list[str]:
    parts = [c for c in ("participant_id", "session_id", "acq", "rec", "run")
             if c in frame.columns]
    ids = []
    for _, row in frame[parts].iterrows():
        pieces = [str(row[c]) if c in ("participant_id", "session_id") else f"{c}-{row[c]}"
                  for c in parts if pd.notna(row[c])]
        ids.append("_".join(pieces))
    return ids


def plot_oef(oef: np.ndarray, ages: np.ndarray, path: str | os.PathLike, *,
             odd: np.ndarray, plausible: tuple[float, float]) -> Path:
    """OEF per run: a box with points, and the OEF against age when ages exist.

    Parameters
    ----------
    oef, ages
        Per run (NaN where missing), fraction and years.
    path
        PNG to write.
    odd
        Runs outside the plausible range (drawn as red crosses).
    plausible
        The plausible range (dotted lines).
    """
    with_age = np.isfinite(ages) & np.isfinite(oef)
    fig = Figure(figsize=(9.5 if with_age.any() else 4.5, 3.6), dpi=100, facecolor="white")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2 if with_age.any() else 1, squeeze=False)[0]
    ok = np.isfinite(oef)
    size = 16.0 if ok.sum() <= 100 else max(3.0, 16.0 * np.sqrt(100.0 / ok.sum()))
    jitter = np.random.default_rng(0).uniform(-0.12, 0.12, len(oef))
    ax = axes[0]
    ax.boxplot(oef[ok], positions=[0], widths=0.4, showfliers=False)
    ax.scatter(jitter[ok & ~odd], oef[ok & ~odd], s=size, alpha=0.7, color="#1864ab")
    ax.scatter(jitter[odd], oef[odd], s=40, color="red", marker="X")
    ax.set_xticks([])
    ax.set_ylabel("OEF")
    ax.set_title("OEF per run")
    if with_age.any():
        ax = axes[1]
        ax.scatter(ages[with_age & ~odd], oef[with_age & ~odd], s=size, alpha=0.7,
                   color="#1864ab")
        ax.scatter(ages[with_age & odd], oef[with_age & odd], s=40, color="red", marker="X")
        ax.set_xlabel("age (years)")
        ax.set_title("OEF against age")
    for ax in axes:
        ax.axhspan(0.3, 0.4, color="0.85", zorder=0)
        for level in plausible:
            ax.axhline(level, color="0.5", linestyle=":", linewidth=1)
    fig.tight_layout()
    fig.savefig(path)
    return Path(path)
