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
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from bench.atomic import atomic_write

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
    with Image.open(buf) as im:
        small = im.convert("RGB").quantize(colors=128, method=Image.Quantize.FASTOCTREE)
    return atomic_write(out, lambda tmp: small.save(tmp, format="PNG", optimize=True))


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


# ----------------------------------------------------------------------------- interactive SVG
# One self-contained SVG per metric for the page: every submission's curve and chosen points,
# drawn here (no plotting library at view time); the page's script shows and hides submissions
# and families and shows a point's details on hover (templates/leaderboard.html.j2).
SVG_METRICS = {
    "msssim_db": ("MS-SSIM (dB)", "MS-SSIM dB", "{:.2f} dB"),
    "psnr": ("PSNR (dB)", "PSNR", "{:.2f} dB"),
    "ssimulacra2": ("SSIMULACRA 2", "SSIMULACRA 2", "{:.2f}"),
    "flip": ("FLIP error (lower is better)", "FLIP", "{:.4f}"),
}
_W, _H = 600, 390
_PAD = (58, 14, 18, 46)       # left, right, top, bottom


def _nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return []
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step) * step
    return [round(first + i * step, 10) for i in range(int((hi - first) / step) + 1)]


def _points_summary(per_image: pd.DataFrame | None, row: pd.Series) -> str:
    """The operating points a row chose, most common first ('q=30 ×10, q=35 ×14'; one: '0.1742')."""
    if per_image is None or per_image.empty or "point" not in per_image.columns:
        return "per image (see the table)"
    df = per_image[(per_image["target_bpp"].round(6) == round(float(row["target_bpp"]), 6))
                   & (rules(per_image) == rules(pd.DataFrame([row])).iloc[0])]
    counts = df["point"].astype(str).value_counts()
    if counts.empty:
        return "per image (see the table)"
    if len(counts) == 1:
        return str(counts.index[0])
    top = [f"{p} ×{n}" for p, n in counts.head(3).items()]
    return "per image: " + ", ".join(top) + (f", … ({len(counts)} points)" if len(counts) > 3 else "")


def _fmt(metric: str, v: float) -> str:
    return SVG_METRICS[metric][2].format(v)


def _svg_curves(runs: list[Run], metric: str, primary: str) -> list[tuple[Run, list, list]]:
    """Per run: its rd.csv curve of ``metric`` as (bpp, value, point) and its chosen points as
    (bpp, value, rule, target, points summary); runs with neither are left out."""
    curves = []
    for run in runs:
        line = []
        if run.rd is not None and metric in run.rd.columns and "bpp" in run.rd.columns:
            for _, p in run.rd.sort_values("bpp").iterrows():
                b, v = float(p["bpp"]), float(p[metric])
                if math.isfinite(b) and math.isfinite(v):
                    line.append((b, v, str(p.get("point", ""))))
        chosen = []
        ok = run.rows[run.rows["status"].eq("ok")] if "status" in run.rows.columns else run.rows
        if metric in ok.columns:
            for _, row in ok.iterrows():
                b, v = float(row["bpp"]), float(row[metric]) if pd.notna(row[metric]) else math.nan
                if math.isfinite(b) and math.isfinite(v):
                    rule = str(rules(pd.DataFrame([row])).iloc[0])
                    chosen.append((b, v, rule, float(row["target_bpp"]), _points_summary(run.per_image, row)))
        if not line and chosen:       # no swept curve for this metric: join the primary rule's chosen points
            line = [(b, v, f"chosen at {t:g} bpp") for b, v, rule, t, _ in sorted(chosen) if rule == primary]
        if line or chosen:
            curves.append((run, line, chosen))
    return curves


@dataclass(frozen=True)
class _Frame:
    """The plot area and the data range it shows."""

    xlo: float
    xhi: float
    ylo: float
    yhi: float

    def sx(self, b: float) -> float:
        left, right, _, _ = _PAD
        return left + (b - self.xlo) / (self.xhi - self.xlo) * (_W - left - right)

    def sy(self, v: float) -> float:
        _, _, top, bottom = _PAD
        return top + (self.yhi - v) / (self.yhi - self.ylo) * (_H - top - bottom)


def _svg_axes(f: _Frame, label: str, targets: list[float]) -> list[str]:
    import html as _html

    left, right, top, bottom = _PAD
    pw, ph = _W - left - right, _H - top - bottom
    out = []
    for t in _nice_ticks(f.ylo, f.yhi):
        y = f.sy(t)
        out.append(f'<line class="grid" x1="{left}" x2="{left + pw}" y1="{y:.1f}" y2="{y:.1f}"/>'
                   f'<text class="tick" x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{t:g}</text>')
    for t in _nice_ticks(f.xlo, f.xhi):
        x = f.sx(t)
        out.append(f'<line class="grid" x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{top + ph}"/>'
                   f'<text class="tick" x="{x:.1f}" y="{top + ph + 16}" text-anchor="middle">{t:g}</text>')
    for t in targets:
        if f.xlo <= t <= f.xhi:
            out.append(f'<line class="target" x1="{f.sx(t):.1f}" x2="{f.sx(t):.1f}" y1="{top}" y2="{top + ph}"/>')
    out.append(f'<rect class="frame" x="{left}" y="{top}" width="{pw}" height="{ph}"/>'
               f'<text class="axis" x="{left + pw / 2}" y="{_H - 8}" text-anchor="middle">bits per pixel</text>'
               f'<text class="axis" transform="translate(15 {top + ph / 2}) rotate(-90)" text-anchor="middle">'
               f'{_html.escape(label)}</text>')
    return out


def _svg_curve(f: _Frame, run: Run, line: list, chosen: list, metric: str, attrs: str, family: str, colour: str,
               clip: str, primary: str) -> str:
    """One submission's ``<g class="curve">``: its line, its points and its chosen points."""
    import html as _html

    name = _html.escape(run.name)
    g = [(f'<g class="curve" data-sub="{name}" data-family="{family}" clip-path="url(#{clip})" '
          f'style="--c:{colour}">')]
    if len(line) > 1:
        pts = " ".join(f"{f.sx(b):.1f},{f.sy(v):.1f}" for b, v, _ in line)
        g.append(f'<polyline points="{pts}"/>')
    for b, v, point in line:
        g.append(f'<circle class="pt" cx="{f.sx(b):.1f}" cy="{f.sy(v):.1f}" r="3.6" {attrs} data-b="{b:.4f}" '
                 f'data-v="{_html.escape(_fmt(metric, v))}" data-p="{_html.escape(point)}"/>')
    for b, v, rule, t, points in chosen:
        kind = "chosen" if rule == primary else "chosen other"
        g.append(f'<circle class="{kind}" cx="{f.sx(b):.1f}" cy="{f.sy(v):.1f}" r="6.5" {attrs} data-b="{b:.4f}" '
                 f'data-v="{_html.escape(_fmt(metric, v))}" '
                 f'data-p="{_html.escape(f"chosen at {t:g} bpp ({rule}); {points}")}"/>')
    g.append("</g>")
    return "".join(g)


def interactive_rd(runs: list[Run], metric: str, dataset: str, xlim: tuple[float, float],
                   learned: dict[str, bool], targets: list[float] | None = None) -> str:
    """An inline SVG RD plot of ``metric`` (a key of :data:`SVG_METRICS`) as trusted HTML: one
    ``<g class="curve">`` per submission (its rd.csv curve where it has the metric, and its
    points chosen at the targets, primary rule filled, others hollow), each point carrying its
    submission, dataset, bpp, value and operating point in data attributes; ``learned`` says
    each submission's family. Empty when no run has the metric."""
    import html as _html

    label, short, _ = SVG_METRICS[metric]
    styles = submission_styles([r.name for r in runs])
    primary = (rule_order(_ok_rows(runs)) or [""])[0]
    curves = _svg_curves(runs, metric, primary)
    if not curves:
        return ""
    xlo, xhi = xlim
    ys = [v for _, line, chosen in curves for b, v, *_ in line + chosen if xlo <= b <= xhi]
    ylo, yhi = (min(ys), max(ys)) if ys else (0.0, 1.0)
    pad = max((yhi - ylo) * 0.06, 1e-3 if metric == "flip" else 0.2)
    frame = _Frame(xlo, xhi, ylo - pad, yhi + pad)
    left, right, top, bottom = _PAD
    clip = f"rdx-clip-{metric}"
    out = [(f'<svg viewBox="0 0 {_W} {_H}" role="img" aria-label="{_html.escape(f"{dataset}: {label} against bpp")}" '
            f'><defs><clipPath id="{clip}"><rect x="{left}" y="{top}" '
            f'width="{_W - left - right}" height="{_H - top - bottom}"/></clipPath></defs>')]
    out += _svg_axes(frame, label, targets or [])
    for run, line, chosen in curves:
        attrs = f'data-s="{_html.escape(run.name)}" data-d="{_html.escape(dataset)}" data-m="{_html.escape(short)}"'
        family = "learned" if learned.get(run.name) else "classical"
        out.append(_svg_curve(frame, run, line, chosen, metric, attrs, family, styles[run.name][0], clip, primary))
    out.append("</svg>")
    return "".join(out)


def plot_controls(runs: list[Run], learned: dict[str, bool]) -> str:
    """The buttons that show and hide families and submissions in every interactive plot."""
    import html as _html

    styles = submission_styles([r.name for r in runs])
    fams = [f for f in ("classical", "learned") if any(bool(learned.get(r.name)) == (f == "learned") for r in runs)]
    out = ['<div class="rdx-controls"><span class="rdx-label">Show:</span>']
    out += [f'<button type="button" class="fam" data-family="{f}" aria-pressed="true">{f.capitalize()}</button>'
            for f in fams]
    for r in sorted(runs, key=lambda r: r.name):
        fam = "learned" if learned.get(r.name) else "classical"
        out.append(f'<button type="button" class="chip" data-sub="{_html.escape(r.name)}" data-family="{fam}" '
                   f'aria-pressed="true"><span class="sw" style="background:{styles[r.name][0]}"></span>'
                   f'{_html.escape(r.name).replace("_", "_<wbr>")}</button>')
    out.append("</div>")
    return "".join(out)


__all__ = ["REFERENCE_CURVES", "SVG_METRICS", "RefCurve", "Series", "draw_rd", "fitted_xlim", "frame_xmax",
           "interactive_rd", "load_references", "plot_controls", "plot_rd", "submission_styles"]
