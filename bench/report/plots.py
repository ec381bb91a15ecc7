"""Rate–distortion plots: each submission's curve (rd.csv), its selected target points
(rows.csv, stars), the targets (dotted lines) and, where known, published reference curves.

Drawn with the Agg canvas directly (no pyplot, no global backend switch), so it is safe in
headless jobs and worker processes.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from .leaderboard import Run, msssim_to_db

log = logging.getLogger(__name__)

# Published curves drawn per dataset: (file stem in REFERENCE_DIR/<folder>, label).
REFERENCE_CURVES: dict[str, tuple[str, list[tuple[str, str]]]] = {
    "kodak": ("kodak", [
        ("jpeg", "JPEG"),
        ("av1", "AV1"),
        ("bpg_444_x265_ycbcr", "BPG 4:4:4 (x265)"),
        ("compressai-bmshj2018-hyperprior_mse_cpu", "bmshj2018-hyperprior, MSE"),
        ("compressai-bmshj2018-hyperprior_ms-ssim_cpu", "bmshj2018-hyperprior, MS-SSIM"),
        ("compressai-mbt2018-mean_ms-ssim_cpu", "mbt2018-mean, MS-SSIM"),
    ]),
}
METRICS = {
    "msssim_db": ("MS-SSIM (dB)  = −10·log10(1 − MS-SSIM)", "MS-SSIM"),
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


def _clip_series(x: np.ndarray, y: np.ndarray, xmax: float) -> tuple[np.ndarray, np.ndarray]:
    """Finite points up to ``xmax`` plus the first one beyond (the line then leaves the frame)."""
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    order = np.argsort(x, kind="stable")
    x, y = x[order], y[order]
    beyond = np.nonzero(x > xmax)[0]
    stop = beyond[0] + 1 if len(beyond) else len(x)
    return x[:stop], y[:stop]


def submission_colours(names: list[str]) -> dict[str, str]:
    palette = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#17becf", "#e377c2", "#8c564b",
               "#bcbd22", "#393b79", "#637939", "#843c39"]
    return {n: palette[i % len(palette)] for i, n in enumerate(sorted(names))}


def plot_rd(runs: list[Run], metric: str, out: Path, dataset: str, references: list[RefCurve] = (),
            targets: list[float] | None = None) -> Path:
    """One RD plot (``metric`` is ``msssim_db`` or ``psnr``) written as PNG to ``out``."""
    ylabel, short = METRICS[metric]
    if targets is None:
        targets = sorted({float(t) for r in runs for t in r.rows["target_bpp"].dropna()})
    xmax = 1.0 if not targets or max(targets) <= 0.9 else max(targets) * 1.15
    colours = submission_colours([r.name for r in runs])

    fig = Figure(figsize=(8.6, 5.0), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    visible_y: list[float] = []

    def _keep_visible(x, y):
        visible_y.extend(float(v) for v, u in zip(y, x) if u <= xmax)

    for i, ref in enumerate(references):
        colour, dashes, marker = _REF_STYLES[i % len(_REF_STYLES)]
        x, y = _clip_series(ref.bpp, getattr(ref, metric), xmax)
        if not len(x):
            continue
        _keep_visible(x, y)
        ax.plot(x, y, color=colour, lw=1.0, dashes=dashes, marker=marker, ms=3.5, mfc="none", mew=0.8,
                alpha=0.9, zorder=2, label=f"{ref.label} (published)")

    for run in runs:
        c = colours[run.name]
        drew = False
        if run.rd is not None and metric in run.rd.columns and not run.rd.empty:
            x, y = _clip_series(run.rd["bpp"].to_numpy(float), run.rd[metric].to_numpy(float), xmax)
            if len(x):
                _keep_visible(x, y)
                ax.plot(x, y, color=c, lw=1.8, marker="o", ms=4.5, zorder=4, label=run.name)
                drew = True
        rows = run.rows
        if metric in rows.columns and "bpp" in rows.columns:
            ok = rows[rows["status"].eq("ok")]
            x, y = ok["bpp"].to_numpy(float), ok[metric].to_numpy(float)
            fin = np.isfinite(x) & np.isfinite(y)
            if fin.any():
                _keep_visible(x[fin], y[fin])
                ax.plot(x[fin], y[fin], ls="none", marker="*", ms=15, color=c, mec="black", mew=0.7, zorder=6,
                        label=None if drew else run.name)

    for t in targets:
        ax.axvline(t, color="0.3", ls=":", lw=1.0, zorder=1)
        if t <= xmax:
            ax.text(t, 1.005, f"{t:g}", transform=ax.get_xaxis_transform(), ha="center", va="bottom",
                    fontsize=8, color="0.3")

    ax.set_xlim(0, xmax)
    if visible_y:
        lo, hi = min(visible_y), max(visible_y)
        pad = max((hi - lo) * 0.06, 0.4)
        ax.set_ylim(lo - pad, hi + pad)
    else:
        ax.text(0.5, 0.5, "no RD data", transform=ax.transAxes, ha="center", va="center", color="0.5")
    ax.set_xlabel("bits per pixel (bpp)")
    ax.set_ylabel(ylabel)
    ax.set_title(f"{dataset} — rate–distortion, {short}", fontsize=11, pad=16, loc="left")
    ax.grid(True, color="0.88", lw=0.7)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)

    handles, labels = ax.get_legend_handles_labels()
    if any(r.rows["status"].eq("ok").any() for r in runs):
        handles.append(Line2D([], [], ls="none", marker="*", ms=11, color="0.6", mec="black", mew=0.7))
        labels.append("selected at target")
    if targets:
        handles.append(Line2D([], [], color="0.3", ls=":", lw=1.0))
        labels.append("target bpp")
    if handles:
        ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False,
                  borderaxespad=0.0, handlelength=2.6)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp.png")
    fig.savefig(tmp, format="png", bbox_inches="tight", facecolor="white")
    tmp.replace(out)
    return out


__all__ = ["REFERENCE_CURVES", "RefCurve", "load_references", "plot_rd", "submission_colours"]
