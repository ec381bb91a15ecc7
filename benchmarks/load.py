"""Load benchmark: whole-set throughput of a learned and a classical submission, JOBS=1 vs 2.

For every (submission, dataset) it runs the complete benchmark (rate control to the CLIC
targets 0.075/0.15/0.3, every encode, decode and metric) from an empty cache, first with
JOBS=1, then with JOBS=2, and reports wall time, images/s, jobs/s and the speed-up. Then it
measures the peak RSS of one job on the dataset's largest image, each in a fresh process (with
its codec's encoder and decoder processes, unsandboxed so that /proc shows them; summed).

Results: ``reports/load/load.csv`` (one row per run), ``reports/load/rss.csv`` and
``reports/load/LOAD.md`` (a summary with the machine), or under ``reports/load/smoke/`` with
``--limit`` (the first N images only: proves the script works, numbers not comparable).

    .venv/bin/python benchmarks/load.py              # full Kodak + CLIC 2025 (make load); hours on 2 busy cores
    .venv/bin/python benchmarks/load.py --limit 2    # smoke run, a minute or two

Threads: each run's jobs get ``BENCH_THREADS`` torch threads, or the cores shared out among
the jobs (2 cores: JOBS=1 → 2 threads, JOBS=2 → 1 thread each), exactly as ``make bench``
does; so the speed-up of a learned codec, whose convolutions already use every core, is
expected to be small, and a classical codec's (single-threaded libraries) close to 2×.

The learned submission: ``--learned NAME``; by default the first submission whose codec lives
in ``bench.codecs.learned``, else the trained ``noise_hyperprior/base`` weights wrapped in a
temporary submission (a copy of the weight file, so nothing in submissions/ is touched).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.paths import REPORTS_DIR, SUBMISSIONS_DIR  # noqa: E402

DATASETS = ("kodak", "clic2025-valid")
TARGETS = (0.075, 0.15, 0.3)
LEARNED_WEIGHTS = SUBMISSIONS_DIR / "noise_hyperprior" / "weights" / "base.pt"
TEMP_MANIFEST = '''name = "{name}"
description = "noise_hyperprior/base weights (temporary submission made by benchmarks/load.py)"
codec = "bench.codecs.learned:HyperpriorCodec"
[params]
models = ["base"]
[operating_points]
kind = "discrete"
points = ["base"]
'''


def learned_submission(explicit: str | None, tmp: Path) -> tuple[str, Path]:
    """(name, submissions root) of the learned submission to load."""
    from bench.submission import discover

    if explicit:
        return explicit, SUBMISSIONS_DIR
    for name, sub in discover().items():
        if sub.codec_ref.startswith("bench.codecs.learned:"):
            return name, SUBMISSIONS_DIR
    if not LEARNED_WEIGHTS.exists():
        raise SystemExit(f"no learned submission and no {LEARNED_WEIGHTS}; pass --learned NAME")
    root = tmp / "submissions"
    folder = root / "noise-hyperprior-base"
    (folder / "weights").mkdir(parents=True)
    shutil.copyfile(LEARNED_WEIGHTS, folder / "weights" / "base.pt")
    (folder / "submission.toml").write_text(TEMP_MANIFEST.format(name=folder.name))
    return folder.name, root


def use_roots(roots: dict[str, Path]) -> None:
    """Let run_benchmark find submissions that live outside submissions/ (the temporary one)."""
    import bench.run
    from bench.submission import get_submission

    def lookup(name: str, root: Path = SUBMISSIONS_DIR):
        return get_submission(name, roots.get(name, root))
    bench.run.get_submission = lookup


def one_run(name: str, dataset: str, jobs: int, limit: int | None, tmp: Path) -> dict:
    from bench.run import run_benchmark

    reports = tmp / f"reports-{name}-{dataset}-{jobs}"
    t0 = time.perf_counter()
    res = run_benchmark(name, dataset, targets=TARGETS, jobs=jobs, limit=limit, reports_dir=reports,
                        progress=False, log=lambda *_: None)
    wall = time.perf_counter() - t0
    images = int(res.rows[0]["images"]) if res.rows else 0
    row = {"submission": name, "dataset": dataset, "jobs": jobs, "images": images, "codec_jobs": res.computed,
           "wall_s": round(wall, 2), "images_per_s": round(images / wall, 4),
           "jobs_per_s": round(res.computed / wall, 3),
           "threads_per_job": os.environ.get("BENCH_THREADS") or max(1, (os.cpu_count() or 1) // jobs),
           "errors": len(res.errors),
           "psnr_0.15": next((r.get("psnr") for r in res.rows if r["target_bpp"] == 0.15), None)}
    shutil.rmtree(reports, ignore_errors=True)
    return row


PROBE = r'''
import json, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
name, root, dataset, image, point, out = sys.argv[2:8]


def status(pid, field):   # kB from /proc/<pid>/status (VmHWM is that process's own peak: ru_maxrss can
    for line in open(f"/proc/{pid}/status"):   # carry the forking parent's peak across exec on Linux)
        if line.startswith(field + ":"):
            return int(line.split()[1])


from bench.data import open_dataset
from bench.job import Job, JobContext, default_threads, execute
from bench.submission import get_submission
sub = get_submission(name, Path(root))
# a job spans this process and the codec's encoder and decoder processes; unsandboxed, they are
# this one's children and /proc shows their sizes: each figure is the sum over the three
ctx = JobContext(sub, "probe", threads=default_threads(1), sandboxed=False)
codec = ctx.codec()
codec.encoder.hello(), codec.decoder.hello()     # both started, their models loaded
pids = ["self", codec.encoder.pid, codec.decoder.pid]
ds = open_dataset(dataset)
img = ds.load(next(p for p in ds.files if p.name == image))
before = sum(status(p, "VmRSS") for p in pids)
try:
    for p in pids:
        open(f"/proc/{p}/clear_refs", "w").write("5")   # reset VmHWM to the current RSS
    reset = True
except OSError:
    reset = False
t = time.perf_counter()
rec = execute(ctx, Job(img, json.loads(point), Path(out)))
print(json.dumps({"rss_before_kib": before, "peak_rss_kib": sum(status(p, "VmHWM") for p in pids),
                  "hwm_reset": reset, "seconds": time.perf_counter() - t, "bytes": rec["bytes"], "h": img.height,
                  "w": img.width}))
'''


def rss_probe(name: str, root: Path, dataset: str, tmp: Path) -> dict:
    """Peak RSS of one job (encode, write, decode, metrics) on the dataset's largest image,
    in a fresh process; also the RSS before the job (interpreter, torch, codec, image)."""
    from PIL import Image as PILImage

    from bench.data import open_dataset
    from bench.submission import get_submission

    ds = open_dataset(dataset)
    sizes = {}
    for p in ds.files:
        with PILImage.open(p) as im:
            sizes[p.name] = im.size[0] * im.size[1]
    largest = max(sizes, key=sizes.get)
    points = get_submission(name, root).points.initial()
    point = points[len(points) // 2]
    p = subprocess.run([sys.executable, "-c", PROBE, str(Path(__file__).resolve().parents[1]), name, str(root),
                        dataset, largest, json.dumps(point), str(tmp / "probe.bin")],
                       capture_output=True, text=True, timeout=1800, check=False)
    if p.returncode != 0:
        raise RuntimeError(f"RSS probe failed for {name} on {dataset}: {p.stderr[-2000:]}")
    m = json.loads(p.stdout.strip().splitlines()[-1])
    return {"submission": name, "dataset": dataset, "image": largest, "size": f"{m['w']}x{m['h']}",
            "point": point, "rss_before_mib": round(m["rss_before_kib"] / 1024, 1),
            "peak_rss_mib": round(m["peak_rss_kib"] / 1024, 1), "peak_is_job_only": m["hwm_reset"],
            "job_s": round(m["seconds"], 2), "bytes": m["bytes"]}


def write_csv(path: Path, rows: list[dict]) -> None:
    cols = list(dict.fromkeys(k for r in rows for k in r))
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--limit", type=int, help="first N images of each set (smoke run)")
    ap.add_argument("--classical", default="webp")
    ap.add_argument("--learned", help="a learned submission's name (default: see the module doc)")
    ap.add_argument("--datasets", default=",".join(DATASETS))
    ap.add_argument("--jobs", default="1,2")
    ap.add_argument("--no-rss", action="store_true", help="skip the peak-RSS probes")
    ap.add_argument("--rss-only", action="store_true", help="only the peak-RSS probes (no throughput runs)")
    ap.add_argument("--out", help="output folder (default reports/load, or reports/load/smoke with --limit)")
    args = ap.parse_args(argv)
    out = Path(args.out) if args.out else REPORTS_DIR / "load" / ("smoke" if args.limit else "")
    out.mkdir(parents=True, exist_ok=True)
    jobs = [int(j) for j in args.jobs.split(",")]
    datasets = [d for d in args.datasets.split(",") if d]

    with tempfile.TemporaryDirectory(prefix="bench-load-") as t:
        tmp = Path(t)
        learned, learned_root = learned_submission(args.learned, tmp)
        use_roots({learned: learned_root})
        rows, rss = [], []
        if args.rss_only and (out / "load.csv").exists():   # keep the throughput rows of the last full run
            with (out / "load.csv").open(newline="") as f:
                rows = list(csv.DictReader(f))
        for name, root in ((learned, learned_root), (args.classical, SUBMISSIONS_DIR)):
            for dataset in datasets:
                by_jobs = {}
                for j in ([] if args.rss_only else jobs):
                    print(f"[load] {name} on {dataset}, JOBS={j} …", flush=True)
                    row = one_run(name, dataset, j, args.limit, tmp)
                    by_jobs[j] = row
                    row["speedup_vs_jobs1"] = round(by_jobs[jobs[0]]["wall_s"] / row["wall_s"], 3)
                    rows.append(row)
                    print(f"[load]   {row['images']} images, {row['codec_jobs']} jobs, {row['wall_s']} s: "
                          f"{row['images_per_s']} images/s, speed-up {row['speedup_vs_jobs1']}", flush=True)
                    write_csv(out / "load.csv", rows)
                if not args.no_rss:
                    rss.append(rss_probe(name, root, dataset, tmp))
                    print(f"[load]   peak RSS on {rss[-1]['image']} ({rss[-1]['size']}): "
                          f"{rss[-1]['peak_rss_mib']} MiB", flush=True)
                    write_csv(out / "rss.csv", rss)

    info = {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "limit": args.limit, "targets": TARGETS,
            "cpu_count": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
            "bench_threads": os.environ.get("BENCH_THREADS"), "loadavg_at_end": os.getloadavg(),
            "rss_of_this_process_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    (out / "load.json").write_text(json.dumps({"info": info, "runs": rows, "rss": rss}, indent=2, default=str) + "\n")
    smoke = f" (smoke: --limit {args.limit})" if args.limit else ""
    lines = [f"# Load benchmark{smoke}", "",
             (f"{info['date']}, {info['cpu_count']} CPUs, load average at the end {info['loadavg_at_end']}; "
              f"targets {', '.join(map(str, TARGETS))} bpp, CLIC mode; every run from an empty cache."), "",
             "| submission | dataset | jobs | images | codec jobs | wall s | images/s | speed-up |",
             "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['submission']} | {r['dataset']} | {r['jobs']} | {r['images']} | {r['codec_jobs']} | {r['wall_s']} "
              f"| {r['images_per_s']} | {r['speedup_vs_jobs1']} |" for r in rows]
    if rss:
        lines += ["", ("Peak RSS (VmHWM) of one job (encode, file, decode, metrics) on the largest image, in a fresh "
                       "process and its codec's encoder and decoder processes, summed over the three; 'before' = "
                       "interpreters, torch, codec and image loaded:"), "",
                  "| submission | dataset | image | size | before MiB | peak MiB | job s |",
                  "|---|---|---|---|---|---|---|"]
        lines += [f"| {r['submission']} | {r['dataset']} | {r['image']} | {r['size']} | {r['rss_before_mib']} "
                  f"| {r['peak_rss_mib']} | {r['job_s']} |" for r in rss]
    (out / "LOAD.md").write_text("\n".join(lines) + "\n")
    print(f"[load] wrote {out / 'load.csv'}, {out / 'rss.csv'}, {out / 'LOAD.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
