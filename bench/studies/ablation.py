"""Two submissions that share their models' names (e.g. noise-only vs soft-then-hard of the
same stage-1 checkpoints): a per-model table at each model's native rate, the BD-rate of the
second against the first, and both submissions' leaderboard rows at the CLIC targets.

Everything comes from the runs' stored files (``runs/<name>/rd.csv`` and ``rows.csv``), so the
table is only as fresh as the last ``bench run`` of each. Outputs
``reports/<dataset>/ablation_<a>_vs_<b>.{csv,json,md}``; the HTML report shows them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path

from bench.rd import bd_rate, overlap_share, usable_curve
from bench.results import column_value, read_csv, write_csv

COLUMNS = ["model", "a_bpp", "a_msssim", "a_msssim_db", "a_psnr", "b_bpp", "b_msssim", "b_msssim_db", "b_psnr",
           "d_bpp_pct", "d_msssim", "d_psnr"]


def _model(point: str) -> str:
    """``noise_hyperprior/l4`` and ``l4`` name the same model."""
    return str(point).rsplit("/", 1)[-1]


def load_run_file(dataset_dir: Path, name: str, file: str) -> list[dict]:
    """A stored run's CSV (``rd.csv``, ``rows.csv``), or an error that says which run to do."""
    path = Path(dataset_dir) / "runs" / name / file
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run `python -m bench run -s {name} -d {Path(dataset_dir).name}` "
                                "first (the ablation reads the stored run)")
    return read_csv(path)


def bd_rates(rd_a: Iterable[dict], rd_b: Iterable[dict]) -> dict[str, dict[str, float]]:
    """BD-rate (percent; negative: ``b`` needs fewer bits) of the second RD curve against the
    first, in MS-SSIM dB and PSNR, with the overlap of their quality ranges; NaN where the
    curves have fewer than two usable points or do not overlap."""
    rd_a, rd_b = list(rd_a), list(rd_b)
    bd = {}
    for metric in ("msssim_db", "psnr"):
        ca, cb = usable_curve(rd_a, metric), usable_curve(rd_b, metric)
        if len(ca) >= 2 and len(cb) >= 2 and overlap_share(ca, cb) > 0:
            bd[metric] = {"bd_rate_pct": bd_rate(ca, cb), "overlap": overlap_share(ca, cb)}
        else:
            bd[metric] = {"bd_rate_pct": math.nan, "overlap": 0.0}
    return bd


def ablation(dataset_dir: Path, a: str, b: str) -> dict:
    """Per-model pairs, BD-rates (percent; negative: ``b`` needs fewer bits) and leaderboard rows."""
    rd_a = {_model(r["point"]): r for r in load_run_file(dataset_dir, a, "rd.csv")}
    rd_b = {_model(r["point"]): r for r in load_run_file(dataset_dir, b, "rd.csv")}
    common = [m for m in rd_a if m in rd_b]
    if not common:
        raise ValueError(f"{a} and {b} share no model names ({sorted(rd_a)} vs {sorted(rd_b)})")
    pairs = []
    for m in sorted(common, key=lambda m: float(rd_a[m]["bpp"])):
        ra, rb = rd_a[m], rd_b[m]
        row = {"model": m}
        for side, r in (("a", ra), ("b", rb)):
            row |= {f"{side}_{k}": float(r[k]) for k in ("bpp", "msssim", "msssim_db", "psnr")}
        row |= {"d_bpp_pct": 100 * (row["b_bpp"] / row["a_bpp"] - 1), "d_msssim": row["b_msssim"] - row["a_msssim"],
                "d_psnr": row["b_psnr"] - row["a_psnr"]}
        pairs.append(row)
    bd = bd_rates(rd_a.values(), rd_b.values())
    rows = [r for name in (a, b) for r in load_run_file(dataset_dir, name, "rows.csv")]
    return {"a": a, "b": b, "pairs": pairs, "bd": bd, "rows": rows}


def to_markdown(res: dict) -> str:
    a, b = res["a"], res["b"]
    out = [f"# {b} vs {a}\n", "Native rate of each model (every image of the set at that model), CLIC aggregates.\n",
           f"| model | {a}: bpp / MS-SSIM / PSNR | {b}: bpp / MS-SSIM / PSNR | Δbpp | ΔMS-SSIM | ΔPSNR |",
           "|---|---|---|---|---|---|"]
    for r in res["pairs"]:
        out.append(f"| {r['model']} | {r['a_bpp']:.4f} / {r['a_msssim']:.5f} / {r['a_psnr']:.2f} | "
                   f"{r['b_bpp']:.4f} / {r['b_msssim']:.5f} / {r['b_psnr']:.2f} | {r['d_bpp_pct']:+.1f}% | "
                   f"{r['d_msssim']:+.5f} | {r['d_psnr']:+.2f} dB |")
    out.append("")
    for metric, label in (("msssim_db", "MS-SSIM (dB)"), ("psnr", "PSNR")):
        v = res["bd"][metric]
        text = "not computable (too few points or no overlap)" if math.isnan(v["bd_rate_pct"]) else \
            f"{v['bd_rate_pct']:+.2f}% (overlap {v['overlap']:.0%} of the joint quality range)"
        out.append(f"- BD-rate of {b} against {a}, {label}: {text}")
    out += ["", "| submission | target | status | bpp | MS-SSIM | MS-SSIM dB | PSNR |", "|---|---|---|---|---|---|---|"]
    for r in sorted(res["rows"], key=lambda r: (float(r["target_bpp"]), r["submission"])):
        if r["mode"] != "clic" or column_value(r, "objective") != "msssim":
            continue
        vals = [r.get(k) or "" for k in ("bpp", "msssim", "msssim_db", "psnr")]
        out.append(f"| {r['submission']} | {r['target_bpp']} | {r['status']} | " + " | ".join(vals) + " |")
    return "\n".join(out) + "\n"


def write_ablation(res: dict, dataset_dir: Path) -> list[Path]:
    """``.csv`` (per-model pairs), ``.json`` (pairs and BD-rates), ``.md`` (the tables)."""
    from bench.results import write_json

    stem = Path(dataset_dir) / f"ablation_{res['a']}_vs_{res['b']}"
    paths = [stem.with_suffix(".csv"), stem.with_suffix(".json"), stem.with_suffix(".md")]
    write_csv(paths[0], res["pairs"], COLUMNS)
    write_json(paths[1], {k: res[k] for k in ("a", "b", "pairs", "bd")})
    paths[2].write_text(to_markdown(res))
    return paths

