"""The perceptual pass with one image at a time and with :data:`bench.perceptual.WORKERS`, one script run.

For each submission named it takes the first N images of a published row (the row's own files,
checked against their published SHA-256, and its thread count) and measures them as ``bench run`` does
(:func:`bench.perceptual.row_metrics`, decoding through a sandboxed
:class:`~bench.sandbox.client.RemoteCodec`), with ``workers=1`` and with ``workers=WORKERS``,
alternating ``1, W, 1, W`` so both see the same machine load; the fastest of each pair is
reported, and the values of both must be identical (the threads change when, not what).

    .venv/bin/python benchmarks/perceptual_pass.py           # → reports/load/PERCEPTUAL_PASS_clic2025-valid.md
    .venv/bin/python benchmarks/perceptual_pass.py --dataset kodak --out /tmp/PASS.md    # files committed

clic2025-valid's files are not committed: ``bench verify --rerun --publish`` (or ``bench run``)
writes them; Kodak's are.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.data import open_dataset  # noqa: E402
from bench.perceptual import COLUMNS, WORKERS, row_metrics, threads_of  # noqa: E402
from bench.rerun import file_sha256  # noqa: E402
from bench.results import read_csv  # noqa: E402
from bench.sandbox.client import RemoteCodec  # noqa: E402
from bench.submission import get_submission  # noqa: E402

OUT = ROOT / "reports" / "load" / "PERCEPTUAL_PASS_{dataset}.md"
DATASETS = ("clic2025-valid", "kodak")
SUBMISSIONS = ("avif", "ecg_hyperprior", "context3d_gmm")


def _row_files(dataset: str, name: str, target: float, n: int) -> tuple[dict[str, Path], int]:
    """The first ``n`` files of ``name``'s published row at ``target`` (each checked against the
    row's ``file_sha256``) and the row's threads."""
    run = ROOT / "reports" / dataset / "runs" / name
    row = next(r for r in read_csv(run / "rows.csv") if float(r["target_bpp"]) == target and r["status"] == "ok")
    files = {}
    for r in [r for r in read_csv(run / "per_image.csv") if float(r["target_bpp"]) == target][:n]:
        path = ROOT / r["file"]
        if not path.is_file() or file_sha256(path) != r["file_sha256"]:
            raise SystemExit(f"{path}: {'missing' if not path.is_file() else 'not the published file'}; "
                             f"`python -m bench verify --rerun --publish -s {name} -d {dataset}` writes "
                             "the published files")
        files[r["image_id"]] = path
    return files, threads_of(row["device"])


def measure(dataset: str, name: str, target: float, n: int, originals: dict) -> dict:
    """Seconds of the pass over ``n`` images with 1 worker and with WORKERS, fastest of two each."""
    files, threads = _row_files(dataset, name, target, n)
    remote = RemoteCodec(get_submission(name))
    decode = lambda data, hw: remote.decode(data, hw, threads, "cpu", f"{name}: perceptual pass").pixels  # noqa: E731
    seconds: dict[int, list[float]] = {1: [], WORKERS: []}
    values: dict[int, dict] = {}
    try:
        remote.decoder.hello()                      # the worker's start is not part of either
        for workers in (1, WORKERS, 1, WORKERS):
            t0 = time.perf_counter()
            per_image, _ = row_metrics(files, {i: originals[i] for i in files}, decode, workers=workers)
            seconds[workers].append(time.perf_counter() - t0)
            values[workers] = {i: tuple(v[k] for k in (*COLUMNS, "decoded_sha256")) for i, v in per_image.items()}
    finally:
        remote.close()
    if values[1] != values[WORKERS]:
        raise SystemExit(f"{name}: the values with {WORKERS} workers differ from those with one")
    one, many = min(seconds[1]), min(seconds[WORKERS])
    return {"submission": name, "target": target, "images": len(files), "threads": threads,
            "one_s": one, "many_s": many, "all_one": seconds[1], "all_many": seconds[WORKERS]}


def render(rows: list[dict], dataset: str, started: str, load: str, wall_s: float, peak_mb: float) -> str:
    lines = [
        "# The perceptual pass: one image at a time, or two",
        "",
        f"`benchmarks/perceptual_pass.py`, {started} UTC, one run: {os.cpu_count()} cores, load average at the "
        f"start {load}, {wall_s / 60:.1f} min. Each line: the first images of a published {dataset} row "
        "(its own files, decoded by the sandboxed codec with the row's thread count), measured as `bench run` "
        f"measures them (`bench.perceptual.row_metrics`) with 1 worker and with {WORKERS}, in the order "
        f"1, {WORKERS}, 1, {WORKERS}; the fastest of each. The values were identical both ways for every image.",
        "",
        f"| submission | target | images | 1 worker, s | {WORKERS} workers, s | speed-up | all runs (1 / {WORKERS}) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['submission']} | {r['target']} | {r['images']} | {r['one_s']:.1f} | {r['many_s']:.1f} | "
                     f"{r['one_s'] / r['many_s']:.2f}× | {' '.join(f'{s:.1f}' for s in r['all_one'])} / "
                     f"{' '.join(f'{s:.1f}' for s in r['all_many'])} |")
    lines += ["", f"Peak resident memory of this process (both modes, all rows): {peak_mb:,.0f} MB.", ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=6, help="images per row (default 6)")
    ap.add_argument("--dataset", choices=DATASETS, default=DATASETS[0])
    ap.add_argument("--target", type=float, default=0.15)
    ap.add_argument("--submissions", nargs="+", default=list(SUBMISSIONS))
    ap.add_argument("--out", type=Path, help=f"default {OUT.relative_to(ROOT)}")
    args = ap.parse_args()
    started, load, t0 = time.strftime("%Y-%m-%d %H:%M", time.gmtime()), f"{os.getloadavg()[0]:.1f}", time.perf_counter()
    originals = {im.id: im.pixels for im in open_dataset(args.dataset).images()}
    rows = []
    for name in args.submissions:
        rows.append(measure(args.dataset, name, args.target, args.images, originals))
        print(f"{name}: {rows[-1]['one_s']:.1f} s → {rows[-1]['many_s']:.1f} s", flush=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out = args.out or Path(str(OUT).format(dataset=args.dataset))
    out.write_text(render(rows, args.dataset, started, load, time.perf_counter() - t0, peak), encoding="utf-8")
    print(out)


if __name__ == "__main__":
    main()
