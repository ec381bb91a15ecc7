"""What keeping freed buffers in the heap (bench/heap.py) saves per job: the same jobs in fresh
processes with glibc's default allocator and with the setting, alternating, in one run.

    .venv/bin/python benchmarks/heap.py            # → reports/load/heap.csv, reports/load/HEAP.md

Each process runs one job (encode → file → decode → metrics, ``bench.job.execute``) once to
warm up and ``REPEATS`` more times at one thread, the way a worker runs a run's jobs one
after the other; it reports the median job time, the minor page faults per job and the peak
resident size. A job spans the harness process and its codec's encoder and decoder
processes (``bench.sandbox.client``), run here without the sandbox so that they are its own
children and /proc shows their counters: faults are summed over the three, and so are their
peaks. The setting reaches each process the way it reaches joblib and Dask workers and the
codec processes: through the environment (``bench.heap.ENVIRONMENT``).
"""

from __future__ import annotations

import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "reports" / "load"
JOBS = (("webp", 50), ("noise_hyperprior", "l2"), ("ecg_hyperprior", 2.0))
IMAGES = (("kodak", "kodim05.png"), ("clic2025-valid", "097cb426910ba8ce2525dd8bb7fb1777.png"))
REPEATS = 3
COLUMNS = ["submission", "dataset", "image", "pixels", "allocator", "job_s", "faults_per_job", "peak_mib"]


def minor_faults(pid: int | str) -> int:
    """A process's minor page faults so far (``/proc/<pid>/stat``, field 10)."""
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[7])


def peak_kib(pid: int | str) -> int:
    """A process's peak resident size (``VmHWM``), KiB."""
    line = next(x for x in Path(f"/proc/{pid}/status").read_text().splitlines() if x.startswith("VmHWM:"))
    return int(line.split()[1])


def child(name: str, point: str, dataset: str, file: str) -> None:
    """Run in a fresh process: the warm-up and the repeats; one JSON line on stdout."""
    sys.path.insert(0, str(ROOT))
    import torch

    from bench.data import load_image, locate_dataset_dir
    from bench.job import Job, JobContext, execute
    from bench.submission import get_submission

    torch.set_num_threads(1)
    sub = get_submission(name)
    discrete = sub.points.kind == "discrete"
    pt = next(p for p in sub.points.initial() if str(p) == point) if discrete else json.loads(point)
    image = load_image(locate_dataset_dir(dataset) / file)
    ctx = JobContext(sub, "heap", threads=1, sandboxed=False)
    times, faults = [], []
    with tempfile.TemporaryDirectory() as tmp:
        job = Job(image, pt, Path(tmp) / f"{image.id}.bin")
        execute(ctx, job)                                   # also starts the codec's processes
        pids = ["self", ctx.codec().encoder.pid, ctx.codec().decoder.pid]
        for _ in range(REPEATS):
            f0, t0 = sum(map(minor_faults, pids)), time.perf_counter()
            execute(ctx, job)
            times.append(time.perf_counter() - t0)
            faults.append(sum(map(minor_faults, pids)) - f0)
    print(json.dumps({"job_s": statistics.median(times), "faults_per_job": statistics.median(faults),
                      "peak_mib": sum(map(peak_kib, pids)) / 1024, "image": image.id, "pixels": image.num_pixels}))


def measure(name: str, point, dataset: str, file: str, keep: bool) -> dict:
    from bench.heap import ENVIRONMENT

    env = {k: v for k, v in os.environ.items() if k not in ENVIRONMENT} | (ENVIRONMENT if keep else {})
    out = subprocess.run([sys.executable, __file__, "child", name, json.dumps(point) if not isinstance(point, str)
                          else point, dataset, file], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1]) | {
        "submission": name, "dataset": dataset, "allocator": "kept heap" if keep else "glibc default"}


def render(rows: list[dict]) -> str:
    head = "| submission | image | allocator | job s | page faults per job | peak MiB | job time vs default |"
    lines = [head, "|" + "---|" * 7]
    for r in rows:
        base = next(b for b in rows if b["allocator"] == "glibc default" and b["submission"] == r["submission"]
                    and b["dataset"] == r["dataset"])
        lines.append(f"| {r['submission']} | {r['dataset']} ({r['pixels'] / 1e6:.2f} MP) | {r['allocator']} | "
                     f"{r['job_s']:.3f} | {r['faults_per_job']:,.0f} | {r['peak_mib']:,.0f} | "
                     f"{r['job_s'] / base['job_s']:.2f}× |")
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return ("# Keeping freed buffers in the heap\n\n"
            f"Written by `benchmarks/heap.py` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
            f"{os.cpu_count()} CPUs, load average at the end {load}. One job (encode → file → decode → metrics) "
            f"per row, in a fresh process at one thread: a warm-up, then the median of {REPEATS} repeats; the "
            "two allocators alternate. *kept heap*: `bench/heap.py`'s setting (mmap off, no trimming), which "
            "every `bench` command now applies to itself and its workers.\n\n" + "\n".join(lines) + "\n")


def main() -> None:
    if sys.argv[1:2] == ["child"]:
        child(*sys.argv[2:6])
        return
    rows = []
    for dataset, file in IMAGES:
        for name, point in JOBS:
            for keep in (False, True):
                rows.append(measure(name, point, dataset, file, keep))
                r = rows[-1]
                print(f"[heap] {name} {dataset} {r['allocator']}: {r['job_s']:.2f} s, "
                      f"{r['faults_per_job']:,.0f} faults per job", flush=True)
    OUT.mkdir(parents=True, exist_ok=True)
    with (OUT / "heap.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    (OUT / "HEAP.md").write_text(render(rows))
    print(f"[heap] {OUT / 'HEAP.md'}")


if __name__ == "__main__":
    main()
