"""Cost profile: where the time of one job goes, per codec kind, on a Kodak and a CLIC image.

One job is what the runner does for an image × operating point: encode → file on disk → read
back → decode from the file → metrics (``bench/job.py``: ``execute(JobContext, Job)``, the
codec in sandboxed encoder and decoder processes). The job records each part (``enc_s``,
``file_s``, ``dec_s``, ``metrics_s``, ``job_s``) and learned codecs split their encode and
decode into network and entropy-coder seconds (``JobMeasures``). The harness's share is
everything but the codec's encode and decode and the metrics: the file write and read-back
and the record's assembly.

    .venv/bin/python benchmarks/job_profile.py run --label after          # this checkout
    .venv/bin/python benchmarks/job_profile.py run --label before --code /tmp/old-checkout
    .venv/bin/python benchmarks/job_profile.py render                     # reports/load/PROFILE.md

``--code DIR`` imports ``bench`` from another checkout (e.g. a ``git worktree`` of an older
commit), so a before/after pair comes from one script on one machine. An older job function
(``execute(sub, content_hash, job, threads)``, the codec in this process, a ``measure`` step
whose seconds count as the harness's) or one that does not time its parts is timed from
outside: the whole call, its ``enc_s`` and ``dec_s``, and the metrics timed again on the
decoded file; the rest is the harness's. Each job runs ``--repeats`` times after one warm-up
(models loaded, caches warm, the metric's cache of the original included); medians.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "reports" / "load"
JOBS = (("null", "lossless"), ("webp", 50), ("noise_hyperprior", "l2"), ("ecg_hyperprior", 2.0))
IMAGES = (("kodak", "kodim05.png"), ("clic2025-valid", "097cb426910ba8ce2525dd8bb7fb1777.png"))
PARTS = ("enc_net_s", "enc_coder_s", "file_s", "dec_coder_s", "dec_net_s", "metrics_s")
COLUMNS = ["label", "submission", "dataset", "image", "pixels", "point", "threads", "repeats", "job_s", "enc_s",
           "dec_s", *PARTS, "harness_s", "harness_pct"]


def _time_job(bench, sub, job, threads: int) -> dict:
    """One job through ``execute``; the parts an older job function does not report are timed here."""
    t0 = time.perf_counter()
    if bench["JobContext"] is not None:
        rec = bench["execute"](bench["JobContext"](sub, "profile", threads=threads), job)
    else:
        rec = bench["execute"](sub, "profile", job, threads)
    rec.setdefault("job_s", time.perf_counter() - t0)
    if "metrics_s" not in rec:
        decoded = bench["codec"](sub).decode(Path(job.path).read_bytes())
        t1 = time.perf_counter()
        bench["image_metrics"](job.image.pixels, decoded)
        rec["metrics_s"] = time.perf_counter() - t1
    return rec


def profile_one(bench, name: str, point, image, threads: int, repeats: int) -> dict:
    sub = bench["get_submission"](name)
    with tempfile.TemporaryDirectory() as tmp:
        job = bench["Job"](image, point, Path(tmp) / f"{image.id}.bin")
        _time_job(bench, sub, job, threads)                       # warm-up: models, tables, caches
        recs = [_time_job(bench, sub, job, threads) for _ in range(repeats)]
    med = {k: statistics.median(r[k] for r in recs) for k in ("job_s", "enc_s", "dec_s", *PARTS) if k in recs[0]}
    harness = med["job_s"] - med["enc_s"] - med["dec_s"] - med["metrics_s"]
    return med | {"submission": name, "image": image.id, "pixels": image.num_pixels, "point": point,
                  "threads": threads, "repeats": repeats, "harness_s": harness,
                  "harness_pct": 100 * harness / med["job_s"]}


def _import_bench(code: Path | None) -> dict:
    if code is not None:
        sys.path.insert(0, str(code))
    else:
        sys.path.insert(0, str(ROOT))
    from bench.data import load_image, locate_dataset_dir
    from bench.metrics import image_metrics
    from bench.submission import get_submission

    try:
        from bench.job import Job, execute
    except ImportError:                      # before the job function had a module of its own
        from bench.runner import Job, execute
    try:
        from bench.job import JobContext
    except ImportError:                      # before the stateless codec contract
        JobContext = None
    codecs: dict = {}

    def codec(sub):
        return codecs.setdefault(sub.name, sub.make_codec())

    return {"Job": Job, "JobContext": JobContext, "execute": execute, "get_submission": get_submission,
            "image_metrics": image_metrics, "load_image": load_image, "locate": locate_dataset_dir, "codec": codec}


def cmd_run(args) -> None:
    import torch

    bench = _import_bench(Path(args.code) if args.code else None)
    torch.set_num_threads(args.threads)
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists()
    with path.open("a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        if new:
            w.writeheader()
        for dataset, file in IMAGES:
            image = bench["load_image"](bench["locate"](dataset) / file)
            for name, point in JOBS:
                row = profile_one(bench, name, point, image, args.threads, args.repeats)
                w.writerow(row | {"label": args.label, "dataset": dataset})
                f.flush()
                print(f"[profile] {args.label} {name} {dataset}/{image.id}: job {row['job_s']:.3f} s, "
                      f"harness {row['harness_pct']:.1f} %", flush=True)


def _cell(v: str | None, digits: int = 3) -> str:
    try:
        return f"{float(v):.{digits}f}"
    except (TypeError, ValueError):
        return "—"


def _split(total: str, first: str | None, second: str | None) -> str:
    """``total (first + second)`` where the codec splits it, else the total alone."""
    if first and second:
        return f"{_cell(total)} ({_cell(first)} + {_cell(second)})"
    return _cell(total)


def cmd_render(args) -> None:
    with Path(args.out).open(newline="") as f:
        rows = list(csv.DictReader(f))
    head = ["code", "submission", "image", "job", "encode (net + coder)", "file", "decode (coder + net)",
            "metrics", "harness", "harness %"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["label"], r["submission"], f"{r['dataset']} ({int(r['pixels']) / 1e6:.2f} MP)", _cell(r["job_s"]),
                 _split(r["enc_s"], r.get("enc_net_s"), r.get("enc_coder_s")), _cell(r.get("file_s")),
                 _split(r["dec_s"], r.get("dec_coder_s"), r.get("dec_net_s")), _cell(r["metrics_s"]),
                 _cell(r["harness_s"]), _cell(r["harness_pct"], 1)]
        lines.append("| " + " | ".join(cells) + " |")
    images = ", ".join(sorted({f"{r['dataset']}/{r['image']}" for r in rows}))
    text = (f"# Cost of one job\n\nWritten by `benchmarks/job_profile.py` (`make profile`) from "
            f"`{Path(args.out).name}`: seconds per part of one job on {images}, the median of the repeats "
            "after a warm-up. Learned codecs split encode and decode into network and entropy-coder seconds; "
            "classical ones report the whole call. Harness = job − encode − decode − metrics (the file write "
            "and read-back, the record; an older job function's `measure` step). —: not reported by that code."
            "\n\n" + "\n".join(lines) + "\n")
    md = Path(args.out).with_name("PROFILE.md")
    md.write_text(text + (Path(args.notes).read_text() if args.notes else ""))
    print(f"wrote {md}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sp = p.add_subparsers(dest="cmd", required=True)
    r = sp.add_parser("run", help="profile the jobs and append rows to the CSV")
    r.add_argument("--label", required=True, help="names this code version in the table (e.g. before, after)")
    r.add_argument("--code", help="a checkout to import bench from (default: this one)")
    r.add_argument("--threads", type=int, default=1)
    r.add_argument("--repeats", type=int, default=3)
    r.add_argument("--out", default=str(OUT / "profile.csv"))
    r.set_defaults(fn=cmd_run)
    m = sp.add_parser("render", help="PROFILE.md from the CSV")
    m.add_argument("--out", default=str(OUT / "profile.csv"))
    m.add_argument("--notes", help="a markdown file appended under the table")
    m.set_defaults(fn=cmd_render)
    args = p.parse_args()
    args.fn(args)


if __name__ == "__main__":
    main()
