"""The studies' stored files as sections of the report page: real (sortable) HTML tables.

The studies (``bench/studies/``: model count, ablation, gating) and ``bench verify`` run codecs
and write CSV/JSON/markdown beside ``runs/``; this module only reads those files (the JSON for
the numbers, falling back to the CSV) and links them. The file names live here so that the
writers import them from the reader, not the other way round.
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from bench.results import column_value, read_csv

from .html import (
    DASH,
    Cell,
    Column,
    Row,
    fixed,
    generic,
    integer,
    number,
    percent,
    row_key,
    share,
    table_html,
    text_or_dash,
)
from .leaderboard import later_column

MODEL_COUNT_CSV = "model_count.csv"
OBJECTIVE_TEXT = {"msssim": "MS-SSIM", "psnr": "PSNR"}
VERIFY_CSV = "verify.csv"
ABLATION_PREFIX = "ablation"
GATING_PREFIX = "gating"
LAYERS_SUFFIX = "_layers"


@dataclass
class Study:
    """One section: its title, HTML, and the submissions it is about (to say when one has no run)."""

    title: str
    html: str
    subjects: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------- shared pieces
def files_html(paths: list[Path]) -> str:
    """Links to a study's stored files (relative: they sit next to the page)."""
    links = [f'<a href="{html.escape(p.name)}">{html.escape(p.name)}</a>' for p in paths if p.is_file()]
    return f'<p class="files">Files: {" · ".join(links)}</p>' if links else ""


def _siblings(csv_path: Path, *suffixes: str) -> list[Path]:
    return [csv_path] + [csv_path.with_name(csv_path.stem + s) for s in suffixes]


def _times(x: object) -> str:
    v = number(x)
    return DASH if v is None else f"{v:.2f}×"


def _signed(d: int) -> Callable[[object], str]:
    def f(x: object) -> str:
        v = number(x)
        return DASH if v is None else f"{v:+.{d}f}"
    return f


def _pair_names(stem: str, prefix: str) -> tuple[str, str]:
    a, _, b = stem.removeprefix(prefix + "_").partition("_vs_")
    return a, b


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def csv_html(csv_path: Path) -> str:
    """Any study CSV as a sortable table (every column, numbers in short form): the fallback when
    a study's JSON is missing or unreadable."""
    try:
        df = pd.read_csv(csv_path)
    except (OSError, ValueError) as e:
        return f'<p class="note">{html.escape(csv_path.name)} unreadable ({type(e).__name__}).</p>'
    cols = [Column(str(c), str(c).replace("_", " "), generic if pd.api.types.is_numeric_dtype(df[c]) else text_or_dash,
                   numeric=pd.api.types.is_numeric_dtype(df[c])) for c in df.columns]
    rows = [Row([Cell(c.fmt(r[c.key]), "num" if c.numeric else "", sort=number(r[c.key]) if c.numeric else None)
                 for c in cols]) for _, r in df.iterrows()]
    return table_html(cols, rows, sticky=1)


# ----------------------------------------------------------------------------- model count
def model_count_html(csv_path: Path) -> str:
    """The tables (one per submission and objective) as an HTML fragment for the dataset's report page."""
    parts = [_model_count_table(name, OBJECTIVE_TEXT.get(obj, obj), g)
             for name, obj, g in model_count_tables(pd.read_csv(csv_path))]
    return "".join(parts) + files_html(_siblings(csv_path))


def model_count_tables(df: pd.DataFrame) -> list[tuple[str, str, pd.DataFrame]]:
    """(submission, objective, its rows) per model-count table, MS-SSIM first; rows written
    before the objective column count as MS-SSIM ones (:data:`bench.results.LATER_COLUMNS`)."""
    df = df.assign(objective=later_column(df, "objective"))
    groups = df.groupby(["submission", "objective"], sort=True)
    return sorted(((str(s), str(o), g) for (s, o), g in groups), key=lambda t: (t[0], t[1] != "msssim", t[1]))


def _model_count_table(name: str, objective: str, df: pd.DataFrame) -> str:
    targets = sorted(df["target_bpp"].unique())
    head = "".join(f'<th class="num">{t:g} bpp</th>' for t in targets)
    body = []
    for k, g in df.groupby("models", sort=True):
        cells = []
        for t in targets:
            r = g[g["target_bpp"] == t].iloc[0]
            cells.append(f'<td class="num">{r["msssim"]:.4f} ({r["msssim_db"]:.2f} dB)<br>{r["psnr"]:.2f} dB · '
                         f'{r["bpp"]:.4f} bpp<span class="sub">{html.escape(str(r["models_used"]))}</span></td>'
                         if r["status"] == "ok" else "<td>infeasible</td>")
        body.append(f'<tr><td class="name s1">{k}</td>{"".join(cells)}</tr>')
    return (f"<p>{html.escape(name)}, {html.escape(objective)} objective: the best subset of <i>k</i> of its models "
            "at each target, the model chosen per image under the CLIC budget (MS-SSIM, MS-SSIM in dB; PSNR; bpp; "
            "models used). k = 1 is one "
            f'model for every image.</p><div class="scroll"><table class="data"><thead><tr><th class="s1">models'
            f'</th>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>')


# ----------------------------------------------------------------------------- ablation
def _ablation_columns(a: str, b: str) -> tuple[list[Column], list[tuple[str, int]]]:
    side = [("bpp", "bpp", fixed(4)), ("msssim", "MS-SSIM", fixed(5)), ("psnr", "PSNR dB", fixed(2))]
    cols = [Column("model", "model", numeric=False)]
    for s in ("a", "b"):
        cols += [Column(f"{s}_{k}", label, fmt) for k, label, fmt in side]
    cols += [Column("d_bpp_pct", "Δbpp", lambda x: DASH if number(x) is None else f"{number(x):+.1f} %",
                    title="bpp of the second against the first, per cent"),
             Column("d_msssim", "ΔMS-SSIM", _signed(5)), Column("d_psnr", "ΔPSNR dB", _signed(2))]
    return cols, [("", 1), (a, 3), (b, 3), (f"{b} − {a}", 3)]


def _bd_lines(res: dict, a: str, b: str) -> str:
    items = []
    for metric, label in (("msssim_db", "MS-SSIM (dB)"), ("psnr", "PSNR")):
        v = (res.get("bd") or {}).get(metric) or {}
        bd, overlap = number(v.get("bd_rate_pct")), number(v.get("overlap"))
        text = "not computable (too few points or no overlap)" if bd is None else \
            f"{bd:+.2f}% (overlap {overlap or 0:.0%} of the joint quality range)"
        items.append(f"<li>BD-rate of {html.escape(b)} against {html.escape(a)}, {label}: {text}</li>")
    return f"<ul>{''.join(items)}</ul>"


def ablation_html(csv_path: Path) -> Study:
    """An ablation's per-model pairs at each model's native rate and the BD-rates (from the JSON)."""
    res = _read_json(csv_path.with_suffix(".json"))
    a, b = (str(res.get("a")), str(res.get("b"))) if res else _pair_names(csv_path.stem, ABLATION_PREFIX)
    title = f"Ablation: {a} vs {b}"
    files = files_html(_siblings(csv_path, ".json", ".md"))
    if not res or not isinstance(res.get("pairs"), list):
        return Study(title, csv_html(csv_path) + files, [a, b])
    cols, groups = _ablation_columns(a, b)
    rows = [Row([Cell(str(p.get("model", DASH)), "name", sort=str(p.get("model", "")))]
                + [Cell(c.fmt(p.get(c.key)), "num", sort=number(p.get(c.key))) for c in cols[1:]])
            for p in res["pairs"]]
    intro = (f"<p>{html.escape(b)} against {html.escape(a)}, model by model at each model's native rate (every image "
             "of the set coded with that model), CLIC aggregates; both runs' rows at the targets are in the tables "
             "above.</p>")
    return Study(title, intro + table_html(cols, rows, sticky=1, groups=groups) + _bd_lines(res, a, b) + files, [a, b])


# ----------------------------------------------------------------------------- ablation ladder
LADDER_COLUMNS = [Column("rung", "rung", integer), Column("submission", "submission", numeric=False),
                  Column("bd_first_msssim_db", "MS-SSIM dB", percent, "min"),
                  Column("bd_first_psnr", "PSNR", percent, "min"),
                  Column("bd_ref_msssim_db", "MS-SSIM dB", percent, "min"),
                  Column("bd_ref_psnr", "PSNR", percent, "min"),
                  Column("params", "parameters", integer), Column("enc_kmac_px", "enc", fixed(1)),
                  Column("dec_kmac_px", "dec", fixed(1)), Column("enc_s", "enc", fixed(2)),
                  Column("dec_s", "dec", fixed(2))]
LADDER_MODEL_COLUMNS = [Column("rung", "rung", integer), Column("submission", "submission", numeric=False),
                        Column("model", "model", numeric=False), Column("bpp", "bpp", fixed(4)),
                        Column("msssim", "MS-SSIM", fixed(4)), Column("msssim_db", "MS-SSIM dB", fixed(2)),
                        Column("psnr", "PSNR dB", fixed(2)), Column("enc_s", "enc s", fixed(2)),
                        Column("enc_coder_s", "of it coder", fixed(2)), Column("dec_s", "dec s", fixed(2)),
                        Column("dec_coder_s", "of it coder", fixed(2))]


def _plain_rows(cols: list[Column], rows: list[dict]) -> list[Row]:
    return [Row([Cell(c.fmt(r.get(c.key)), "num", sort=number(r.get(c.key))) if c.numeric
                 else Cell(text_or_dash(r.get(c.key)), "name", sort=str(r.get(c.key, ""))) for c in cols])
            for r in rows]


def ladder_html(csv_path: Path) -> Study:
    """An ablation ladder (``bench ladder``): per rung the BD-rates against the first rung and the
    reference, parameters, MACs and seconds; the verdict; every model's native point."""
    res = _read_json(csv_path.with_suffix(".json"))
    name = csv_path.stem.removeprefix(ABLATION_PREFIX + "_")
    title = f"Ablation ladder: {name}"
    files = files_html(_siblings(csv_path, ".json", ".md"))
    if not res or not isinstance(res.get("summary"), list) or not isinstance(res.get("models"), list):
        return Study(title, csv_html(csv_path) + files)
    e = html.escape
    first, ref = e(str(res["rungs"][0])), e(str(res.get("reference")))
    summary = res["summary"]
    adds = "".join(f"<li><code>{e(str(r['submission']))}</code>: {e(str(r.get('adds', '')))}</li>"
                   for r in summary)
    sizes = ", ".join(sorted({str(r.get("image_size")) for r in summary}))
    uncounted = "; ".join(sorted({str(r["uncounted"]) for r in summary if r.get("uncounted")})) or "nothing"
    intro = (f"<p>Each rung adds one thing to the one before (same recipe, budget and warm starts):</p>"
             f"<ol>{adds}</ol><p>BD-rates over each submission's models at their native rates (every "
             f"image at that model), negative: fewer bits for the same quality. MACs on a {e(sizes)} image, serial "
             f"loops counted on both sides; not counted: {e(uncounted)}. Seconds per image, one thread.</p>")
    groups = [("", 2), (f"BD-rate vs {first}", 2), (f"BD-rate vs {ref}", 2), ("", 1), ("kMAC/px", 2),
              ("s per image", 2)]
    body = (intro + table_html(LADDER_COLUMNS, _plain_rows(LADDER_COLUMNS, summary), sticky=2, groups=groups)
            + f"<p><b>{e(str(res.get('verdict', '')))}</b></p>"
            + f"<details><summary>Every model at its native rate ({len(res['models'])})</summary>"
            + table_html(LADDER_MODEL_COLUMNS, _plain_rows(LADDER_MODEL_COLUMNS, res["models"]), sticky=3)
            + "</details>" + files)
    return Study(title, body, [str(r["submission"]) for r in summary] + [str(res.get("reference"))])


# ----------------------------------------------------------------------------- gating
GATING_GROUPS = [("", 1), ("bpp", 2), ("PSNR dB", 3), ("MS-SSIM", 3), ("MAC reduction", 3), ("kMAC/px dense", 2),
                 ("kMAC/px gated", 2), ("decode s", 3), ("masked vs gathered: values differing", 2)]


def _gating_columns() -> list[Column]:
    f2, f4, x = fixed(2), fixed(4), {"extra": True}
    return [Column("lmbda", "λ", generic),
            Column("dense_bpp", "dense", f4), Column("gated_bpp", "gated", f4),
            Column("dense_psnr", "dense", f2), Column("gated_psnr", "gated", f2),
            Column("psnr_drop_pct", "drop", lambda v: DASH if number(v) is None else f"{number(v):.2f} %", "min"),
            Column("dense_msssim", "dense", f4), Column("gated_msssim", "gated", f4),
            Column("msssim_drop", "drop", _signed(4), "min"),
            Column("enc_reduction", "enc", _times, "max"), Column("dec_reduction", "dec", _times, "max"),
            Column("total_reduction", "all", _times, "max", title="dense MACs / gated effective MACs, gates included"),
            Column("dense_enc_kmac_px", "enc", f2, **x), Column("dense_dec_kmac_px", "dec", f2, **x),
            Column("gated_enc_kmac_px", "enc", f2, **x), Column("gated_dec_kmac_px", "dec", f2, **x),
            Column("dec_s_masked", "masked", fixed(1), **x), Column("dec_s_gathered", "gathered", fixed(1), **x),
            Column("dec_speedup", "speed-up", _times, **x),
            Column("values_differing", "whole decode", str, **x, title="8-bit values differing over all images"),
            Column("synth_values_differing", "g_s alone", str, **x, title="g_s run both ways on the same ŷ")]


def _gating_cell(c: Column, r: dict) -> Cell:
    if c.key.endswith("values_differing"):
        n, top = number(r.get(c.key)), number(r.get(c.key.replace("values_differing", "max_abs_diff")))
        text = DASH if n is None else ("none" if n == 0 else f"{int(n):,} (by ≤ {int(top or 0)})")
        return Cell(text, "num", sort=n)
    return Cell(c.fmt(r.get(c.key)), "num", sort=number(r.get(c.key)))


def _gating_summary(s: dict) -> str:
    bd = s.get("bd_rate_pct") or {}
    items = [f"BD-rate of gated against dense: PSNR {percent(bd.get('psnr'))}, MS-SSIM (dB) "
             f"{percent(bd.get('msssim_db'))}"]
    if number(s.get("params")) is not None:
        items.append(f"Weights never used on this set (any image, any λ): {integer(s.get('weights_never_used'))} of "
                     f"{integer(s.get('params'))} parameters "
                     f"({fixed(1)(s.get('storage_saving_pct'))} % storage saving)")
    if "claim_2x_at_1pct" in s:
        items.append("The seed's claim (≥ 2× fewer MACs at ≤ 1 % PSNR drop, at every λ): "
                     f"{'met' if s['claim_2x_at_1pct'] else 'not met'}")
    return "<ul>" + "".join(f"<li>{html.escape(i)}</li>" for i in items) + "</ul>"


def _gating_method(s: dict) -> str:
    e = html.escape
    return (f"<details><summary>How this was measured</summary><p>Each λ: every image coded by both (real files, "
            "decoded back); CLIC aggregates. Drops are dense − gated; MAC reduction = dense MACs / gated effective "
            "MACs (the gates' own work included). Decode time: the gated model on the same files, inactive channels "
            f"multiplied by zero (masked) vs gathered away (cpu, {e(str(s.get('timing_threads', '?')))} threads; the "
            f"files were coded on {e(str(s.get('device', '?')))}). The codec always gathers; the masked path sums the "
            "same products in another order, so 8-bit values may round the other way; the last columns count the "
            "values that differ over all images, for whole decodes and for g_s alone on the same ŷ.</p></details>")


LAYER_COLUMNS = [Column("layer", "layer", numeric=False), Column("in_channels", "C_in", integer),
                 Column("active_min_lmbda", "active, λ min", share), Column("active_mid_lmbda", "λ mid", share),
                 Column("active_max_lmbda", "λ max", share), Column("active_mean", "mean", share),
                 Column("never_active", "channels never active", integer),
                 Column("weights_never_used", "weights never used", integer), Column("weights", "of", integer)]


def _layers_html(layers: list[dict]) -> str:
    rows = [Row([Cell(text_or_dash(r.get("layer")), "mono", sort=str(r.get("layer", "")))]
                + [Cell(c.fmt(r.get(c.key)), "num", sort=number(r.get(c.key))) for c in LAYER_COLUMNS[1:]])
            for r in layers]
    return (f"<details><summary>Per layer: active input channels and weights never used ({len(layers)} layers)"
            f"</summary>{table_html(LAYER_COLUMNS, rows, sticky=1)}</details>")


def _span_text(v: object, d: int, unit: str) -> str:
    if not isinstance(v, (list, tuple)) or len(v) != 2 or number(v[0]) is None or number(v[1]) is None:
        return DASH
    return f"{number(v[0]):.{d}f}–{number(v[1]):.{d}f}{unit}"


def _seed_html(cmp: object) -> str:
    """The seed's ScaleHyperprior row beside ours (same columns) and one verdict per claim."""
    if not isinstance(cmp, dict) or not all(isinstance(cmp.get(k), dict) for k in ("seed", "ours")):
        return ""
    e = html.escape
    head = "".join(f"<th>{h}</th>" for h in ("row", "distortion", "qualities", "MAC reduction, all", "encoder",
                                              "decoder", "PSNR drop", "sparsity", "storage saving"))
    body = "".join(
        f"<tr><td>{e(str(r.get('source', '')))}</td><td>{e(str(r.get('distortion', '')))}</td>"
        f'<td class="num">{integer(r.get("qualities"))}</td>'
        f'<td class="num">{_span_text(r.get("reduction_all"), 2, "×")}</td>'
        f'<td class="num">{_span_text(r.get("reduction_enc"), 2, "×")}</td>'
        f'<td class="num">{_span_text(r.get("reduction_dec"), 2, "×")}</td>'
        f'<td class="num">{_span_text(r.get("psnr_drop_pct"), 2, " %")}</td>'
        f'<td class="num">{fixed(2)(r.get("sparsity"))}</td>'
        f'<td class="num">{fixed(0)(r.get("storage_saving_pct"))} %</td></tr>'
        for r in (cmp["seed"], cmp["ours"]))
    verdicts = "".join(f"<li>{e(str(v.get('text', '')))}: <b>{'met' if v.get('met') else 'not met'}</b></li>"
                       for v in cmp.get("verdicts") or [] if isinstance(v, dict))
    return ("<h3>Beside the seed's ScaleHyperprior row</h3>"
            f"<div class=\"scroll\"><table class=\"data\"><thead><tr>{head}"
            f"</tr></thead><tbody>{body}</tbody></table></div><ul>{verdicts}</ul>")


def gating_html(csv_path: Path) -> Study:
    """A gated model against its dense twin per λ (rate, quality, MACs, decode time), the summary
    and the per-layer activity (from the JSON)."""
    res = _read_json(csv_path.with_suffix(".json"))
    s = (res or {}).get("summary") or {}
    gated, dense = (str(s["gated"]), str(s["dense"])) if "gated" in s and "dense" in s else \
        _pair_names(csv_path.stem, GATING_PREFIX)
    title = f"Channel gating: {gated} vs {dense}"
    files = files_html(_siblings(csv_path, LAYERS_SUFFIX + ".csv", ".json", ".md"))
    if not res or not isinstance(res.get("rows"), list):
        return Study(title, csv_html(csv_path) + files, [gated, dense])
    cols = _gating_columns()
    rows = [Row([_gating_cell(c, r) for c in cols]) for r in res["rows"]]
    intro = (f"<p>{html.escape(gated)} (gated) against {html.escape(dense)} (dense) at {len(res['rows'])} λ on "
             f"{html.escape(str(s.get('images', '?')))} images.</p>")
    layers = _layers_html(res["layers"]) if isinstance(res.get("layers"), list) and res["layers"] else ""
    return Study(title, intro + _gating_summary(s) + table_html(cols, rows, sticky=1, groups=GATING_GROUPS)
                 + _gating_method(s) + _seed_html(res.get("seed")) + layers + files, [gated, dense])


# ----------------------------------------------------------------------------- verify
VERIFY_COLUMNS = [Column("submission", "submission", numeric=False), Column("mode", "mode", numeric=False),
                  Column("objective", "objective", numeric=False),
                  Column("target_bpp", "target", generic), Column("files", "files", str),
                  Column("bytes", "bytes match", numeric=False), Column("psnr_diff_db", "|ΔPSNR| dB", fixed(4)),
                  Column("bit_identical", "bit-identical", numeric=False),
                  Column("device", "run → verify device", numeric=False)]


def _verify_row(r: dict) -> Row:
    run, again = r.get("run_device") or "", r.get("verify_device") or ""
    diff = number(r.get("psnr_diff_db"))
    return Row([Cell(r["submission"], "name"), Cell(r.get("mode") or DASH), Cell(column_value(r, "objective")),
                Cell(r["target_bpp"], "num", sort=number(r["target_bpp"])),
                Cell(f"{r['files']}/{r['images']}", "num", sort=number(r["files"])),
                Cell("yes" if r["bytes_on_disk"] == r["bytes_reported"] else "NO"),
                Cell(fixed(4)(diff) if diff is not None else "no files", "num", sort=diff),
                Cell(r.get("bit_identical") or "not recorded"),
                Cell(run if run == again else f"{run or DASH} → {again or DASH}", "device")])


def _coverage(rows: list[dict], board: pd.DataFrame | None) -> str:
    """Which ok rows of the leaderboard were (not) decoded again: the table says only what it holds."""
    checked = {row_key(r) for r in rows}
    if board is None or board.empty:
        return f"{len(checked)} rows"
    keys = {row_key(r) for _, r in board[board["status"].eq("ok")].iterrows()}
    missing = sorted({k[0] for k in keys - checked})
    text = f"{len(keys & checked)} of the {len(keys)} ok rows on the leaderboard"
    return text + (f" (not yet checked: {', '.join(missing)})" if missing else " (all of them)")


def verify_html(csv_path: Path, board: pd.DataFrame | None = None) -> str:
    """verify.csv as an HTML fragment for the dataset's report page."""
    rows = read_csv(csv_path)
    intro = (f"<p>{html.escape(_coverage(rows, board))} decoded again from their files by "
             "<code>python -m bench verify</code>, in a new process: file count, bytes, PSNR difference to the "
             "reported value, and decoded images bit-identical to those of the run (fingerprints recorded at run "
             "time).</p>")
    return intro + table_html(VERIFY_COLUMNS, [_verify_row(r) for r in rows], sticky=1) + files_html([csv_path])


# ----------------------------------------------------------------------------- all of them
def _no_run_note(subjects: list[str], runs: set[str], skipped: dict[str, str]) -> str:
    missing = [s for s in dict.fromkeys(subjects) if s not in runs]
    if not missing:
        return ""
    why = [f"<code>{html.escape(s)}</code> ({html.escape(skipped[s]) if s in skipped else 'no run folder'})"
           for s in missing]
    return f'<p class="note">Not on the leaderboard: {", ".join(why)}.</p>'


def study_sections(dataset_dir: Path, runs: set[str], skipped: dict[str, str],
                   board: pd.DataFrame | None = None) -> tuple[list[tuple[str, str]], set[str]]:
    """Every stored study as (title, HTML), and the skipped run folders they already account for
    (a study about a submission whose run folder is incomplete says so once, in its section)."""
    studies: list[Study] = []
    if (dataset_dir / MODEL_COUNT_CSV).exists():
        df_sub = pd.read_csv(dataset_dir / MODEL_COUNT_CSV, usecols=["submission"])["submission"]
        studies.append(Study("Models per image", model_count_html(dataset_dir / MODEL_COUNT_CSV),
                             [str(x) for x in df_sub.dropna().unique()]))
    for path in sorted(dataset_dir.glob(f"{ABLATION_PREFIX}_*.csv")):
        studies.append(ablation_html(path) if "_vs_" in path.stem else ladder_html(path))
    for path in sorted(dataset_dir.glob(f"{GATING_PREFIX}_*_vs_*.csv")):
        if not path.stem.endswith(LAYERS_SUFFIX):
            studies.append(gating_html(path))
    if (dataset_dir / VERIFY_CSV).exists():
        studies.append(Study("Decoded again from the files", verify_html(dataset_dir / VERIFY_CSV, board)))
    named = {s for st in studies for s in st.subjects if s in skipped}
    return [(st.title, _no_run_note(st.subjects, runs, skipped) + st.html) for st in studies], named


__all__ = ["MODEL_COUNT_CSV", "OBJECTIVE_TEXT", "VERIFY_CSV", "Study", "ablation_html", "csv_html", "gating_html",
           "ladder_html", "model_count_html", "model_count_tables", "study_sections", "verify_html"]
