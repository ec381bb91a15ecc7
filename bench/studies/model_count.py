"""How much does choosing the model per image buy? The seeds' "one / two / four models" table.

A multi-model submission (discrete points, one model each) is rate-controlled again with only
k of its models allowed, for every subset of size k, and the best subset at each target is
reported. k = 1 is the single-λ setting (one model for every image); larger k lets the
allocator pick per image. All encodes come from the run's cache: the table costs no coding
when ``bench run`` has already been done for the submission (it encodes what is missing).

Outputs ``reports/<dataset>/model_count.csv`` and ``model_count.md``, one table per submission
and objective (a PSNR-objective table sits beside the MS-SSIM one); the HTML report
(:mod:`bench.report.studies`) shows the tables when the CSV is there.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from itertools import combinations
from pathlib import Path

import pandas as pd

from bench.metrics import aggregate
from bench.paths import REPORTS_DIR, SUBMISSIONS_DIR
from bench.ratecontrol import rate_control
from bench.report.studies import MODEL_COUNT_CSV, OBJECTIVE_TEXT, model_count_tables
from bench.runner import Runner
from bench.submission import get_submission

COLUMNS = ["submission", "dataset", "objective", "target_bpp", "models", "subset", "status", "bpp", "msssim",
           "msssim_db", "psnr", "models_used"]


def model_count_table(submission: str, dataset: str, targets: Sequence[float], counts: Sequence[int] = (1, 2, 4),
                      objective: str = "msssim", reports_dir: Path = REPORTS_DIR, log: Callable = print,
                      submissions_root: Path = SUBMISSIONS_DIR) -> pd.DataFrame:
    """Best CLIC-mode result per target with k models allowed, for each k in ``counts``."""
    from bench.data import open_dataset
    from bench.run import load_images

    sub = get_submission(submission, Path(submissions_root))
    if sub.points.kind != "discrete":
        raise ValueError(f"{submission}: the model-count table needs discrete operating points (one per model)")
    all_points = list(sub.points.points)
    bad = [k for k in counts if not 1 <= k <= len(all_points)]
    if bad:
        raise ValueError(f"{submission} has {len(all_points)} models; counts {bad} are out of range")
    ds = open_dataset(dataset)
    images, _ = load_images(ds, log)
    runner = Runner(sub, images, Path(reports_dir) / ds.name / "runs" / sub.name, progress=False, log=log)
    pixels = {im.id: im.num_pixels for im in images}
    rows = []
    for k in counts:
        best: dict[float, dict] = {}
        for subset in combinations(all_points, k):
            points = replace(sub.points, points=tuple(subset))
            for sel in rate_control(pixels, points, runner.evaluate, targets, mode="clic", objective=objective):
                row = {"submission": sub.name, "dataset": ds.name, "objective": objective,
                       "target_bpp": sel.target_bpp, "models": k,
                       "subset": " ".join(str(p) for p in subset), "status": sel.status}
                if sel.status == "ok":
                    agg = aggregate(list(sel.chosen.values()))
                    used = sorted({str(r["point"]) for r in sel.chosen.values()}, key=row["subset"].split().index)
                    row |= {"bpp": agg.bpp, "msssim": agg.msssim, "msssim_db": agg.msssim_db, "psnr": agg.psnr,
                            "models_used": " ".join(used)}
                cur = best.get(sel.target_bpp)
                if cur is None or _better(row, cur, objective):
                    best[sel.target_bpp] = row
        rows += [best[t] for t in targets]
    return pd.DataFrame(rows, columns=COLUMNS)


def _better(a: dict, b: dict, objective: str) -> bool:
    if a["status"] != "ok":
        return False
    return b["status"] != "ok" or a[objective] > b[objective]


def to_markdown(df: pd.DataFrame) -> str:
    """The seed-style table: one row per model count, MS-SSIM / PSNR / bpp per target."""
    targets = sorted(df["target_bpp"].unique())
    head = "| models | " + " | ".join(f"{t:g} bpp: MS-SSIM (dB) / PSNR / bpp" for t in targets) + " |"
    lines = [head, "|" + "---|" * (len(targets) + 1)]
    for k, g in df.groupby("models", sort=True):
        cells = []
        for t in targets:
            r = g[g["target_bpp"] == t].iloc[0]
            cells.append(f"{r['msssim']:.4f} ({r['msssim_db']:.2f}) / {r['psnr']:.2f} / {r['bpp']:.4f} "
                         f"[{r['models_used']}]" if r["status"] == "ok" else "infeasible")
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_model_count(df: pd.DataFrame, dataset_dir: Path) -> tuple[Path, Path]:
    """The dataset's model-count files with this submission's table for this objective
    replacing its old one; other tables stay (one study, a table per submission and objective)."""
    from bench.results import merge_rows, write_csv

    csv_path, md_path = dataset_dir / MODEL_COUNT_CSV, dataset_dir / "model_count.md"
    write_csv(csv_path, merge_rows(csv_path, df.to_dict("records"), ("submission", "objective")), COLUMNS)
    parts = [f"## {name} ({OBJECTIVE_TEXT[obj]} objective)\n\n" + to_markdown(g)
             for name, obj, g in model_count_tables(pd.read_csv(csv_path))]
    md_path.write_text(f"# Models allowed per image on {df['dataset'].iloc[0]}\n\n"
                       "Best subset of k models at each target (CLIC budget, the objective rate control "
                       "maximised); [models used]. Written by `python -m bench model-count`, one table per "
                       "submission and objective.\n\n" + "\n".join(parts))
    return csv_path, md_path
