"""The self-contained leaderboard page: formatted tables per target, embedded plots, runs.

Everything the template shows is prepared here as text (the template only lays it out);
the page has inline CSS and base64 PNGs, so it can be mailed or archived as one file.
"""

from __future__ import annotations

import base64
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable

import jinja2
import pandas as pd
from markupsafe import Markup

from .leaderboard import ROW_COLUMNS, Run, Skipped, is_num

TEMPLATES = Path(__file__).with_name("templates")
DASH = "—"


# ----------------------------------------------------------------------------- formatting
def preformatted_html(md_path: Path) -> str:
    """A markdown report file as preformatted text: the page shows exactly what the file says."""
    import html

    return f"<pre>{html.escape(md_path.read_text())}</pre>"


def _num(x) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(v) else v


def fixed(d: int) -> Callable[[object], str]:
    def f(x) -> str:
        v = _num(x)
        if v is None:
            return DASH
        if math.isinf(v):
            return "∞" if v > 0 else "−∞"
        return f"{v:.{d}f}"
    return f


def integer(x) -> str:
    v = _num(x)
    return DASH if v is None or math.isinf(v) else f"{int(round(v)):,}"


def human_bytes(x) -> str:
    v = _num(x)
    if v is None:
        return DASH
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(v) >= scale:
            return f"{v / scale:.3g} {unit}" if v / scale < 100 else f"{v / scale:.0f} {unit}"
    return f"{int(v)} B"


def count(x) -> str:
    v = _num(x)
    if v is None:
        return DASH
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(v) >= scale:
            return f"{v / scale:.3g} {unit}"
    return f"{v:g}"


def seconds(x) -> str:
    v = _num(x)
    if v is None or math.isinf(v):
        return DASH
    if v < 1:
        return f"{v:.3f}"
    return f"{v:.2f}" if v < 100 else f"{v:,.0f}"


def percent(x) -> str:
    v = _num(x)
    return DASH if v is None else f"{v:+.2f} %"


def generic(x) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return DASH
    if is_num(x):
        v = float(x)
        if math.isinf(v):
            return "∞" if v > 0 else "−∞"
        if v.is_integer() and abs(v) < 1e15:
            return f"{int(v):,}"
        return f"{v:.4g}"
    return str(x)


def short_date(s) -> str:
    if not isinstance(s, str) or not s.strip():
        return DASH
    try:
        d = datetime.fromisoformat(s.strip().replace("Z", "+00:00"))
    except ValueError:
        return s
    if d.tzinfo is not None:
        d = d.astimezone(timezone.utc)
        return d.strftime("%Y-%m-%d %H:%M UTC")
    return d.strftime("%Y-%m-%d %H:%M")


def _text(x) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return ""
    return str(x).strip()


# ----------------------------------------------------------------------------- table model
@dataclass
class Column:
    key: str
    label: str
    fmt: Callable[[object], str]
    best: str | None = None  # "max" / "min": highlight the best feasible value
    numeric: bool = True
    title: str = ""


# Columns beyond the runner's ROW_COLUMNS that learned codecs may add, and how to show them.
KNOWN_EXTRAS: dict[str, Column] = {
    "params": Column("params", "Params", count, title="parameters of the models the row uses"),
    "enc_kmac_px": Column("enc_kmac_px", "Enc. kMAC/px", generic, "min",
                          title="encoder compute (fvcore), thousand MACs per original pixel"),
    "dec_kmac_px": Column("dec_kmac_px", "Dec. kMAC/px", generic, "min",
                          title="decoder compute (fvcore), thousand MACs per original pixel"),
    "eff_enc_kmac_px": Column("eff_enc_kmac_px", "Eff. enc. kMAC/px", generic, "min",
                              title="encoder compute counting only the active input channels of gated convolutions"),
    "eff_dec_kmac_px": Column("eff_dec_kmac_px", "Eff. dec. kMAC/px", generic, "min",
                              title="decoder compute counting only the active input channels of gated convolutions"),
    "rate_overhead_max_pct": Column("rate_overhead_max_pct", "Max. overhead", percent,
                                    title="largest per-image rate overhead (file vs −log2 likelihoods), per cent"),
    "models_used": Column("models_used", "Models", count, title="distinct models the row's images use"),
    "rate_overhead_pct": Column("rate_overhead_pct", "Rate overhead", percent,
                                title="whole files (headers included) vs −log2 of the likelihoods, per cent"),
    "uncounted_ops": Column("uncounted_ops", "Uncounted ops", str, numeric=False,
                            title="ops the MAC counter skipped ('none' when everything was counted)"),
}
QUALITY = [
    Column("msssim", "MS-SSIM", fixed(4), "max", title="pixel-weighted mean MS-SSIM over the set"),
    Column("msssim_db", "MS-SSIM dB", fixed(2), "max", title="−10·log10(1 − MS-SSIM)"),
    Column("psnr", "PSNR dB", fixed(2), "max", title="PSNR of the MSE pooled over all pixels (RGB)"),
    Column("bpp", "bpp", fixed(4), title="bits per pixel over the whole set"),
]
DECODER = Column("decoder_bytes", "Decoder size", human_bytes, "min", title="decoder (program + weights) size")
TIMES = [
    Column("enc_s", "Enc. s", seconds, "min", title="encode wall time, seconds"),
    Column("dec_s", "Dec. s", seconds, "min", title="decode wall time, seconds"),
]
# Row columns shown elsewhere (caption, tooltips, runs section) or not at all.
NOT_EXTRA = set(ROW_COLUMNS) | {"decoder_bytes"}


@dataclass
class Cell:
    text: str
    cls: str = ""
    title: str = ""
    sub: str = ""  # a second, smaller line


@dataclass
class Table:
    target: str
    anchor: str
    caption: list[str]
    headers: list[Column]
    rows: list[dict] = field(default_factory=list)  # {"cls": ..., "cells": [Cell]}


def _has_values(df: pd.DataFrame, col: str) -> bool:
    return col in df.columns and df[col].notna().any()


def _best_mask(values: pd.Series, ok: pd.Series, how: str) -> pd.Series:
    vals = pd.to_numeric(values, errors="coerce").where(ok)
    if vals.dropna().nunique() < 2:  # one value, or all tied: nothing stands out
        return pd.Series(False, index=values.index)
    target = vals.max() if how == "max" else vals.min()
    return vals.eq(target).fillna(False).astype(bool)   # nullable columns: missing is not best


def _mode(values: Iterable) -> object:
    vals = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return Counter(vals).most_common(1)[0][0] if vals else None


def build_tables(board: pd.DataFrame) -> list[Table]:
    """One table per target, rows in leaderboard order, cells formatted and marked."""
    tables: list[Table] = []
    if board.empty:
        return tables
    extras = [c for c in board.columns if c not in NOT_EXTRA and not str(c).startswith("Unnamed")]
    for target, grp in board.groupby("target_bpp", sort=True, dropna=True):
        grp = grp.copy()
        ok = grp["status"].fillna("ok").eq("ok")
        cols: list[Column] = [Column("rank", "#", str), Column("submission", "Submission", str, numeric=False)]
        cols += QUALITY
        cols.append(Column("bytes", "Data size / budget (bytes)", str, title="sum of whole-file sizes vs. budget"))
        if _has_values(grp, "decoder_bytes"):
            cols.append(DECODER)
        cols += TIMES
        for c in extras:
            if _has_values(grp, c):
                cols.append(KNOWN_EXTRAS.get(c) or Column(c, str(c).replace("_", " "), generic,
                                                          numeric=pd.api.types.is_numeric_dtype(grp[c])))
        cols += [Column("device", "Device", str, numeric=False), Column("status", "Status", str, numeric=False)]

        best = {c.key: _best_mask(grp[c.key], ok, c.best) for c in cols if c.best and c.key in grp.columns}
        budget = _mode(grp.get("budget_bytes", pd.Series(dtype=float)))
        images = _mode(grp.get("images", pd.Series(dtype=float)))
        modes = sorted({m for m in grp.get("mode", pd.Series(dtype=str)).dropna().astype(str) if m})
        caption = []
        if budget is not None:
            caption.append(f"budget {integer(budget)} bytes")
        if images is not None:
            caption.append(f"{integer(images)} images")
        if modes:
            caption.append("mode " + ", ".join(modes))
        caption.append(f"{int(ok.sum())} feasible of {len(grp)}")

        t = Table(target=f"{float(target):g}", anchor=f"target-{float(target):g}".replace(".", "_"),
                  caption=caption, headers=cols)
        rank = 0
        for idx, r in grp.iterrows():
            feasible = bool(ok.loc[idx])
            rank += feasible
            cells = []
            for c in cols:
                cells.append(_cell(c, r, feasible, rank, bool(best[c.key].loc[idx]) if c.key in best else False))
            t.rows.append({"cls": ("" if feasible else "infeasible") + (" leader" if feasible and rank == 1 else ""),
                           "cells": cells})
        tables.append(t)
    return tables


def _cell(c: Column, r: pd.Series, feasible: bool, rank: int, is_best: bool) -> Cell:
    num = "num" if c.numeric else ""
    if c.key == "rank":
        return Cell(str(rank) if feasible else "", "num rank")
    if c.key == "submission":
        note = _text(r.get("note"))
        return Cell(_text(r.get("submission")) or DASH, "name", sub=note)
    if c.key == "status":
        if feasible:
            return Cell(_text(r.get("status")) or "ok", "status ok")
        st = _text(r.get("status")) or "?"
        low = _num(r.get("lowest_bpp"))
        text = f"{st}: lowest {low:.4f} bpp" if low is not None else st
        return Cell(text, "status bad")
    if c.key == "bytes":
        used, budget = _num(r.get("bytes")), _num(r.get("budget_bytes"))
        title = f"{used / budget:.1%} of the budget" if used is not None and budget else ""
        return Cell(f"{integer(used)} / {integer(budget)}" if used is not None else f"{DASH} / {integer(budget)}",
                    "num", title=title)
    if c.key == "device":
        return Cell(_text(r.get("device")) or DASH, "device")
    value = r.get(c.key)
    title = ""
    mean_key = {"msssim": "msssim_mean", "psnr": "psnr_mean"}.get(c.key)
    if mean_key and _num(r.get(mean_key)) is not None:
        title = f"plain mean over images: {c.fmt(r.get(mean_key))}"
    if c.key in {"decoder_bytes"} and _num(value) is not None:
        title = f"{integer(value)} bytes"
    return Cell(c.fmt(value), (num + (" best" if is_best else "")).strip(), title=title)


# ----------------------------------------------------------------------------- runs section
def _listish(x) -> list[str]:
    if x is None or x == "" or x == []:
        return []
    if isinstance(x, (list, tuple)):
        return [i if isinstance(i, str) else _compact(i) for i in x]
    return [x if isinstance(x, str) else _compact(x)]


def _compact(x) -> str:
    if isinstance(x, dict):
        return "; ".join(f"{k}: {v}" for k, v in x.items())
    return str(x)


def run_summary(run: Run) -> dict:
    m = run.meta
    settings = m.get("settings") if isinstance(m.get("settings"), dict) else {}
    parts = []
    if settings.get("targets"):
        tg = settings["targets"]
        parts.append("targets " + (", ".join(f"{t:g}" if is_num(t) else str(t) for t in tg)
                                   if isinstance(tg, (list, tuple)) else str(tg)))
    for k in ("mode", "objective", "policy"):
        if settings.get(k) not in (None, ""):
            parts.append(f"{k} {settings[k]}")
    parts += [f"{k} {v}" for k, v in settings.items() if k not in {"targets", "mode", "objective", "policy"}]
    warnings = list(run.warnings)
    if m.get("format_version") not in (None, 1):
        warnings.append(f"run.json format_version {m.get('format_version')} (this report reads 1)")
    commit, chash = _text(m.get("commit")), _text(m.get("content_hash"))
    details = {k: v for k, v in (("environment", m.get("environment")), ("packages", m.get("packages")))
               if isinstance(v, dict) and v}
    return {
        "name": run.name,
        "folder": run.folder.name,
        "description": _text(m.get("description")),
        "date": short_date(m.get("date")),
        "commit": commit[:10] or DASH, "commit_full": commit,
        "hash": chash[:12] or DASH, "hash_full": chash,
        "device": _text(m.get("device")) or DASH,
        "settings": " · ".join(parts),
        "errors": _listish(m.get("errors")),
        "notes": _listish(m.get("image_notes")),
        "warnings": warnings,
        "details": {k: [(str(a), _compact(b)) for a, b in v.items()] for k, v in details.items()},
    }


# ----------------------------------------------------------------------------- page
def data_uri(png: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(png).read_bytes()).decode("ascii")


def _env() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)),
                              autoescape=jinja2.select_autoescape(["html", "j2"], default=True),
                              trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined)


def render_page(dataset: str, runs: list[Run], skipped: list[Skipped], board: pd.DataFrame,
                plots: dict[str, Path], extra_sections: Iterable[tuple[str, str]] = (),
                notes: Iterable[str] = ()) -> str:
    """The whole leaderboard page as HTML text."""
    dates = [d for d in (run.meta.get("date") for run in runs) if isinstance(d, str) and d]
    latest = short_date(max(dates)) if dates else DASH
    sections = []
    for i, item in enumerate(extra_sections):
        title, fragment = item
        slug = re.sub(r"[^a-z0-9]+", "-", str(title).lower()).strip("-") or f"section-{i}"
        sections.append({"title": str(title), "anchor": f"x-{slug}", "html": Markup(fragment)})
    return _env().get_template("leaderboard.html.j2").render(
        dataset=dataset,
        latest=latest,
        built=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        n_runs=len(runs),
        n_rows=len(board),
        tables=build_tables(board),
        plots=[{"title": title, "uri": data_uri(path), "alt": alt}
               for title, path, alt in ((t, plots.get(k), a) for k, t, a in (
                   ("rd_msssim", "MS-SSIM (dB) vs. rate", "rate–distortion plot, MS-SSIM in dB against bpp"),
                   ("rd_psnr", "PSNR vs. rate", "rate–distortion plot, PSNR against bpp")))
               if path is not None and Path(path).is_file()],
        runs=[run_summary(r) for r in runs],
        skipped=skipped,
        notes=list(notes),
        extra_sections=sections,
    )


__all__ = ["render_page", "build_tables", "run_summary", "data_uri"]
