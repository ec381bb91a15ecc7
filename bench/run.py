"""One benchmark job: a submission on a dataset, rate-controlled to the targets, written out.

Flow: dataset → images; runner (cached) ← rate control asks for points; each selection →
a bitstream folder with exactly one file per image, a leaderboard row and per-image rows;
the full RD curve → rd.csv; run.json. The caller (the CLI) rebuilds the dataset's report.
"""

from __future__ import annotations

import hashlib
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from bench.budget_note import budget_note
from bench.cachekey import point_key
from bench.codec import JobMeasures, measure_columns
from bench.data import Dataset, DatasetError, Image, open_dataset
from bench.metrics import aggregate
from bench.paths import REPO_ROOT, REPORTS_DIR, SUBMISSIONS_DIR
from bench.perceptual import add_to_run as add_perceptual
from bench.ratecontrol import Selection, rate_control
from bench.records import JobsFailed
from bench.results import (
    PER_IMAGE_COLUMNS,
    RD_COLUMNS,
    ROW_COLUMNS,
    ROW_KEY,
    merge_rows,
    run_info,
    write_csv,
    write_json,
)
from bench.runner import Runner
from bench.sandbox.client import RemoteCodec
from bench.submission import Submission, get_submission

DEFAULT_TARGETS = (0.075, 0.15, 0.3)
PROBES = ("estimate", "none")


@dataclass
class RunResult:
    run_dir: Path
    rows: list[dict]
    computed: int          # jobs actually encoded this time (0 on a fully cached re-run)
    seconds: float
    errors: list[str]
    estimated: int = 0     # estimates computed this time (the probe's network passes)


def load_images(ds: Dataset, log) -> tuple[list[Image], list[str]]:
    """All usable images; bad ones are named in the errors and skipped, duplicates dropped."""
    errors: list[str] = []
    images, seen = [], {}
    for im in ds.images(errors):
        if im.sha256 in seen:
            errors.append(f"{im.id}: duplicate of {seen[im.sha256]} (same bytes); counted once")
            continue
        seen[im.sha256] = im.id
        for n in im.notes:
            log(f"[data] {im.id}: {n}")
        images.append(im)
    for e in errors:
        log(f"[data] skipped: {e}")
    if not images:
        raise DatasetError(f"dataset {ds.name}: no usable images ({len(errors)} rejected: "
                           f"{'; '.join(errors[:3])}{'…' if len(errors) > 3 else ''})")
    return images, errors


def _bitstream_folder(run_dir: Path, sel: Selection) -> Path:
    """``clic-0.15``; another objective than MS-SSIM (the default, whose folders keep the names
    they always had) is named in it: ``clic-psnr-0.15``."""
    rule = sel.mode if sel.objective == "msssim" else f"{sel.mode}-{sel.objective}"
    return run_dir / "bitstreams" / f"{rule}-{sel.target_bpp:g}"


def _publish(sel: Selection, run_dir: Path, images: list[Image]) -> Path:
    """Copy the chosen files into a fresh folder named after the row: one file per image."""
    folder = _bitstream_folder(run_dir, sel)
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for im in images:
        if im.id in sel.chosen:
            shutil.copyfile(run_dir / sel.chosen[im.id]["file"], folder / f"{im.id}.bin")
    return folder


def _row(sub: Submission, dataset: str, sel: Selection, images: list[Image], folder: Path | None,
         info: dict, device: str, sandbox: str) -> dict:
    row = {"submission": sub.name, "dataset": dataset, "target_bpp": sel.target_bpp, "mode": sel.mode,
           "objective": sel.objective, "status": sel.status, "images": len(images), "budget_bytes": sel.budget_bytes,
           "lowest_bpp": sel.lowest_bpp, "note": sel.note, "date": info["date"], "commit": info["commit"],
           "device": device, "sandbox": sandbox}
    if sel.status == "ok":
        recs = [sel.chosen[im.id] for im in images]
        s = aggregate(recs)
        row |= {"bytes": s.bytes, "bpp": s.bpp, "psnr": s.psnr, "msssim": s.msssim, "msssim_db": s.msssim_db,
                "psnr_mean": s.psnr_mean, "msssim_mean": s.msssim_mean,
                "enc_s": sum(r["enc_s"] for r in recs), "dec_s": sum(r["dec_s"] for r in recs),
                "bitstreams": str(folder.relative_to(REPO_ROOT) if folder.is_relative_to(REPO_ROOT) else folder)}
        if s.msssim_skipped:
            row["note"] = (row["note"] + "; " if row["note"] else "") + \
                f"{s.msssim_skipped} images too small for MS-SSIM (excluded from its mean)"
    return row


def learned_columns(codec: RemoteCodec, sel: Selection, images: list[Image]) -> dict:
    """Complexity and rate-accounting columns for codecs that report them (learned ones):
    the codec's :class:`~bench.codec.Complexity` per image (asked of its sandboxed encoder in
    one request) and the :class:`~bench.codec.JobMeasures` stored in each chosen record,
    summed up by :func:`bench.codec.measure_columns`."""
    recs = [sel.chosen[im.id] for im in images]
    costs = codec.complexity([(r["point"], im.height, im.width) for r, im in zip(recs, images)])
    return measure_columns(costs, [JobMeasures.from_record(r) for r in recs], [r["bytes"] for r in recs],
                           sum(im.num_pixels for im in images))


def rd_curve(sub: Submission, runner: Runner, images: list[Image]) -> list[dict]:
    """CLIC aggregates at every point of the first sweep that every image has: its coded
    record, else (``--probe estimate`` sweeps without coding) its estimate. ``estimated``
    counts the images whose bytes are the codec's estimate there (the metrics are of the
    estimate's reconstruction, the decoder's image); 0: every byte from a file. ``enc_s`` and
    ``dec_s``: mean seconds per coded image at that point."""
    rows = []
    for p in sub.points.initial():
        recs = [runner.cached(im.id, p) or runner.cached_estimate(im.id, p) for im in images]
        if all(recs):
            s = aggregate(recs)
            coded = [r for r in recs if not r.get("estimated")]
            rows.append({"submission": sub.name, "point": p, "images": s.images, "bytes": s.bytes, "bpp": s.bpp,
                         "psnr": s.psnr, "msssim": s.msssim, "msssim_db": s.msssim_db,
                         "psnr_mean": s.psnr_mean, "msssim_mean": s.msssim_mean,
                         "estimated": sum(bool(r.get("estimated")) for r in recs),
                         # seconds per image, over the images whose point was coded
                         "enc_s": sum(r["enc_s"] for r in coded) / len(coded) if coded else None,
                         "dec_s": sum(r["dec_s"] for r in coded) / len(coded) if coded else None})
    return sorted(rows, key=lambda r: r["bpp"])


def run_benchmark(submission: str, dataset: str = "kodak", targets=DEFAULT_TARGETS, mode: str = "clic",
                  objective: str = "msssim", jobs: int = 1, limit: int | None = None,
                  reports_dir: Path = REPORTS_DIR, backend: str = "joblib", scheduler: str | None = None,
                  progress: bool = True, log=print, submissions_root: Path = SUBMISSIONS_DIR,
                  allow_16bit: bool = False, probe: str = "none", device: str = "cpu",
                  sandboxed: bool = True) -> RunResult:
    """Run ``submission`` on ``dataset`` and write ``runs/<submission>/``; the caller rebuilds the
    dataset's report (:func:`bench.report.build_report`) when it wants the page updated.

    ``probe="estimate"``: rate control sweeps and brackets with the codec's estimates (where it
    offers them) and codes for real only the points it settles on (:func:`bench.ratecontrol.rate_control`);
    ``"none"``: every point it looks at is coded. Reported numbers come from real files either way.
    ``device``: where a learned codec's networks run (:mod:`bench.device`); ``sandboxed=False``
    runs the codec's processes without the sandbox (:mod:`bench.sandbox`; rows say so)."""
    if probe not in PROBES:
        raise ValueError(f"unknown probe {probe!r}; allowed: {PROBES}")
    t0 = time.perf_counter()
    sub = get_submission(submission, submissions_root)
    ds = open_dataset(dataset, limit=limit, allow_16bit=allow_16bit)
    images, errors = load_images(ds, log)
    dataset_dir = Path(reports_dir) / ds.name
    run_dir = dataset_dir / "runs" / sub.name
    runner = Runner(sub, images, run_dir, jobs=jobs, backend=backend, scheduler=scheduler, progress=progress, log=log,
                    device=device, sandboxed=sandboxed)
    with runner.session():
        images, selections = _rate_control(sub, runner, images, list(targets), mode, objective, log,
                                           runner.estimate if probe == "estimate" else None)
    errors += runner.failures
    errors += [f"{i}: left out of the run (its codec job failed, see above)" for i in sorted(runner.failed_images)]
    info = run_info(submission=sub.name, description=sub.description, content_hash=runner.content_hash,
                    dataset=ds.name, settings={"targets": list(targets), "mode": mode, "objective": objective,
                                               "policy": sub.policy, "jobs": jobs, "backend": backend,
                                               "probe": probe, "device": runner.device,
                                               **({"device_identity": runner.identity} if runner.identity else {}),
                                               "sandbox": "bwrap" if sandboxed else "off"},
                    image_notes=[f"{im.id}: {n}" for im in images for n in im.notes], errors=errors)
    device, sandbox = _chosen(selections, "device", "cpu"), _chosen(selections, "sandbox", info["settings"]["sandbox"])
    info["device"], info["sandbox"] = device, sandbox
    rows, per_image = [], []
    for sel in selections:
        folder = _publish(sel, run_dir, images) if sel.status == "ok" else None
        rows.append(_row(sub, ds.name, sel, images, folder, info, _chosen([sel], "device", device), sandbox))
        if sel.status == "ok":
            rows[-1] |= learned_columns(runner.remote, sel, images)
            why = budget_note(sel, sub.points, sub.policy, sum(im.num_pixels for im in images), runner.cached)
            if why:
                rows[-1] |= {"budget_limited": True, "note": "; ".join(n for n in (rows[-1]["note"], why) if n)}
        per_image += _per_image_rows(sub, ds.name, sel, images, folder, runner)
    add_perceptual(runner.remote, runner.device, images, rows, per_image, run_dir, log)  # chosen points only
    write_csv(run_dir / "rows.csv", merge_rows(run_dir / "rows.csv", rows, ROW_KEY), ROW_COLUMNS)
    write_csv(run_dir / "per_image.csv", merge_rows(run_dir / "per_image.csv", per_image, ROW_KEY + ("image_id",)),
              PER_IMAGE_COLUMNS)
    write_csv(run_dir / "rd.csv", rd_curve(sub, runner, images), RD_COLUMNS)
    seconds = time.perf_counter() - t0
    # what this run cost (a cached re-run: few jobs, few seconds)
    info["cost"] = {"wall_s": round(seconds, 1), "jobs_coded": runner.computed, "points_estimated": runner.estimated}
    write_json(run_dir / "run.json", info)
    return RunResult(run_dir, rows, runner.computed, seconds, errors, runner.estimated)


# the per-image columns taken from the chosen record (those before image_id name the row)
RECORD_COLUMNS = PER_IMAGE_COLUMNS[PER_IMAGE_COLUMNS.index("image_id"):]


def _per_image_rows(sub: Submission, dataset: str, sel: Selection, images: list[Image], folder: Path | None,
                    runner: Runner) -> list[dict]:
    """One row per image of a selection: the chosen record, its published file, and how many
    of the image's points were estimated and how many coded in this run."""
    rows = []
    for im in images:
        if im.id in sel.chosen:
            r = sel.chosen[im.id]
            file = folder / f"{im.id}.bin"
            rows.append({"submission": sub.name, "dataset": dataset, "target_bpp": sel.target_bpp, "mode": sel.mode,
                         "objective": sel.objective, **{k: r[k] for k in RECORD_COLUMNS if k in r},
                         "point": point_key(r["point"]),
                         "file": str(file.relative_to(REPO_ROOT)) if file.is_relative_to(REPO_ROOT) else str(file),
                         "file_sha256": hashlib.sha256(file.read_bytes()).hexdigest(),
                         "points_estimated": len(runner.points[im.id]["estimated"]),
                         "points_coded": len(runner.points[im.id]["coded"])})
    return rows


def _rate_control(sub: Submission, runner: Runner, images: list[Image], targets: list[float], mode: str,
                  objective: str, log, estimate) -> tuple[list[Image], list[Selection]]:
    """Rate control over ``images``. An image whose codec job fails (the codec raised, or
    decoded a wrong shape: :class:`~bench.records.JobsFailed`) is named in the errors and left
    out, and rate control runs again on the rest: their records are cached, so nothing is
    encoded twice. One bad image does not stop the run."""
    while True:
        try:
            return images, rate_control({im.id: im.num_pixels for im in images}, sub.points, runner.evaluate,
                                        targets, mode=mode, objective=objective, policy=sub.policy, estimate=estimate)
        except JobsFailed as failed:
            bad = {im.id for im in images} & failed.images
            if not bad:
                raise
            images = [im for im in images if im.id not in bad]
            log(f"[run] left out after failed jobs: {', '.join(sorted(bad))}")
            if not images:
                raise DatasetError(f"{sub.name}: every image failed to code; first errors: "
                                   f"{'; '.join(runner.failures[:3])}") from None


def _chosen(selections: list[Selection], key: str, default: str) -> str:
    """``key`` of the chosen records (device, sandbox): the cache keeps other devices', other
    GPUs' and unsandboxed records apart, so they agree; where they still differ (CPU records
    coded with other thread counts) every value is named, never one record's for all."""
    values = sorted({str(rec.get(key, default)) for sel in selections for rec in sel.chosen.values()})
    return " + ".join(values) if values else default
