"""The self-contained leaderboard page: one table per target and mode with per-image
drill-downs, embedded RD plots, a BD-rate summary, the runs and the studies.

Everything the template shows is prepared here as text or trusted HTML (the template only lays
it out). The page has inline CSS, a few lines of inline JavaScript (sorting, drill-downs, more
columns) and base64 PNGs, so it can be mailed or archived as one file and works offline.
"""

from __future__ import annotations

import base64
import html
import math
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import jinja2
import pandas as pd
from markupsafe import Markup

from bench.results import column_value

from .leaderboard import CONFIDENCE_COLUMNS, ROW_COLUMNS, Run, Skipped, is_learned, is_num, rule_order, rules
from .plots import SVG_METRICS, fitted_xlim, interactive_rd, plot_controls

TEMPLATES = Path(__file__).with_name("templates")
DASH = "—"


# ----------------------------------------------------------------------------- formatting
def number(x) -> float | None:
    """A stored value as a finite-or-infinite float; None when missing, NaN or not a number."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(v) else v


def fixed(d: int) -> Callable[[object], str]:
    def f(x) -> str:
        v = number(x)
        if v is None:
            return DASH
        if math.isinf(v):
            return "∞" if v > 0 else "−∞"
        return f"{v:.{d}f}"
    return f


def integer(x) -> str:
    v = number(x)
    return DASH if v is None or math.isinf(v) else f"{int(round(v)):,}"


def human_bytes(x) -> str:
    v = number(x)
    if v is None:
        return DASH
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(v) >= scale:
            return f"{v / scale:.3g} {unit}" if v / scale < 100 else f"{v / scale:.0f} {unit}"
    return f"{int(v)} B"


def count(x) -> str:
    v = number(x)
    if v is None:
        return DASH
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(v) >= scale:
            return f"{v / scale:.3g} {unit}"
    return f"{v:g}"


def seconds(x) -> str:
    v = number(x)
    if v is None or math.isinf(v):
        return DASH
    if v < 1:
        return f"{v:.3f}"
    return f"{v:.2f}" if v < 100 else f"{v:,.0f}"


def percent(x) -> str:
    v = number(x)
    return DASH if v is None else f"{v:+.2f} %"


def share(x) -> str:
    """A fraction as a whole per cent ("84%")."""
    v = number(x)
    return DASH if v is None else f"{v:.0%}"


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
        d = d.astimezone(UTC)
        return d.strftime("%Y-%m-%d %H:%M UTC")
    return d.strftime("%Y-%m-%d %H:%M")


def _text(x) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return ""
    return str(x).strip()


def text_or_dash(x) -> str:
    """Stored text as shown: missing values (empty, NaN, 'nan') are a dash, never 'nan'."""
    t = _text(x)
    return t if t and t.lower() != "nan" else DASH


# ----------------------------------------------------------------------------- sortable tables
@dataclass
class Column:
    key: str
    label: str
    fmt: Callable[[object], str] = generic
    best: str | None = None  # "max" / "min": highlight the best feasible value (as displayed)
    numeric: bool = True
    title: str = ""
    extra: bool = False      # hidden until the table's "more columns" button is pressed


@dataclass
class Cell:
    text: str
    cls: str = ""
    title: str = ""
    sub: str = ""                        # a second, smaller line
    sort: float | str | None = None      # what the column sorts on (data-v); None: the cell's text
    markup: str = ""                     # trusted HTML shown instead of ``text``


@dataclass
class Row:
    cells: list[Cell]
    cls: str = ""
    drill: str = ""          # trusted HTML shown in a hidden row under this one


def _attrs(**kv: object) -> str:
    return "".join(f' {k.rstrip("_").replace("_", "-")}="{html.escape(str(v))}"' for k, v in kv.items()
                   if v not in (None, ""))


def _classes(*names: str) -> str:
    return " ".join(n for n in names if n)


def _th(c: Column, i: int, sticky: int) -> str:
    cls = _classes("num" if c.numeric else "", "x" if c.extra else "", f"s{i + 1}" if i < sticky else "")
    return (f"<th{_attrs(class_=cls, title=c.title, data_sort='num' if c.numeric else 'text')}"
            f' data-first="{"desc" if c.best == "max" else "asc"}" scope="col">{html.escape(c.label)}</th>')


def _sort_value(v: float | str) -> str:
    """data-v as the page's script reads it (parseFloat knows "Infinity", not "inf")."""
    if not is_num(v):
        return str(v)
    f = float(v)
    return repr(f) if math.isfinite(f) else ("Infinity" if f > 0 else "-Infinity")


def _td(cell: Cell, c: Column, i: int, sticky: int) -> str:
    cls = _classes(cell.cls, "x" if c.extra else "", f"s{i + 1}" if i < sticky else "")
    v = None if cell.sort is None else _sort_value(cell.sort)
    body = cell.markup or html.escape(cell.text)
    sub = f'<span class="sub">{html.escape(cell.sub)}</span>' if cell.sub else ""
    return f"<td{_attrs(class_=cls, title=cell.title, data_v=v)}>{body}{sub}</td>"


def _group_row(cols: list[Column], groups: list[tuple[str, int]], sticky: int) -> str:
    """A header row above the columns: (label, span) groups; a group of extra columns hides with them."""
    cells, i = [], 0
    for label, span in groups:
        part = cols[i:i + span]
        cls = _classes("group" if label else "", "x" if part and all(c.extra for c in part) else "",
                       "s1" if i < sticky else "")
        cells.append(f"<th{_attrs(class_=cls, colspan=span if span > 1 else None)}>{html.escape(label)}</th>")
        i += span
    return f"<tr>{''.join(cells)}</tr>"


def table_html(cols: list[Column], rows: list[Row], *, cls: str = "", sticky: int = 0,
               groups: list[tuple[str, int]] | None = None, caption: str = "") -> str:
    """A table the page's script sorts on a header click. Rows with a drill-down get a tbody each,
    so that sorting moves a row and its drill-down together; columns marked ``extra`` stay hidden
    until "more columns" is pressed (the button sits on the caption's line, above the table)."""
    grouped = any(r.drill for r in rows)
    compact = any(c.extra for c in cols)
    classes = _classes("data", cls, "compact" if compact else "")
    head = (_group_row(cols, groups, sticky) if groups else "") + \
        f"<tr>{''.join(_th(c, i, sticky) for i, c in enumerate(cols))}</tr>"
    units = ' data-units="tbody"' if grouped else ""
    out = [f'<div class="scroll"><table class="{classes}"{units}><thead>{head}</thead>']
    if not grouped:
        out.append("<tbody>")
    for r in rows:
        tds = "".join(_td(x, c, i, sticky) for i, (x, c) in enumerate(zip(r.cells, cols)))
        tr = f"<tr{_attrs(class_=r.cls)}>{tds}</tr>"
        if grouped:
            drill = (f'<tr class="drill" hidden><td colspan="{len(cols)}"><div class="drillbox">{r.drill}</div>'
                     "</td></tr>") if r.drill else ""
            out.append(f'<tbody class="g">{tr}{drill}</tbody>')
        else:
            out.append(tr)
    out.append("</table></div>" if grouped else "</tbody></table></div>")
    more = sum(c.extra for c in cols)
    button = (f'<button type="button" class="more" aria-expanded="false" data-more="{more}">'
              f"More columns ({more})</button>") if compact else ""
    bar = f'<div class="bar"><p class="caption">{html.escape(caption)}</p>{button}</div>' if caption or button else ""
    return bar + "".join(out)


def num_cell(c: Column, value: object, best: str | None = None, title: str = "") -> Cell:
    """A formatted number; ``best`` (a displayed text) marks the cells that show it."""
    text = c.fmt(value)
    is_best = best is not None and text == best
    return Cell(text, "num best" if is_best else "num", title=title, sort=number(value))


def best_text(c: Column, values: Iterable) -> str | None:
    """The best value as displayed, when the column has one that stands out: compared after
    formatting, so equal shown numbers are all highlighted or none is."""
    vals = [v for v in (number(x) for x in values) if v is not None]
    if not c.best or not vals:
        return None
    shown = {c.fmt(v) for v in vals}
    return c.fmt(max(vals) if c.best == "max" else min(vals)) if len(shown) > 1 else None


# ----------------------------------------------------------------------------- leaderboard tables
# Columns beyond the runner's ROW_COLUMNS that learned codecs may add, and how to show them.
KNOWN_EXTRAS: dict[str, Column] = {
    "params": Column("params", "Params", count, title="parameters of the models the row uses", extra=True),
    "enc_kmac_px": Column("enc_kmac_px", "Enc. kMAC/px", generic, "min", extra=True,
                          title="encoder compute (fvcore), thousand MACs per original pixel"),
    "dec_kmac_px": Column("dec_kmac_px", "Dec. kMAC/px", generic, "min", extra=True,
                          title="decoder compute (fvcore), thousand MACs per original pixel"),
    "eff_enc_kmac_px": Column("eff_enc_kmac_px", "Eff. enc. kMAC/px", generic, "min", extra=True,
                              title="encoder compute counting only the active input channels of gated convolutions"),
    "eff_dec_kmac_px": Column("eff_dec_kmac_px", "Eff. dec. kMAC/px", generic, "min", extra=True,
                              title="decoder compute counting only the active input channels of gated convolutions"),
    "rate_overhead_pct": Column("rate_overhead_pct", "Rate overhead", percent, extra=True,
                                title="whole files (headers included) vs −log2 of the likelihoods, per cent"),
    "rate_overhead_max_pct": Column("rate_overhead_max_pct", "Max. overhead", percent, extra=True,
                                    title="largest per-image rate overhead (file vs −log2 likelihoods), per cent"),
    "models_used": Column("models_used", "Models", count, extra=True, title="distinct models the row's images use"),
    "uncounted_ops": Column("uncounted_ops", "Uncounted ops", text_or_dash, numeric=False, extra=True,
                            title="ops the MAC counter skipped ('none' when everything was counted)"),
}
RANK = Column("rank", "#", str, title="rank by MS-SSIM among the feasible rows of this table")
NAME = Column("submission", "Submission", str, numeric=False, title="▸ opens the per-image results")
QUALITY = [
    Column("msssim", "MS-SSIM", fixed(4), "max", title="pixel-weighted mean MS-SSIM over the set"),
    Column("msssim_db", "MS-SSIM dB", fixed(2), "max", title="−10·log10(1 − MS-SSIM)"),
    Column("psnr", "PSNR dB", fixed(2), "max", title="PSNR of the MSE pooled over all pixels (RGB)"),
    Column("bpp", "bpp", fixed(4), title="bits per pixel over the whole set"),
]
BYTES = Column("bytes", "Bytes / budget", str, title="sum of whole-file sizes vs. the budget")
DEC_S = Column("dec_s", "Decode s", seconds, "min", title="decode wall time over the set, seconds")
DECODER = Column("decoder_bytes", "Decoder", human_bytes, "min", title="decoder (program + weights) size")
DEVICE = Column("device", "Device", text_or_dash, numeric=False, title="where the row was coded and timed")
SANDBOX = Column("sandbox", "Sandbox", text_or_dash, numeric=False, extra=True,
                 title="bwrap: the codec ran sandboxed (docs/sandbox.md); off: --no-sandbox; — : coded before it")
CODE = Column("code", "Code", str, numeric=False, extra=True,
              title="the commit that coded the row (+dirty: with uncommitted changes, listed in its run.json) and "
                    "the commit whose re-coding reproduced its files bit-exactly, or the clean commit whose code is "
                    "the same (content hash: bench match-code)")
ENC_S = Column("enc_s", "Encode s", seconds, "min", extra=True, title="encode wall time over the set, seconds")
NEXT = Column("next", "vs. next", str, numeric=False,
              title="against the next feasible row of this table: on how many images this row's MS-SSIM is higher, "
                    "and whether the set-level difference is significant (95 % paired bootstrap over the same images)")
# The perceptual metrics (bench/perceptual.py): always offered behind "more columns", "not measured"
# for rows written before them.
PERCEPTUAL = [Column("ssimulacra2", "SSIMULACRA 2", fixed(2), "max", extra=True,
                     title="SSIMULACRA 2.1, pixel-weighted mean over the set (−∞..100; 90 visually lossless, "
                           "70 high quality, 30 low)"),
              Column("flip", "FLIP", fixed(4), "min", extra=True,
                     title="mean LDR-FLIP error over every pixel of the set (0..1, lower is better; 67 px per degree)")]
NOT_MEASURED = "not measured"
# Row columns shown elsewhere (caption, tooltips, runs section) or not at all.
NOT_EXTRA = set(ROW_COLUMNS) | {"decoder_bytes", "budget_limited"} | set(CONFIDENCE_COLUMNS)
DRILL = [Column("image_id", "Image", numeric=False), Column("point", "Point", numeric=False, title="operating point"),
         Column("bpp", "bpp", fixed(4)), Column("msssim", "MS-SSIM", fixed(4)), Column("psnr", "PSNR dB", fixed(2)),
         Column("bytes", "Bytes", integer)]
DRILL_PERCEPTUAL = [Column("ssimulacra2", "SSIMULACRA 2", fixed(2)), Column("flip", "FLIP", fixed(4))]
MODE_TEXT = {
    "per-image": ("Per-image mode", "Every image at or below the target on its own, instead of one budget for the "
                  "set: a stricter rule, so these rows are ranked among themselves, not against the CLIC tables."),
    "clic · psnr": ("CLIC mode, PSNR objective", "The set's budget as above, with rate control choosing each image's "
                    "point for the highest PSNR (one MSE over the set) instead of MS-SSIM: rows for MSE-trained "
                    "models and PSNR comparisons, ranked among themselves."),
    "per-image · psnr": ("Per-image mode, PSNR objective", "Every image at or below the target on its own, points "
                         "chosen for the highest PSNR: ranked among themselves."),
}


@dataclass
class Table:
    target: str
    mode: str
    anchor: str
    html: Markup   # caption line, "more columns" button and the table


def slug(text: str) -> str:
    """An id for a page anchor: lower-case letters and digits joined by dashes."""
    return re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-")


def _has_values(df: pd.DataFrame, col: str) -> bool:
    return col in df.columns and df[col].notna().any()


def _mode(values: Iterable) -> object:
    vals = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return Counter(vals).most_common(1)[0][0] if vals else None


def row_key(r: pd.Series | dict) -> tuple[str, str, str, float]:
    """(submission, mode, objective, target) of a leaderboard, per-image or verify row: what links them."""
    return (_text(r.get("submission")), _text(r.get("mode")), column_value(dict(r), "objective"),
            round(float(r.get("target_bpp")), 6))


def drill_tables(per_image: pd.DataFrame | None) -> dict[tuple[str, str, str, float], str]:
    """Every (submission, mode, objective, target)'s per-image results as a small sortable table."""
    if per_image is None or per_image.empty or "target_bpp" not in per_image.columns:
        return {}
    df = per_image.dropna(subset=["target_bpp"])
    df = df.assign(submission=df["submission"].fillna(""), rule=rules(df))
    out: dict[tuple[str, str, str, float], str] = {}
    for _, g in df.groupby(["submission", "rule", "target_bpp"], sort=False):
        cols = DRILL + [c for c in DRILL_PERCEPTUAL if _has_values(g, c.key)]
        rows = [Row([Cell(text_or_dash(r.get("image_id"))), Cell(text_or_dash(r.get("point")), "mono"),
                     *(num_cell(c, r.get(c.key)) for c in cols[2:])]) for _, r in g.iterrows()]
        out[row_key(g.iloc[0])] = (f'<p class="drillcap">{len(g)} images: the operating point chosen for each '
                                   "and its file's rate and quality.</p>" + table_html(cols, rows, cls="per-image"))
    return out


def _columns(grp: pd.DataFrame) -> list[Column]:
    cols = [RANK, NAME, *QUALITY, NEXT, BYTES, DEC_S] + ([DECODER] if _has_values(grp, "decoder_bytes") else [])
    cols += [DEVICE, ENC_S, *PERCEPTUAL, SANDBOX, CODE]
    for c in grp.columns:
        if c not in NOT_EXTRA and not str(c).startswith("Unnamed") and _has_values(grp, c):
            numeric = pd.api.types.is_numeric_dtype(grp[c])
            cols.append(KNOWN_EXTRAS.get(c) or Column(c, str(c).replace("_", " "), generic if numeric else text_or_dash,
                                                      numeric=numeric, extra=True))
    return cols


def _name_cell(r: pd.Series, feasible: bool, drill: bool) -> Cell:
    name = _text(r.get("submission")) or DASH
    note, sub = _text(r.get("note")), _text(r.get("note"))
    if not feasible:
        low = number(r.get("lowest_bpp"))
        st = _text(r.get("status")) or "?"
        sub = f"{st}: lowest {low:.4f} bpp" if low is not None else st
    button = ('<button type="button" class="dd" aria-expanded="false" title="per-image results">'
              '<span aria-hidden="true">▸</span></button>') if drill else ""
    markup = f'{button}<span class="n">{html.escape(name).replace("_", "_<wbr>")}</span>'
    trust = "; ".join(t for t in (_unsandboxed(r), _unreproduced(r)) if t)
    sub = "; ".join(t for t in (sub, trust) if t)
    return Cell(name, "name", title=note if note != sub else "", sub=sub, sort=name, markup=markup)


def _unsandboxed(r: pd.Series) -> str:
    """Said under a row coded without the sandbox (bench/sandbox/): its decoder could see more than its file."""
    return "coded without the sandbox (--no-sandbox)" if _text(r.get("sandbox")) == "off" else ""


def _unreproduced(r: pd.Series) -> str:
    """Said under a row whose code is not a commit: coded on a tree with changes and not re-coded
    bit-exactly at a clean commit since (``bench verify --rerun --publish`` stamps ``reproduced``)
    nor matched to a clean commit with the same code (``bench match-code`` stamps ``code_commit``)."""
    commit, again = _text(r.get("commit")), _text(r.get("reproduced"))
    if "+dirty" not in commit or (again and "+dirty" not in again) or _text(r.get("code_commit")):
        return ""
    return f"coded at {commit.split('+')[0][:10]} with uncommitted changes; not re-coded at a clean commit since"


def _code_cell(r: pd.Series) -> Cell:
    """The commit that coded the row and the one whose re-coding reproduced its files."""
    commit, again = _text(r.get("commit")), _text(r.get("reproduced"))
    text = commit[:10] + ("+dirty" if "+dirty" in commit else "") if commit else DASH
    title = f"coded at {commit}" if commit else ""
    if again:
        text += f" · re-coded {again.split()[0][:10]}"
        title += f"; re-coded bit-exactly at {again}"
    if same := _text(r.get("code_commit")):
        text += f" · code = {same[:10]}"
        title += f"; its code (content hash) is that of the clean commit {same} (bench match-code)"
    return Cell(text, "txt", title=title)


def _budget_limited(r: pd.Series) -> bool:
    """The run marked this row: it spends under 99 % of its budget (range limit, or the next
    model up over the budget); its note says which (bench/budget_note.py)."""
    return str(r.get("budget_limited")).strip().lower() in ("true", "1", "1.0")


def _bytes_cell(r: pd.Series) -> Cell:
    used, budget = number(r.get("bytes")), number(r.get("budget_bytes"))
    title = f"{used / budget:.1%} of the budget" if used is not None and budget else ""
    return Cell(f"{integer(used)} / {integer(budget)}", "num", title=title, sort=used)


def _next_cell(r: pd.Series) -> Cell:
    """This row against the next feasible one: '19 / 24' images better, 'significant' or not."""
    wins, n = number(r.get("next_wins")), number(r.get("next_images"))
    if wins is None or not n:
        return Cell(DASH, "next")
    sig = str(r.get("next_significant")).strip().lower() in ("true", "1", "1.0")
    losses = number(r.get("next_losses")) or 0
    diff, lo, hi = (number(r.get(k)) for k in ("next_msssim_diff", "next_diff_lo", "next_diff_hi"))
    title = (f"{_text(r.get('submission'))} better than {_text(r.get('next'))} (the next row) on {int(wins)} of "
             f"{int(n)} images, worse on {int(losses)}")
    if diff is not None and lo is not None and hi is not None:
        title += (f"; MS-SSIM {diff:+.4f}, 95 % paired bootstrap interval [{lo:+.4f}, {hi:+.4f}]: "
                  f"{'significant' if sig else 'not significant'}")
    return Cell(f"{int(wins)} / {int(n)}", "next sig" if sig else "next ns", title=title,
                sub="significant" if sig else "not significant", sort=wins / n)


def _ci_sub(c: Column, r: pd.Series, primary_budget: bool) -> tuple[str, str]:
    """(±half width, title) of a value's 95 % bootstrap interval over images; empty without one."""
    lo, hi = number(r.get(f"{c.key}_ci_lo")), number(r.get(f"{c.key}_ci_hi"))
    if lo is None or hi is None:
        return "", ""
    title = f"95 % bootstrap interval over the images: {c.fmt(lo)} to {c.fmt(hi)}"
    if primary_budget:
        title += " (the chosen points held fixed: under the budget rule, not a re-run of rate control)"
    return "±" + c.fmt((hi - lo) / 2), title


def _cell(c: Column, r: pd.Series, feasible: bool, rank: int, best: str | None, drill: bool) -> Cell:
    if c.key == "rank":
        return Cell(str(rank) if feasible else DASH, "num rank", sort=rank if feasible else None)
    if c.key == "submission":
        return _name_cell(r, feasible, drill)
    if c.key == "bytes":
        return _bytes_cell(r)
    if c.key == "next":
        return _next_cell(r) if feasible else Cell(DASH, "next")
    if c.key == "code":
        return _code_cell(r)
    if c.key in ("ssimulacra2", "flip") and feasible and number(r.get(c.key)) is None:
        return Cell(NOT_MEASURED, "num nm", title="this row was written before the perceptual metrics: re-code "
                                                  "its chosen points to measure them")
    if not c.numeric:
        return Cell(c.fmt(r.get(c.key)), c.key.replace("_", "-"))
    title = ""
    mean_key = {"msssim": "msssim_mean", "psnr": "psnr_mean"}.get(c.key)
    if mean_key and number(r.get(mean_key)) is not None:
        title = f"plain mean over images: {c.fmt(r.get(mean_key))}"
    if c.key == "decoder_bytes" and number(r.get(c.key)) is not None:
        title = f"{integer(r.get(c.key))} bytes"
    cell = num_cell(c, r.get(c.key), best if feasible else None, title)
    if c.key in ("msssim", "psnr") and feasible:
        cell.sub, ci_title = _ci_sub(c, r, _text(r.get("mode")) != "per-image")
        cell.title = "; ".join(t for t in (cell.title, ci_title) if t)
    return cell


def _caption(grp: pd.DataFrame, ok: pd.Series) -> list[str]:
    budget = _mode(grp.get("budget_bytes", pd.Series(dtype=float)))
    images = _mode(grp.get("images", pd.Series(dtype=float)))
    caption = [f"budget {integer(budget)} bytes"] if budget is not None else []
    if images is not None:
        caption.append(f"{integer(images)} images")
    return caption + [f"{int(ok.sum())} feasible of {len(grp)}"]


def _target_table(target: float, mode: str, grp: pd.DataFrame, drills: dict, primary: bool) -> Table:
    ok = grp["status"].fillna("ok").eq("ok")
    cols = _columns(grp)
    best = {c.key: best_text(c, grp.loc[ok, c.key]) for c in cols if c.best and c.key in grp.columns}
    rows, rank = [], 0
    for idx, r in grp.iterrows():
        feasible = bool(ok.loc[idx])
        rank += feasible
        drill = drills.get(row_key(r), "")
        cells = [_cell(c, r, feasible, rank, best.get(c.key), bool(drill)) for c in cols]
        kind = ("leader" if rank == 1 else "") if feasible else "infeasible"
        if feasible and _budget_limited(r):
            kind = f"{kind} limited".strip()      # the note says why the budget is not used
        rows.append(Row(cells, kind, drill))
    prefix = "" if primary else f"{mode} "
    return Table(target=f"{float(target):g}", mode=mode, anchor=slug(f"{prefix}target {float(target):g}"),
                 html=Markup(table_html(cols, rows, cls="board", sticky=2, caption=" · ".join(_caption(grp, ok)))))


def build_tables(board: pd.DataFrame, per_image: pd.DataFrame | None = None) -> list[Table]:
    """One table per mode and target (the CLIC mode first), rows in leaderboard order, cells
    formatted and marked, each row with its per-image drill-down."""
    if board.empty:
        return []
    drills = drill_tables(per_image)
    rule, order = rules(board), rule_order(board)
    return [_target_table(target, mode, grp, drills, mode == order[0])
            for mode in order for target, grp in board[rule.eq(mode)].groupby("target_bpp", sort=True, dropna=True)]


def mode_sections(tables: list[Table]) -> list[dict]:
    """The tables grouped by mode for the page: the first mode's are the leaderboard proper."""
    out: list[dict] = []
    for t in tables:
        if not out or out[-1]["mode"] != t.mode:
            title, intro = MODE_TEXT.get(t.mode, (f"{t.mode} mode", f"Rows run in mode {t.mode}, ranked among "
                                                                    "themselves."))
            out.append({"mode": t.mode, "primary": not out, "title": title, "intro": intro, "tables": [],
                        "anchor": slug(f"mode {t.mode}")})
        out[-1]["tables"].append(t)
    return out


def headline(board: pd.DataFrame) -> list[str]:
    """What the tables show, counted: submissions, targets, and who also ran another mode."""
    if board.empty:
        return ["no results yet"]
    subs, targets = board["submission"].nunique(), board["target_bpp"].nunique()
    parts = [f"{subs} submission{'s' * (subs != 1)}", f"{targets} target{'s' * (targets != 1)}"]
    modes = rule_order(board)
    for m in modes[1:]:
        names = sorted(board.loc[rules(board).eq(m), "submission"].astype(str).unique())
        parts.append(f"{MODE_TEXT.get(m, (m + ' mode',))[0].lower()} also: {', '.join(names)}")
    return parts


# ----------------------------------------------------------------------------- BD-rate summary
BD = [Column("submission", "Submission", str, numeric=False),
      Column("msssim_db_bd", "BD-rate, MS-SSIM dB", percent, title="negative: fewer bits than the anchor "
             "for the same MS-SSIM (dB)"),
      Column("msssim_db_overlap", "overlap", share,
             title="overlap of the two curves' quality ranges, share of their joint range"),
      Column("psnr_bd", "BD-rate, PSNR", percent, title="negative: fewer bits than the anchor for the same PSNR"),
      Column("psnr_overlap", "overlap", share,
             title="overlap of the two curves' quality ranges, share of their joint range"),
      Column("msssim_db_chosen_bd", "at the chosen points, 95 % interval", str, numeric=True,
             title="BD-rate (MS-SSIM dB) between the two runs' points chosen at the targets (CLIC mode), with its "
                   "95 % bootstrap interval over the images: how much the number owes to which images are in the set"),
      Column("psnr_chosen_bd", "PSNR, chosen points", str, numeric=True, extra=True,
             title="BD-rate (PSNR) between the points chosen at the targets, with its 95 % bootstrap interval "
                   "over the images"),
      Column("points", "RD points", integer, title="points of the run's rd.csv curve used (the plots' range)"),
      Column("estimated", "estimated", integer, title="of those points, how many have bytes the codec estimated "
             "(a --probe estimate sweep codes only the chosen points); 0: every byte from a file")]
LOW_OVERLAP, NO_OVERLAP = 0.5, 0.1   # below: italic grey ("indicative"); below that: not shown


def _bd_cell(c: Column, row: dict, anchor: str) -> Cell:
    if c.key == "submission":
        return Cell(row["submission"], "name", sort=row["submission"],
                    markup=html.escape(row["submission"]).replace("_", "_<wbr>"))
    if c.key.endswith("_bd") and row["submission"] == anchor:
        return Cell("anchor", "num", sort=0.0)
    if c.key.endswith("_chosen_bd"):
        return _chosen_bd_cell(c.key[: -len("_chosen_bd")], row)
    share = number(row.get(c.key.replace("_bd", "_overlap"))) if c.key.endswith("_bd") else None
    if share is not None and share < NO_OVERLAP:
        return Cell(DASH, "num", title=f"the curves overlap on {share:.0%} of their joint quality range: too little")
    cell = num_cell(c, row.get(c.key))
    if share is not None and share < LOW_OVERLAP and cell.text != DASH:
        cell.cls += " low"
        cell.title = f"the curves overlap on {share:.0%} of their joint quality range: indicative only"
    return cell


def _chosen_bd_cell(metric: str, row: dict) -> Cell:
    """'−12.3 % [−15.1, −9.8]': the BD-rate at the chosen points and its interval over images."""
    v, lo, hi = (number(row.get(f"{metric}_chosen_{k}")) for k in ("bd", "lo", "hi"))
    if v is None:
        return Cell(DASH, "num", title="fewer than two feasible targets in CLIC mode, no per-image results, or "
                                       "no overlap")
    text = f"{v:+.1f} %" + (f" [{lo:+.1f}, {hi:+.1f}]" if lo is not None and hi is not None else "")
    n = number(row.get("chosen_images"))
    return Cell(text, "num", sort=v,
                title=f"bootstrap over {int(n) if n else '?'} images, the chosen points held fixed")


def bd_html(rows: list[dict], anchor: str) -> str:
    """The BD-rate of every run against ``anchor``, best first (sortable)."""
    rows = sorted(rows, key=lambda r: (r["submission"] != anchor, number(r.get("msssim_db_bd")) is None,
                                       number(r.get("msssim_db_bd")) or 0.0))
    body = [Row([_bd_cell(c, r, anchor) for c in BD]) for r in rows]
    return table_html(BD, body, cls="bd", sticky=1)


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


def _cost(cost) -> str:
    """What the run cost (run.json ``cost``): wall time, coded jobs, estimates; — for runs
    written before it was recorded."""
    if not isinstance(cost, dict) or not is_num(cost.get("wall_s")):
        return DASH
    s = float(cost["wall_s"])
    text = f"{s / 60:.1f} min" if s >= 90 else f"{s:.0f} s"
    if is_num(cost.get("jobs_coded")):
        text += f" · {int(cost['jobs_coded']):,} coded"
    if is_num(cost.get("points_estimated")) and cost["points_estimated"]:
        text += f" · {int(cost['points_estimated']):,} estimated"
    return text


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
    held = sorted(set(rules(run.rows)))
    if len(held) > 1:   # the settings are the last invocation's; its rows may come from several
        parts.append("rows of " + ", ".join(held))
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
        "cost": _cost(m.get("cost")),
        "settings": " · ".join(parts),
        "errors": _listish(m.get("errors")),
        "notes": _listish(m.get("image_notes")),
        "warnings": warnings,
        "details": {k: [(str(a), _compact(b)) for a, b in v.items()] for k, v in details.items()},
    }


# ----------------------------------------------------------------------------- page
PLOTS = (("rd_msssim", "MS-SSIM (dB) vs. rate", "rate–distortion plot, MS-SSIM in dB against bpp"),
         ("rd_psnr", "PSNR vs. rate", "rate–distortion plot, PSNR against bpp"))
DOWNLOADS = (("leaderboard_csv", "one row per submission, target and mode"),
             ("per_image_csv", "the operating point chosen for every image"))


def data_uri(png: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(png).read_bytes()).decode("ascii")


def _env() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)),
                              autoescape=jinja2.select_autoescape(["html", "j2"], default=True),
                              trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined)


def png_size(png: Path) -> tuple[int, int]:
    """(width, height) from the PNG header: the page shows plots at most at their own size."""
    head = Path(png).read_bytes()[16:24]
    return int.from_bytes(head[:4], "big"), int.from_bytes(head[4:], "big")


def _plots(files: dict[str, Path]) -> list[dict]:
    """The fitted plots, each with its full-range twin (``<key>_full``) one click away."""
    out = []
    for key, title, alt in PLOTS:
        path, full = files.get(key), files.get(f"{key}_full")
        if path is not None and Path(path).is_file():
            width, height = png_size(path)
            out.append({"title": title, "alt": alt, "uri": data_uri(path), "width": width, "height": height,
                        "full": data_uri(full) if full is not None and Path(full).is_file() else ""})
    return out


def _sections(extra_sections: Iterable[tuple[str, str]]) -> list[dict]:
    out = []
    for i, (title, fragment) in enumerate(extra_sections):
        out.append({"title": str(title), "anchor": f"x-{slug(title) or f'section-{i}'}", "html": Markup(fragment)})
    return out


def render_page(dataset: str, runs: list[Run], skipped: list[Skipped], board: pd.DataFrame,
                files: dict[str, Path], extra_sections: Iterable[tuple[str, str]] = (),
                notes: Iterable[str] = (), per_image: pd.DataFrame | None = None,
                bd: tuple[str, float, list[dict]] | None = None) -> str:
    """The whole leaderboard page as HTML text. ``files``: the written outputs by name (CSV files
    are linked, plots embedded); ``bd``: (anchor, the curves' rate limit, the rows of
    :func:`bench.report.leaderboard.bd_summary`)."""
    dates = [d for d in (run.meta.get("date") for run in runs) if isinstance(d, str) and d]
    learned = {r.name: is_learned(r) for r in runs}
    targets = sorted({float(t) for r in runs for t in r.rows["target_bpp"].dropna()})
    xlim = fitted_xlim(runs, targets)
    explore = [{"metric": m, "title": SVG_METRICS[m][0], "svg": Markup(svg)} for m in SVG_METRICS
               if (svg := interactive_rd(runs, m, dataset, xlim, learned, targets))]
    return _env().get_template("leaderboard.html.j2").render(
        dataset=dataset,
        latest=short_date(max(dates)) if dates else DASH,
        built=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        headline=headline(board),
        modes=mode_sections(build_tables(board, per_image)),
        plots=_plots(files),
        explore=explore,
        explore_controls=Markup(plot_controls(runs, learned)) if explore else "",
        unmeasured=[SVG_METRICS[m][1] for m in ("ssimulacra2", "flip") if m not in {e["metric"] for e in explore}],
        bd={"anchor": bd[0], "max_bpp": f"{bd[1]:.2g}", "html": Markup(bd_html(bd[2], bd[0]))} if bd and bd[2]
        else None,
        downloads=[(Path(files[k]).name, what) for k, what in DOWNLOADS if k in files],
        runs=[run_summary(r) for r in runs],
        skipped=skipped,
        notes=list(notes),
        extra_sections=_sections(extra_sections),
    )


__all__ = ["render_page", "build_tables", "run_summary", "data_uri", "table_html", "Column", "Cell", "Row"]
