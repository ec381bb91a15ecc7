"""Rate–distortion plots: each submission's curve (rd.csv, its own colour and marker shape), the
points chosen at the targets (rows.csv, large outlined markers; hollow in a second mode), the
targets (dotted lines) and, where known, published reference curves.

Drawn with the Agg canvas directly (no pyplot, no global backend switch), so it is safe in
headless jobs and worker processes.
"""

from __future__ import annotations

import io
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from .leaderboard import Run, estimated_points, msssim_to_db, rule_order, rules

log = logging.getLogger(__name__)

# Published curves drawn per dataset: (file stem in REFERENCE_DIR/<folder>, label).
REFERENCE_CURVES: dict[str, tuple[str, list[tuple[str, str]]]] = {
    "kodak": ("kodak", [
        ("jpeg", "JPEG"),
        ("av1", "AV1"),
        ("bpg_444_x265_ycbcr", "BPG 4:4:4"),
        ("compressai-bmshj2018-hyperprior_mse_cpu", "bmshj2018 MSE"),
        ("compressai-bmshj2018-hyperprior_ms-ssim_cpu", "bmshj2018 MS-SSIM"),
        ("compressai-mbt2018-mean_ms-ssim_cpu", "mbt2018-mean MS-SSIM"),
    ]),
}
METRICS = {
    "msssim_db": ("MS-SSIM dB = −10·log10(1 − MS-SSIM)", "MS-SSIM"),
    "psnr": ("PSNR (dB, RGB, pooled)", "PSNR"),
}
_REF_STYLES = [  # (colour, dashes, marker): grey-ish, thin, told apart by dash and marker
    ("#7f7f7f", (5, 2), "s"), ("#a0a0a0", (2, 2), "^"), ("#5f6b7a", (6, 2, 1, 2), "D"),
    ("#8c7b6b", (4, 1.5), "v"), ("#6b8c7b", (1, 1.5), "o"), ("#8a7a9a", (7, 2, 2, 2), "P"),
]


@dataclass
class RefCurve:
    label: str
    bpp: np.ndarray
    psnr: np.ndarray
    msssim_db: np.ndarray


def load_references(reference_dir: Path | None, dataset: str) -> tuple[list[RefCurve], list[str]]:
    """The published curves for ``dataset`` (none when unknown or the folder is absent), and notes."""
    notes: list[str] = []
    if reference_dir is None or dataset not in REFERENCE_CURVES:
        return [], notes
    sub, wanted = REFERENCE_CURVES[dataset]
    folder = Path(reference_dir) / sub
    if not folder.is_dir():
        notes.append(f"reference curves not found ({folder}); plotted without them")
        return [], notes
    curves = []
    for stem, label in wanted:
        try:
            res = json.loads((folder / f"{stem}.json").read_text(encoding="utf-8"))["results"]
            bpp = np.asarray(res["bpp"], dtype=float)
            psnr = np.asarray(res.get("psnr-rgb", res.get("psnr", [np.nan] * len(bpp))), dtype=float)
            ms = np.asarray(res.get("ms-ssim-rgb", res.get("ms-ssim", [np.nan] * len(bpp))), dtype=float)
            if not (len(bpp) == len(psnr) == len(ms)):
                raise ValueError("series of different lengths")
        except (OSError, KeyError, TypeError, ValueError) as e:
            notes.append(f"reference {stem}: unreadable ({type(e).__name__}); left out")
            continue
        order = np.argsort(bpp)
        curves.append(RefCurve(label, bpp[order], psnr[order], msssim_to_db(ms)[order]))
    return curves, notes


PUBLISHED = " (pub.)"
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "p", "h", "<", ">", "d"]
PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#17becf", "#e377c2", "#8c564b", "#bcbd22",
           "#393b79", "#637939", "#843c39"]


def _clip_series(x: np.ndarray, y: np.ndarray, xmax: float, xmin: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Finite points in [xmin, xmax] plus the nearest one beyond each edge (the line then leaves the frame)."""
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    order = np.argsort(x, kind="stable")
    x, y = x[order], y[order]
    beyond = np.nonzero(x > xmax)[0]
    stop = beyond[0] + 1 if len(beyond) else len(x)
    before = np.nonzero(x < xmin)[0]
    start = before[-1] if len(before) else 0
    return x[start:stop], y[start:stop]


def submission_styles(names: list[str]) -> dict[str, tuple[str, str]]:
    """(colour, marker) per submission, by sorted name: told apart by shape as well as colour."""
    return {n: (PALETTE[i % len(PALETTE)], MARKERS[i % len(MARKERS)]) for i, n in enumerate(sorted(names))}


@dataclass
class Series:
    """One thing drawn on an RD axis: a curve (line + markers) or selected points (stars)."""

    x: np.ndarray
    y: np.ndarray
    label: str | None
    style: dict
    clip: bool = True        # curves are cut at the frame's edge; selected points never are


def draw_rd(ax, series: list[Series], targets: list[float], xmax: float, ylabel: str, xmin: float = 0.0) -> None:
    """The one RD drawing: series clipped to [xmin, xmax], dotted target lines, a y range fitted
    to what is visible, grid and labels. Used by the leaderboard plots and the regression gate."""
    visible: list[float] = []
    for s in series:
        x, y = _clip_series(s.x, s.y, xmax, xmin) if s.clip else (s.x, s.y)
        fin = np.isfinite(x) & np.isfinite(y)
        x, y = x[fin], y[fin]
        if not len(x):
            continue
        visible.extend(float(v) for v, u in zip(y, x) if xmin <= u <= xmax)
        ax.plot(x, y, label=s.label, **s.style)
    last = -np.inf
    for t in sorted(targets):
        ax.axvline(t, color="0.3", ls=":", lw=1.0, zorder=1)
        if xmin <= t <= xmax and t - last >= 0.08 * (xmax - xmin):   # labels that would collide are left out
            ax.text(t, 1.005, f"{t:g}", transform=ax.get_xaxis_transform(), ha="center", va="bottom",
                    fontsize=8, color="0.3")
            last = t
    ax.set_xlim(xmin, xmax)
    if visible:
        lo, hi = min(visible), max(visible)
        pad = max((hi - lo) * 0.06, 0.4)
        ax.set_ylim(lo - pad, hi + pad)
    else:
        ax.text(0.5, 0.5, "no RD data", transform=ax.transAxes, ha="center", va="center", color="0.5")
    ax.set_xlabel("bits per pixel (bpp)")
    ax.set_ylabel(ylabel)
    ax.grid(True, color="0.88", lw=0.7)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def frame_xmax(targets: list[float]) -> float:
    """The full plots' bpp range: 0–1, or a little past the largest target when that is higher."""
    return 1.0 if not targets or max(targets) <= 0.9 else max(targets) * 1.15


def fitted_xlim(runs: list[Run], targets: list[float]) -> tuple[float, float]:
    """The rate range around the targets: a little past the largest one, and from just left of
    the cheapest evaluated point or target below that (so the curves fill the width)."""
    if not targets:
        return 0.0, frame_xmax(targets)
    hi = 1.2 * max(targets)
    xs = [min(targets)]
    for run in runs:
        for df in (run.rd, run.rows):
            if df is not None and "bpp" in df.columns:
                xs += [float(v) for v in df["bpp"].dropna() if 0 < v <= hi]
    lo = min(xs)
    return max(0.0, lo - 0.1 * (hi - lo)), hi


def _reference_series(references: list[RefCurve], metric: str) -> list[Series]:
    out = []
    for i, ref in enumerate(references):
        colour, dashes, marker = _REF_STYLES[i % len(_REF_STYLES)]
        out.append(Series(ref.bpp, getattr(ref, metric), f"{ref.label}{PUBLISHED}",
                          dict(color=colour, lw=1.0, dashes=dashes, marker=marker, ms=3.5, mfc="none", mew=0.8,
                               alpha=0.9, zorder=2)))
    return out


def _ok_rows(runs: list[Run]) -> pd.DataFrame:
    frames = [r.rows[r.rows["status"].eq("ok")] for r in runs]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _chosen_series(run: Run, metric: str, style: tuple[str, str], primary: str, label: str | None) -> list[Series]:
    """The points chosen at the targets: filled under the primary rule (CLIC mode, MS-SSIM), hollow
    under any other."""
    rows = run.rows
    if metric not in rows.columns or "bpp" not in rows.columns:
        return []
    ok = rows[rows["status"].eq("ok")]
    is_primary = rules(ok).eq(primary)
    (colour, marker), out = style, []
    for first in (True, False):
        part = ok[is_primary == first]
        if len(part):
            look = dict(mfc=colour, mec="black", mew=0.9, zorder=6) if first else \
                dict(mfc="white", mec=colour, mew=1.8, zorder=5)
            out.append(Series(part["bpp"].to_numpy(float), part[metric].to_numpy(float), label,
                              dict(ls="none", marker=marker, ms=11, color=colour, **look), clip=False))
            label = None
    return out


def _run_series(runs: list[Run], references: list[RefCurve], metric: str, primary: str) -> list[Series]:
    series = _reference_series(references, metric)
    styles = submission_styles([r.name for r in runs])
    for run in runs:
        (c, m), drew = styles[run.name], False
        if run.rd is not None and metric in run.rd.columns and not run.rd.empty:
            x, y = run.rd["bpp"].to_numpy(float), run.rd[metric].to_numpy(float)
            drew = bool((np.isfinite(x) & np.isfinite(y)).any())
            est = estimated_points(run.rd) > 0   # a --probe estimate sweep: dashed, and said so
            series.append(Series(x, y, f"{run.name} (sweep: estimated bytes)" if est else run.name,
                                 dict(color=c, lw=1.7, marker=m, ms=5.5, zorder=4, ls="--" if est else "-")))
        series += _chosen_series(run, metric, (c, m), primary, None if drew else run.name)
    return series


def _legend(ax, chosen: pd.DataFrame, primary: str, targets: list[float]) -> None:
    """Below the axes, in two columns: readable when the page shrinks the plot to a phone's width."""
    pairs = sorted(zip(*ax.get_legend_handles_labels()), key=lambda p: p[1].endswith(PUBLISHED))  # submissions first
    handles, labels = [h for h, _ in pairs], [label for _, label in pairs]
    others = sorted(set(rules(chosen)) - {primary})
    if len(chosen):
        handles.append(Line2D([], [], ls="none", marker="o", ms=10, color="0.6", mec="black", mew=0.9))
        labels.append("chosen at target" + (f", {primary}" if others else ""))
    if others:
        handles.append(Line2D([], [], ls="none", marker="o", ms=10, color="0.5", mfc="white", mew=1.8))
        labels.append(f"chosen, {', '.join(others)}")
    if targets:
        handles.append(Line2D([], [], color="0.3", ls=":", lw=1.0))
        labels.append("target bpp")
    if handles:
        ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(-0.14, -0.14), ncol=2, fontsize=10.5,
                  frameon=False, borderaxespad=0.0, handlelength=2.4, columnspacing=1.2)


def _save_png(fig: Figure, out: Path) -> Path:
    """Written through a temporary file; 128 colours keep the page light at no visible cost."""
    from PIL import Image

    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight", facecolor="white")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp.png")
    with Image.open(buf) as im:
        im.convert("RGB").quantize(colors=128, method=Image.Quantize.FASTOCTREE).save(tmp, format="PNG", optimize=True)
    tmp.replace(out)
    return out


def plot_rd(runs: list[Run], metric: str, out: Path, dataset: str, references: list[RefCurve] = (),
            targets: list[float] | None = None, xlim: tuple[float, float] | None = None) -> Path:
    """One RD plot (``metric`` is ``msssim_db`` or ``psnr``) written as PNG to ``out``; ``xlim``
    is the rate range (default: 0 to :func:`frame_xmax`). Sized to be read at a phone's width."""
    ylabel, short = METRICS[metric]
    if targets is None:
        targets = sorted({float(t) for r in runs for t in r.rows["target_bpp"].dropna()})
    lo, hi = xlim if xlim is not None else (0.0, frame_xmax(targets))
    fig = Figure(figsize=(5.2, 3.7), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    chosen = _ok_rows(runs)
    primary = (rule_order(chosen) or [""])[0]
    draw_rd(ax, _run_series(runs, references, metric, primary), targets, hi, ylabel, xmin=lo)
    ax.set_title(f"{dataset} — {short}, {lo:.2g}–{hi:.2g} bpp", fontsize=11.5, pad=14, loc="left")
    ax.tick_params(labelsize=10.5)
    ax.xaxis.label.set_size(11)
    ax.yaxis.label.set_size(11)
    _legend(ax, chosen, primary, targets)
    return _save_png(fig, out)


__all__ = ["REFERENCE_CURVES", "RefCurve", "Series", "draw_rd", "fitted_xlim", "frame_xmax", "load_references",
           "plot_rd", "submission_styles"]
