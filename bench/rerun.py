"""Re-code a published row's chosen points on this machine and check that the new files are
the published ones: bit-exact reproduction of a row, without its rate-control search.

A row's per-image lines (``per_image.csv``) name each image's operating point, file size,
the decoded pixels' fingerprint and, for rows published with it, the file's SHA-256. The
row's points are coded again through a :class:`~bench.runner.Runner` (sandboxed, with the
row's torch thread count, cached under the reports folder's ``.tmp/rerun/``) and compared: the file's
SHA-256 where one was published, else its size and the decoded pixels' fingerprint. A
mismatch names the image and the point. ``publish=True`` then writes the reproduced files
into the row's bitstream folder and completes ``per_image.csv``'s ``file_sha256`` column
(only for rows that reproduced in full), which is how rows coded before files were shipped
get them.
"""

from __future__ import annotations

import hashlib
import os
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.atomic import atomic_write_bytes
from bench.cachekey import point_key
from bench.codec import OperatingPoints
from bench.data import open_dataset
from bench.paths import REPO_ROOT
from bench.provenance import code_state, commit_label
from bench.records import JobsFailed
from bench.results import PER_IMAGE_COLUMNS, ROW_COLUMNS, ROW_KEY, column_value, read_csv, write_csv
from bench.runner import Runner
from bench.sandbox.client import RemoteCodec
from bench.submission import get_submission

WORK = Path(".tmp") / "rerun"          # under the reports folder: ignored by git, a cache of re-coded points


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def point_from_key(points: OperatingPoints, key: str) -> Any:
    """The operating point a ``per_image.csv`` line names (its :func:`~bench.cachekey.point_key`)."""
    if points.kind == "discrete":
        for p in points.points:
            if point_key(p) == key:
                return p
        raise ValueError(f"point {key!r} is not one of the submission's operating points {list(points.points)}")
    return int(key) if points.integer else float(key)


def row_id(r: dict) -> tuple:
    """(mode, objective, target): which row of a run a line belongs to."""
    return (*(column_value(r, k) for k in ROW_KEY[:-1]), float(r["target_bpp"]))


def row_threads(row: dict) -> int | None:
    """N of a CPU row's ``cpu (N threads)`` label; None for a row coded elsewhere."""
    label = row.get("device", "") or "cpu (1 threads)"
    if not label.startswith("cpu ("):
        return None
    return int(label.split("(", 1)[1].split()[0])


def _compare(line: dict, rec: dict, new_file: Path) -> str | None:
    """Why the new file is not the published one (None when it is)."""
    what = f"{line['image_id']} @ {line['point']}"
    if line.get("file_sha256"):
        got = file_sha256(new_file)
        return None if got == line["file_sha256"] else \
            f"{what}: file SHA-256 {got[:16]}… differs from the published {line['file_sha256'][:16]}…"
    if int(rec["bytes"]) != int(line["bytes"]):
        return f"{what}: {rec['bytes']} bytes, the published file has {line['bytes']}"
    if line.get("decoded_sha256") and rec["decoded_sha256"] != line["decoded_sha256"]:
        return f"{what}: decodes to other pixels ({rec['decoded_sha256']} vs published {line['decoded_sha256']})"
    return None


def _code(sub, images: dict, lines: list[dict], threads: int, work: Path, sandboxed: bool,
          log: Callable) -> tuple[Runner, dict, list[str]]:
    """The records of ``lines``' points, coded with ``threads`` torch threads per job."""
    jobs = max(1, (os.cpu_count() or 1) // threads)
    needed = sorted({ln["image_id"] for ln in lines})
    missing = [i for i in needed if i not in images]
    runner = Runner(sub, [images[i] for i in needed if i in images], work, jobs=jobs, progress=False, log=log,
                    sandboxed=sandboxed)
    requests = [(ln["image_id"], point_from_key(sub.points, ln["point"])) for ln in lines if ln["image_id"] in images]
    failures = [f"{i}: not in the dataset" for i in missing]
    with runner.session():
        try:
            runner.evaluate(requests)
        except JobsFailed as e:
            failures += e.errors
    recs = {(i, point_key(p)): r for i, p in requests if (r := runner.cached(i, p)) is not None}
    return runner, recs, failures


def rerun_dataset(reports_dir: Path, dataset: str, submissions: list[str] | None = None, publish: bool = False,
                  sandboxed: bool = True, log: Callable[[str], None] = print) -> list[dict]:
    """One result per published ok row of the dataset's runs (optionally only ``submissions``'):
    how many of its files the re-coding reproduced, and what differed."""
    ds = open_dataset(dataset)
    dataset_dir = Path(reports_dir) / ds.name
    images = {im.id: im for im in ds.images()}
    out = []
    for rows_csv in sorted((dataset_dir / "runs").glob("*/rows.csv")):
        rows = [r for r in read_csv(rows_csv) if r["status"] == "ok"]
        if not rows or (submissions and rows[0]["submission"] not in submissions):
            continue
        out += _rerun_run(rows_csv.parent, rows, images, Path(reports_dir) / WORK / ds.name, publish, sandboxed,
                          log)
    return out


def _rerun_run(run_dir: Path, rows: list[dict], images: dict, work_dir: Path, publish: bool, sandboxed: bool,
               log: Callable) -> list[dict]:
    sub = get_submission(rows[0]["submission"])
    all_lines = read_csv(run_dir / "per_image.csv")
    lines = defaultdict(list)
    for ln in all_lines:
        lines[row_id(ln)].append(ln)
    by_threads = defaultdict(list)
    results, published = [], False
    for row in rows:
        threads = row_threads(row)
        if threads is None:
            results.append(_result(row, 0, [f"coded on {row['device']}: re-code it on such a device"]))
        else:
            by_threads[threads].append(row)
    for threads, group in by_threads.items():
        todo = [ln for row in group for ln in lines[row_id(row)]]
        work = work_dir / sub.name / f"{threads}-threads"
        runner, recs, failures = _code(sub, images, todo, threads, work, sandboxed, log)
        for row in group:
            mine = lines[row_id(row)]
            ids = {ln["image_id"] for ln in mine}
            bad = [f for f in failures if f.split(" @ ")[0].split(":")[0] in ids]
            ok = 0
            for ln in mine:
                rec = recs.get((ln["image_id"], ln["point"]))
                why = _compare(ln, rec, runner.run_dir / rec["file"]) if rec is not None else None
                if why:
                    bad.append(why)
                elif rec is not None:
                    ok += 1
            if len(mine) != int(row["images"]):
                bad.append(f"per_image.csv has {len(mine)} lines for this row, the row counts {row['images']} images")
            results.append(_result(row, ok, bad))
            if publish and not bad and ok == len(mine):
                _publish(row, mine, recs, runner.run_dir)
                results[-1]["published"] = published = True
    if published:
        write_csv(run_dir / "per_image.csv", all_lines, PER_IMAGE_COLUMNS)
        _stamp(run_dir / "rows.csv", [r for r in results if r.get("published")])
    return results


def _stamp(rows_csv: Path, reproduced: list[dict]) -> None:
    """rows.csv's ``reproduced`` column: the commit (``+dirty`` when the code differed from it)
    and date of the re-coding that reproduced each row's published files."""
    state = code_state()
    stamp = f"{commit_label(state)} {datetime.now(UTC).date().isoformat()}"
    keys = {(r["mode"], r["objective"], r["target_bpp"]) for r in reproduced}
    rows = read_csv(rows_csv)
    for row in rows:
        if row_id(row) in keys:
            row["reproduced"] = stamp
    write_csv(rows_csv, rows, ROW_COLUMNS)


def _result(row: dict, reproduced: int, problems: list[str]) -> dict:
    return {"submission": row["submission"], "mode": row["mode"], "objective": column_value(row, "objective"),
            "target_bpp": float(row["target_bpp"]), "images": int(row["images"]), "reproduced": reproduced,
            "problems": problems}


def _folder(row: dict) -> Path:
    folder = Path(row["bitstreams"])
    return folder if folder.is_absolute() else REPO_ROOT / folder


def _publish(row: dict, lines: list[dict], recs: dict, cache: Path) -> None:
    """The reproduced files into the row's bitstream folder (one per image, nothing else), and
    their SHA-256 into the row's per-image lines."""
    folder = _folder(row)
    folder.mkdir(parents=True, exist_ok=True)
    names = set()
    for ln in lines:
        src = cache / recs[(ln["image_id"], ln["point"])]["file"]
        dst = folder / f"{ln['image_id']}.bin"
        if not dst.exists() or dst.read_bytes() != src.read_bytes():
            atomic_write_bytes(dst, src.read_bytes())
        names.add(dst.name)
        ln["file_sha256"] = file_sha256(dst)
    for stray in folder.glob("*.bin"):
        if stray.name not in names:
            stray.unlink()


def measure_published(reports_dir: Path, dataset: str, submissions: list[str] | None = None, sandboxed: bool = True,
                      log: Callable[[str], None] = print) -> list[str]:
    """The perceptual columns (:mod:`bench.perceptual`) of every published row whose files are
    here, decoded again from those files, written into the run's rows.csv and per_image.csv;
    the runs measured. Rows measured before are read from each run's cache."""
    from bench.perceptual import add_to_run

    ds = open_dataset(dataset)
    images = list(ds.images())
    done = []
    for rows_csv in sorted((Path(reports_dir) / ds.name / "runs").glob("*/rows.csv")):
        rows = read_csv(rows_csv)
        ok = [r for r in rows if r["status"] == "ok" and len(list(_folder(r).glob("*.bin"))) == int(r["images"])]
        if not ok or (submissions and ok[0]["submission"] not in submissions):
            continue
        sub = get_submission(ok[0]["submission"])
        lines = read_csv(rows_csv.parent / "per_image.csv")
        remote = RemoteCodec(sub, sandboxed)
        try:
            add_to_run(remote, "cpu", images, ok, lines, rows_csv.parent, log)
        finally:
            remote.close()
        write_csv(rows_csv.parent / "per_image.csv", lines, PER_IMAGE_COLUMNS)
        write_csv(rows_csv, rows, ROW_COLUMNS)
        done.append(sub.name)
    return done
