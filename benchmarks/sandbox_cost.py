"""What the sandbox costs: the default job (``make bench``: ecg_hyperprior on Kodak, JOBS=2)
from an empty cache in a fresh clone, with and without the sandbox, in one script run.

Three variants, each in its own fresh clone of the committed tree and its own empty reports
folder, run one after another and then again in reverse order (A B C C B A), so that a
machine whose speed drifts during the script penalises none of them:

* ``sandbox``: the default (codec workers under bubblewrap);
* ``no-sandbox``: the same worker processes without bubblewrap (``--no-sandbox``);
* ``in-process`` (with ``--before COMMIT``): that commit's harness, which ran encode, decode and
  metrics of a job in one process with no workers at all.

Writes ``reports/load/SANDBOX.md`` and ``sandbox.csv``: wall seconds per run, jobs coded, the
medians, and the added time per job.

    .venv/bin/python benchmarks/sandbox_cost.py --before fee1efe
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "reports" / "load"
SHARED = ROOT.parent / "shared" / "data"
PERCEPTUAL_LINE = r"\[perceptual\] \d+ chosen points decoded again and measured in ([\d.]+) s"


def _clone(commit: str, dest: Path) -> Path:
    subprocess.run(["git", "clone", "-q", "--no-checkout", str(ROOT), str(dest)], check=True)
    subprocess.run(["git", "-C", str(dest), "checkout", "-q", commit], check=True)
    return dest


def _run(clone: Path, extra: list[str], submission: str, jobs: int) -> dict:
    reports = clone / "reports-cost"
    cmd = [sys.executable, "-m", "bench", "run", "-s", submission, "-d", "kodak", "--jobs", str(jobs),
           "--reports", str(reports), "--no-progress", *extra]
    env = {**os.environ, "BENCH_DATA": str(SHARED), "PYTHONPATH": str(clone)}
    t0 = time.perf_counter()
    p = subprocess.run(cmd, cwd=clone, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if p.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{p.stderr[-3000:]}")
    info = json.loads((reports / "kodak" / "runs" / submission / "run.json").read_text())
    found = re.findall(PERCEPTUAL_LINE, p.stdout + p.stderr)
    return {"wall_s": wall, "jobs": info.get("cost", {}).get("jobs_coded"),
            "perceptual_s": sum(map(float, found)), "coding_s": wall - sum(map(float, found))}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--before", help="a commit whose harness ran jobs in-process (adds the in-process variant)")
    ap.add_argument("--submission", default="ecg_hyperprior")
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args(argv)
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                          text=True, check=True).stdout.strip()
    variants = {"sandbox": (head, []), "no-sandbox": (head, ["--no-sandbox"])}
    if args.before:
        variants["in-process"] = (args.before, [])
    order = list(variants) + list(reversed(variants))
    results: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, name in enumerate(order):
            commit, extra = variants[name]
            clone = _clone(commit, Path(tmp) / f"{i}-{name}")        # fresh clone, empty cache
            r = _run(clone, extra, args.submission, args.jobs)
            results.append({"variant": name, "commit": commit, "order": i + 1, **r})
            print(f"{name:>11}: {r['wall_s']:.1f} s ({r['perceptual_s']:.1f} s of it the perceptual pass), "
                  f"{r['jobs']} jobs", flush=True)
    _write(results, args, head)
    return 0


def _write(results: list[dict], args, head: str) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    with (OUT / "sandbox.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(results[0]))
        w.writeheader()
        w.writerows(results)
    names = list(dict.fromkeys(r["variant"] for r in results))

    def med(v: str, key: str) -> float:
        return statistics.median(r[key] for r in results if r["variant"] == v)

    jobs = {v: next(r["jobs"] for r in results if r["variant"] == v) for v in names}
    base = med("no-sandbox", "wall_s")
    lines = ["# What the sandbox costs", "",
             f"`make bench` (SUBMISSION={args.submission}, Kodak, JOBS={args.jobs}) from an empty cache in a fresh "
             f"clone, each variant twice in the order A B C C B A, in one run of `benchmarks/sandbox_cost.py` "
             f"on this project's 2-core machine (commit {head}, nothing else running). Medians of the two runs.", "",
             "| variant | wall (s), both runs | median wall (s) | of it the perceptual pass (s) | coding (s) | jobs "
             "| wall vs no-sandbox | added per job |", "|---|---|---|---|---|---|---|---|"]
    for v in names:
        runs = ", ".join(f"{r['wall_s']:.1f}" for r in results if r["variant"] == v)
        m = med(v, "wall_s")
        lines.append(f"| {v} | {runs} | {m:.1f} | {med(v, 'perceptual_s'):.1f} | {med(v, 'coding_s'):.1f} | "
                     f"{jobs[v]} | {100 * (m / base - 1):+.1f} % | {(m - base) / jobs[v]:+.4f} s |")
    lines += ["", "`sandbox`: every codec worker under bubblewrap (the default). `no-sandbox`: the same worker "
              "processes without it (`--no-sandbox`): the difference between the two is what the isolation costs. "
              "`in-process`: " + (f"commit {args.before}'s harness, which coded, decoded and measured each job in one "
                                  "process without workers and had no perceptual pass; its coding seconds compare "
                                  "with the others' coding seconds (wall minus the perceptual pass, which decodes "
                                  "each chosen point again for SSIMULACRA 2 and FLIP)." if args.before
                                  else "not measured."),
              "", "Raw runs: [sandbox.csv](sandbox.csv)."]
    (OUT / "SANDBOX.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
