"""Rate control's search, before and after: one submission on one dataset with an older
checkout's code (``--before DIR``, e.g. a ``git worktree`` beside this one, so that it finds
the same ``../shared/data``) and with this checkout's, each from an empty cache in its own
process (JOBS=1).

Per target: CLIC MS-SSIM and PSNR of both, budget use; per image-target the coded jobs
(encodes); the wall time of each run. Writes ``reports/load/search_<submission>_<dataset>.md``.

    git worktree add ../before 5bb530d
    .venv/bin/python benchmarks/search_side_by_side.py --before ../before --submission webp
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "reports" / "load"

CHILD = """
import json, sys, time
from pathlib import Path
from bench.run import run_benchmark
t0 = time.perf_counter()
res = run_benchmark(sys.argv[1], sys.argv[2], reports_dir=Path(sys.argv[3]), progress=False, log=lambda *_: None)
keep = ("target_bpp", "status", "msssim", "psnr", "bytes", "budget_bytes", "images")
print(json.dumps({"computed": res.computed, "wall_s": time.perf_counter() - t0,
                  "rows": [{k: r.get(k) for k in keep} for r in res.rows]}))
"""


def _run(code: Path, submission: str, dataset: str) -> dict:
    with tempfile.TemporaryDirectory() as reports:
        env = dict(os.environ, PYTHONPATH=str(code))
        out = subprocess.run([sys.executable, "-c", CHILD, submission, dataset, reports], cwd=code, env=env,
                             check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def _commit(code: Path) -> str:
    r = subprocess.run(["git", "-C", str(code), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", str(code), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    return r.stdout.strip() + (" + working tree" if dirty else "")


def _table(submission: str, dataset: str, runs: dict[str, dict], codes: dict[str, Path]) -> list[str]:
    before, after = runs["before"], runs["after"]
    images = next(r["images"] for r in before["rows"] if r.get("images"))
    lines = [f"# Rate control's search on {submission} / {dataset}: before and after\n",
             f"Written by `benchmarks/search_side_by_side.py`: each code from an empty cache in its own process, "
             f"JOBS=1, {images} images. before: {_commit(codes['before'])}; after: {_commit(codes['after'])}.\n",
             "| target | status | MS-SSIM before | MS-SSIM after | Δ | PSNR before | PSNR after | Δ dB | "
             "budget use before | budget use after |", "|---|---|---|---|---|---|---|---|---|---|"]
    for a, b in zip(before["rows"], after["rows"]):
        if a["status"] == b["status"] == "ok":
            lines.append(f"| {a['target_bpp']} | ok | {a['msssim']:.5f} | {b['msssim']:.5f} | "
                         f"{b['msssim'] - a['msssim']:+.5f} | {a['psnr']:.3f} | {b['psnr']:.3f} | "
                         f"{b['psnr'] - a['psnr']:+.3f} | {a['bytes'] / a['budget_bytes']:.4%} | "
                         f"{b['bytes'] / b['budget_bytes']:.4%} |")
        else:
            lines.append(f"| {a['target_bpp']} | {a['status']} / {b['status']} | | | | | | | | |")
    per = len(before["rows"]) * images
    lines += ["", f"- encodes per image-target (every target counts, infeasible ones too): before "
                  f"{before['computed'] / per:.2f}, after {after['computed'] / per:.2f} "
                  f"({before['computed']} and {after['computed']} jobs)",
              f"- wall time: before {before['wall_s']:.0f} s, after {after['wall_s']:.0f} s"]
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--before", required=True, help="a checkout of the older code")
    p.add_argument("--submission", default="webp")
    p.add_argument("--dataset", default="kodak")
    args = p.parse_args()
    codes = {"before": Path(args.before).resolve(), "after": ROOT}
    runs = {label: _run(code, args.submission, args.dataset) for label, code in codes.items()}
    lines = _table(args.submission, args.dataset, runs, codes)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"search_{args.submission}_{Path(args.dataset).name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
