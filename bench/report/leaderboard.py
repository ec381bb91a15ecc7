"""Reading a dataset's stored runs and combining them into the leaderboard tables.

``reports/<dataset>/runs/<submission>/`` holds ``run.json``, ``rows.csv``, ``per_image.csv``
and ``rd.csv`` (see :mod:`bench.run`). A run needs ``run.json`` and a readable ``rows.csv``
with at least one row to take part; anything less (a killed or half-written run) is skipped
with the reason, never raised. A missing or unreadable ``per_image.csv`` / ``rd.csv`` only
costs that part (noted on the run). Columns this module does not know (learned codecs add
``params``, ``decoder_bytes``, ``kmac_per_px``, ...) are carried through untouched.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from bench.atomic import atomic_write
from bench.results import LATER_COLUMNS, PER_IMAGE_COLUMNS, ROW_COLUMNS

from .confidence import RowImages, bd_interval, compare, interval, row_images

log = logging.getLogger(__name__)

# Read as text whatever their content looks like (a commit of digits only, an image id "0001", ...).
TEXT_COLUMNS = ["submission", "dataset", "mode", "status", "device", "bitstreams", "note", "date", "commit",
                "image_id", "point", "file"]
INTEGER_COLUMNS = ["images", "bytes", "budget_bytes", "params", "decoder_bytes", "models_used"]
NUMERIC_COLUMNS = ["target_bpp", "images", "bytes", "budget_bytes", "bpp", "psnr", "msssim", "msssim_db",
                   "psnr_mean", "msssim_mean", "enc_s", "dec_s", "lowest_bpp"]


@dataclass
class Run:
    """One submission's stored results on the dataset."""

    folder: Path
    name: str
    meta: dict
    rows: pd.DataFrame
    per_image: pd.DataFrame | None = None
    rd: pd.DataFrame | None = None
    warnings: list[str] = field(default_factory=list)


@dataclass
class Skipped:
    """A run folder left out of the report, and why."""

    folder: Path
    reason: str

    @property
    def name(self) -> str:
        return self.folder.name


def msssim_to_db(x):
    """−10·log10(1 − MS-SSIM), elementwise (inf at 1, NaN for NaN)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return -10.0 * np.log10(1.0 - np.asarray(x, dtype=float))


def read_table(path: Path, required: tuple[str, ...] = ()) -> pd.DataFrame:
    """A results CSV with text columns kept as text and known numeric columns coerced.

    Raises ``ValueError`` (with a readable reason) when the file is missing, empty,
    unparsable or lacks a required column.
    """
    if not path.is_file():
        raise ValueError(f"{path.name} missing")
    try:
        df = pd.read_csv(path, dtype={c: str for c in TEXT_COLUMNS}, skipinitialspace=True)
    except pd.errors.EmptyDataError:
        raise ValueError(f"{path.name} is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError, OSError) as e:
        raise ValueError(f"{path.name} unreadable ({type(e).__name__}: {str(e).strip()[:120]})") from None
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise ValueError(f"{path.name} lacks column(s) {', '.join(missing)}")
    for c in NUMERIC_COLUMNS:
        if c in df.columns:
            df[c] = pd.to_numeric(df[c], errors="coerce")
    for c in INTEGER_COLUMNS:   # nullable integers: "88441", not "88441.0", beside empty cells
        if c in df.columns:
            df[c] = pd.to_numeric(df[c], errors="coerce").round().astype("Int64")
    if "msssim" in df.columns and "msssim_db" not in df.columns:
        df["msssim_db"] = msssim_to_db(df["msssim"])
    return df


def load_run(folder: Path) -> Run:
    """One run folder; ``ValueError`` when it cannot take part in the report."""
    meta_path = folder / "run.json"
    if not meta_path.is_file():
        raise ValueError("run.json missing (unfinished run?)")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"run.json unreadable ({type(e).__name__})") from None
    if not isinstance(meta, dict):
        raise ValueError("run.json is not an object")
    name = str(meta.get("submission") or folder.name)

    rows = read_table(folder / "rows.csv", required=("target_bpp",))
    if rows.empty:
        raise ValueError("rows.csv has no rows")
    if "submission" not in rows.columns:
        rows.insert(0, "submission", name)
    rows["submission"] = rows["submission"].fillna(name)
    if "status" not in rows.columns:
        rows["status"] = "ok"
    rows["status"] = rows["status"].fillna("ok").str.strip().str.lower()
    if rows["target_bpp"].isna().any():
        raise ValueError("rows.csv has rows without a numeric target_bpp (half-written?)")

    run = Run(folder=folder, name=name, meta=meta, rows=_with_later_columns(rows))
    for attr, fname, req in (("per_image", "per_image.csv", ("bpp",)), ("rd", "rd.csv", ("bpp",))):
        try:
            df = read_table(folder / fname, required=req)
        except ValueError as e:
            run.warnings.append(f"{e}; left out")
            continue
        if "submission" not in df.columns:
            df.insert(0, "submission", name)
        df["submission"] = df["submission"].fillna(name)
        setattr(run, attr, _with_later_columns(df) if attr == "per_image" else df)
    return run


def later_column(df: pd.DataFrame, col: str) -> pd.Series:
    """``df[col]`` as text, with what files written before the column meant by it (LATER_COLUMNS)."""
    value = LATER_COLUMNS[col]
    return df[col].fillna(value).astype(str) if col in df.columns else pd.Series(value, index=df.index)


def _with_later_columns(df: pd.DataFrame) -> pd.DataFrame:
    for col in LATER_COLUMNS:
        df[col] = later_column(df, col)
    return df


def load_runs(dataset_dir: Path) -> tuple[list[Run], list[Skipped]]:
    """All usable runs of ``dataset_dir/runs`` (sorted by name) and the skipped folders."""
    runs, skipped = [], []
    runs_dir = Path(dataset_dir) / "runs"
    if not runs_dir.is_dir():
        return runs, skipped
    for folder in sorted(p for p in runs_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        try:
            run = load_run(folder)
        except ValueError as e:
            log.warning("report: skipping run %s: %s", folder.name, e)
            skipped.append(Skipped(folder, str(e)))
            continue
        except Exception as e:  # never let one odd folder sink the report
            log.warning("report: skipping run %s: unexpected %r", folder.name, e)
            skipped.append(Skipped(folder, f"unexpected error: {type(e).__name__}: {e}"))
            continue
        for w in run.warnings:
            log.warning("report: run %s: %s", run.name, w)
        runs.append(run)
    return runs, skipped


def _ordered_columns(frames: list[pd.DataFrame], known: list[str]) -> list[str]:
    seen = list(dict.fromkeys(c for f in frames for c in f.columns))
    return [c for c in known if c in seen] + [c for c in seen if c not in known]


def concat(frames: list[pd.DataFrame], known: list[str]) -> pd.DataFrame:
    """Frames stacked; known columns first in their order, then any others as they appear."""
    frames = [f for f in frames if f is not None and not f.empty]
    if not frames:
        return pd.DataFrame(columns=known)
    cols = _ordered_columns(frames, known)
    return pd.concat([f.reindex(columns=[c for c in cols if c in f.columns]) for f in frames],
                     ignore_index=True, sort=False).reindex(columns=cols)


def sort_leaderboard(df: pd.DataFrame) -> pd.DataFrame:
    """By target, then feasible rows by MS-SSIM descending (NaN after), infeasible rows last."""
    if df.empty:
        return df.reset_index(drop=True)
    status = df["status"].fillna("ok").astype(str).str.lower() if "status" in df else pd.Series("ok", index=df.index)
    msssim = df["msssim"] if "msssim" in df else pd.Series(np.nan, index=df.index)
    key = pd.DataFrame({
        "t": pd.to_numeric(df["target_bpp"], errors="coerce"),
        "infeasible": status.ne("ok").astype(int),
        "m": -pd.to_numeric(msssim, errors="coerce"),
        "s": df["submission"].astype(str) if "submission" in df else "",
    }, index=df.index)
    order = key.sort_values(["t", "infeasible", "m", "s"], na_position="last", kind="mergesort").index
    return df.loc[order].reset_index(drop=True)


# Columns every leaderboard.csv / per_image.csv has, empty for rows written before them.
ALWAYS = ("ssimulacra2", "flip")


def _always(df: pd.DataFrame, known: list[str]) -> pd.DataFrame:
    """``df`` with :data:`ALWAYS` present (empty where no row has them), in ``known``'s order."""
    if df.empty:
        return df
    for c in ALWAYS:
        if c not in df.columns:
            df[c] = np.nan
    return df[_ordered_columns([df], known)]


def leaderboard_table(runs: list[Run]) -> pd.DataFrame:
    """Every run's rows in leaderboard order, with their confidence columns (:func:`add_confidence`)."""
    return add_confidence(_always(sort_leaderboard(concat([r.rows for r in runs], ROW_COLUMNS)), ROW_COLUMNS), runs)


def per_image_table(runs: list[Run]) -> pd.DataFrame:
    df = concat([r.per_image for r in runs], PER_IMAGE_COLUMNS)
    if df.empty:
        return df
    df = _always(df, PER_IMAGE_COLUMNS)
    keys = [c for c in ("target_bpp", "submission", "image_id") if c in df.columns]
    return df.sort_values(keys, kind="mergesort", na_position="last").reset_index(drop=True)


def write_csv_atomic(df: pd.DataFrame, path: Path) -> Path:
    """``df`` to ``path`` through a temporary file and a rename (readers never see half a file)."""
    return atomic_write(path, lambda tmp: df.to_csv(tmp, index=False, lineterminator="\n"))


def is_num(x) -> bool:
    """A real, finite-or-infinite number (not NaN, not None, not text)."""
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool) and not math.isnan(x)


# ----------------------------------------------------------------------------- modes and BD-rate
PRIMARY_MODE = "clic"
PRIMARY_OBJECTIVE = LATER_COLUMNS["objective"]    # MS-SSIM, CLIC's ranking metric
LEARNED_COLUMNS = ("params", "decoder_bytes", "dec_kmac_px")


def estimated_points(rd: pd.DataFrame) -> int:
    """Points of an rd.csv curve whose bytes are (partly) the codec's estimates (a
    ``--probe estimate`` sweep); 0 for curves from coded files and for files older than the column."""
    if "estimated" not in rd.columns:
        return 0
    return int((pd.to_numeric(rd["estimated"], errors="coerce").fillna(0) > 0).sum())


def rules(df: pd.DataFrame) -> pd.Series:
    """Each row's rate-control rule: its mode, and its objective where that is not MS-SSIM
    (``clic``, ``clic · psnr``). Rows of different rules answer different questions."""
    mode = df["mode"].fillna("").astype(str) if "mode" in df.columns else pd.Series("", index=df.index)
    objective = later_column(df, "objective")
    return mode.where(objective.eq(PRIMARY_OBJECTIVE), mode + " · " + objective)


def rule_order(board: pd.DataFrame) -> list[str]:
    """The rules on the board, the CLIC one first: each gets its own tables (they are never
    ranked together)."""
    if board.empty:
        return []
    counts = rules(board).value_counts()
    return sorted(counts.index, key=lambda m: (m != PRIMARY_MODE, -counts[m], m))


def is_learned(run: Run) -> bool:
    """Learned codecs report their parameters, decoder size or MACs; classical ones do not."""
    return any(c in run.rows.columns and run.rows[c].notna().any() for c in LEARNED_COLUMNS)


def default_anchor(runs: list[Run]) -> str | None:
    """The best classical codec: highest MS-SSIM at the largest target where one is feasible."""
    frames = [r.rows.assign(_run=r.name) for r in runs if not is_learned(r) and r.rd is not None]
    if not frames:
        return None
    df = pd.concat(frames, ignore_index=True)
    if "msssim" not in df.columns:
        return None
    df = df[df["status"].eq("ok") & df["msssim"].notna()]
    primary = df[rules(df).eq(PRIMARY_MODE)]
    df = primary if not primary.empty else df
    if df.empty:
        return None
    top = df[df["target_bpp"] == df["target_bpp"].max()]
    return str(top.sort_values(["msssim", "_run"], ascending=[False, True]).iloc[0]["_run"])


def _bd(base: list, cur: list) -> tuple[float, float]:
    """(BD-rate %, overlap share); NaN when the curves are too short or do not overlap."""
    from bench.rd import bd_rate, overlap_share

    if len(base) < 2 or len(cur) < 2:
        return math.nan, 0.0
    share = overlap_share(base, cur)
    return (bd_rate(base, cur) if share > 0 else math.nan), share


def _up_to(rd: list[dict], max_bpp: float | None) -> list[dict]:
    """The curve's points up to ``max_bpp`` and the first one past it (so it spans the range)."""
    if max_bpp is None:
        return rd
    pts = sorted((r for r in rd if is_num(r.get("bpp"))), key=lambda r: r["bpp"])
    return [r for r in pts if r["bpp"] <= max_bpp] + [r for r in pts if r["bpp"] > max_bpp][:1]


def bd_summary(runs: list[Run], anchor: str, max_bpp: float | None = None,
               metrics: tuple[str, ...] = ("msssim_db", "psnr")) -> list[dict]:
    """Every run's BD-rate against ``anchor`` from its rd.csv curve (up to ``max_bpp``: the
    leaderboard's rates, not the far end of the curves), per metric:
    ``{"submission", "points", "<metric>_bd", "<metric>_overlap"}`` (the anchor's row included)."""
    from bench.rd import usable_curve

    records = {r.name: _up_to(r.rd.to_dict("records"), max_bpp) for r in runs if r.rd is not None}
    if anchor not in records:
        return []
    chosen = _chosen_curves(runs)
    out = []
    for name, rd in records.items():
        row: dict = {"submission": name, "points": len(rd), "estimated": estimated_points(pd.DataFrame(rd))}
        for m in metrics:
            row[f"{m}_bd"], row[f"{m}_overlap"] = _bd(usable_curve(records[anchor], m), usable_curve(rd, m))
            # the same at the rows' chosen points, with a 95 % bootstrap interval over images
            (row[f"{m}_chosen_bd"], row[f"{m}_chosen_lo"], row[f"{m}_chosen_hi"],
             row["chosen_images"]) = bd_interval(chosen.get(anchor, {}), chosen.get(name, {}), m)
        out.append(row)
    return out


# ----------------------------------------------------------------------------- confidence
# What the report adds to leaderboard.csv from per_image.csv (bench/report/confidence.py): 95 %
# bootstrap intervals of the set values over images, and each feasible row against the next
# feasible row of its table (MS-SSIM, paired over the same images).
CONFIDENCE_COLUMNS = ["msssim_ci_lo", "msssim_ci_hi", "psnr_ci_lo", "psnr_ci_hi", "next", "next_wins",
                      "next_losses", "next_images", "next_msssim_diff", "next_diff_lo", "next_diff_hi",
                      "next_significant"]


def _row_images(runs: list[Run]) -> dict[tuple[str, str, float], RowImages]:
    """Per-image values of every row, by (submission, rule, target)."""
    out: dict[tuple[str, str, float], RowImages] = {}
    for run in runs:
        df = run.per_image
        if df is None or df.empty or "target_bpp" not in df.columns:
            continue
        df = df.assign(_rule=rules(df), _t=pd.to_numeric(df["target_bpp"], errors="coerce").round(6))
        for (rule, target), grp in df.groupby(["_rule", "_t"], sort=False):
            r = row_images(grp)
            if r is not None:
                out[(run.name, str(rule), float(target))] = r
    return out


def _chosen_curves(runs: list[Run]) -> dict[str, dict[float, RowImages]]:
    """Each run's feasible rows of the primary rule (CLIC mode, MS-SSIM), by target: the points a
    BD-rate interval resamples."""
    out: dict[str, dict[float, RowImages]] = {}
    for (name, rule, target), r in _row_images(runs).items():
        if rule == PRIMARY_MODE:
            out.setdefault(name, {})[target] = r
    ok = {(r.name, float(round(t, 6))) for r in runs for t, st, rule in
          zip(r.rows["target_bpp"], r.rows["status"], rules(r.rows)) if st == "ok" and rule == PRIMARY_MODE}
    return {n: {t: v for t, v in c.items() if (n, t) in ok} for n, c in out.items()}


def add_confidence(board: pd.DataFrame, runs: list[Run]) -> pd.DataFrame:
    """``board`` (in leaderboard order) with :data:`CONFIDENCE_COLUMNS`: empty where a row has no
    per-image results (older runs, infeasible rows) or no feasible row after it."""
    if board.empty:
        return board
    images = _row_images(runs)
    board = board.copy()
    for col in CONFIDENCE_COLUMNS:
        board[col] = pd.Series([None] * len(board), index=board.index, dtype=object)
    rule = rules(board)
    target = pd.to_numeric(board["target_bpp"], errors="coerce").round(6)
    for _, grp in board.groupby([rule, target], sort=False):
        feasible = [i for i in grp.index if str(board.at[i, "status"]) == "ok"]
        key = {i: (str(board.at[i, "submission"]), str(rule[i]), float(target[i])) for i in feasible}
        for i in feasible:
            r = images.get(key[i])
            if r is not None:
                for m in ("msssim", "psnr"):
                    board.at[i, f"{m}_ci_lo"], board.at[i, f"{m}_ci_hi"] = interval(r, m)
        for upper, lower in itertools.pairwise(feasible):
            a, b = images.get(key[upper]), images.get(key[lower])
            c = compare(a, b, "msssim") if a is not None and b is not None else None
            if c is not None:
                board.loc[upper, ["next", "next_wins", "next_losses", "next_images", "next_msssim_diff",
                                  "next_diff_lo", "next_diff_hi", "next_significant"]] = \
                    [key[lower][0], c.wins, c.losses, c.images, c.diff, c.lo, c.hi, c.significant]
    return board
