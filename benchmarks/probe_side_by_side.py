"""Probe cheaply, code for real: one submission on one dataset with ``--probe none`` and with
``--probe estimate``, side by side, from empty caches, in one process (JOBS=1).

Per target: CLIC MS-SSIM and PSNR of both, the difference, budget use, and per image-target the
coded jobs and the estimates; then the wall time of each run. Writes
``reports/load/probe_<submission>_<dataset>.{csv,md}``.

    .venv/bin/python benchmarks/probe_side_by_side.py --submission ecg_hyperprior --dataset kodak
"""

from __future__ import annotations

import argparse
import csv
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.run import run_benchmark  # noqa: E402

OUT = ROOT / "reports" / "load"
WORK = ROOT / "reports" / ".tmp" / "probe"


def _run(submission: str, dataset: str, probe: str, limit: int | None) -> tuple[object, float]:
    reports = WORK / probe
    if reports.exists():
        shutil.rmtree(reports)            # empty caches: every job and estimate is paid for
    t0 = time.perf_counter()
    res = run_benchmark(submission, dataset, limit=limit, reports_dir=reports, progress=False, probe=probe,
                        log=lambda *_: None)
    return res, time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--submission", default="ecg_hyperprior")
    p.add_argument("--dataset", default="kodak")
    p.add_argument("--limit", type=int, help="only the first N images")
    args = p.parse_args()
    runs = {probe: _run(args.submission, args.dataset, probe, args.limit) for probe in ("none", "estimate")}
    (none, t_none), (est, t_est) = runs["none"], runs["estimate"]
    images = none.rows[0]["images"]
    rows = []
    for a, b in zip(none.rows, est.rows):
        rows.append({"target_bpp": a["target_bpp"], "status": f"{a['status']}/{b['status']}",
                     "msssim_none": a.get("msssim"), "msssim_estimate": b.get("msssim"),
                     "d_msssim": (b.get("msssim") or 0) - (a.get("msssim") or 0),
                     "psnr_none": a.get("psnr"), "psnr_estimate": b.get("psnr"),
                     "use_none": (a.get("bytes") or 0) / a["budget_bytes"],
                     "use_estimate": (b.get("bytes") or 0) / b["budget_bytes"]})
    targets = len(rows)
    summary = {"coded_per_image_target_none": none.computed / (images * targets),
               "coded_per_image_target_estimate": est.computed / (images * targets),
               "estimates_per_image_target": est.estimated / (images * targets),
               "wall_s_none": t_none, "wall_s_estimate": t_est}
    stem = OUT / f"probe_{args.submission}_{Path(args.dataset).name}"
    OUT.mkdir(parents=True, exist_ok=True)
    with stem.with_suffix(".csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    lines = [f"# {args.submission} on {args.dataset}: --probe none vs --probe estimate\n",
             f"Written by `benchmarks/probe_side_by_side.py`: one process, JOBS=1, empty caches, {images} images.\n",
             "| target | status | MS-SSIM none | MS-SSIM estimate | Δ | PSNR none | PSNR estimate | budget use none | "
             "budget use estimate |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['target_bpp']} | {r['status']} | {r['msssim_none']:.5f} | {r['msssim_estimate']:.5f} | "
                     f"{r['d_msssim']:+.5f} | {r['psnr_none']:.3f} | {r['psnr_estimate']:.3f} | "
                     f"{r['use_none']:.4%} | {r['use_estimate']:.4%} |")
    lines += ["", f"- coded jobs per image-target: none {summary['coded_per_image_target_none']:.2f}, estimate "
                  f"{summary['coded_per_image_target_estimate']:.2f} (plus {summary['estimates_per_image_target']:.2f} "
                  "estimates)",
              f"- wall time: none {t_none:.0f} s, estimate {t_est:.0f} s"]
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
