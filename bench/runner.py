"""The runner: image × operating point → encode → file on disk → decode from the file → metrics.

Everything the rate controller asks for goes through :meth:`Runner.evaluate`, which answers
from the cache (same submission content, same image bytes, same point) or runs the missing
jobs in parallel (joblib, or Dask with ``backend="dask"``) and appends each finished record
to the run's log at once, so an interrupted run loses at most the jobs in flight.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from bench.codec import BitstreamError, Codec
from bench.data import Image
from bench.metrics import image_metrics
from bench.results import RecordStore, atomic_write_bytes
from bench.submission import Submission

_CODECS: dict[tuple[str, str], Codec] = {}


def point_key(point: Any) -> str:
    """A stable, file-name-safe text for an operating point (part of the cache key)."""
    if isinstance(point, float):
        return repr(round(point, 6))
    return str(point).replace("/", "_").replace(" ", "_")


def _codec(sub: Submission, content_hash: str) -> Codec:
    """One codec instance per process and submission (models load once, not per image)."""
    key = (str(sub.root), content_hash)
    if key not in _CODECS:
        _CODECS[key] = sub.make_codec()
    return _CODECS[key]


@dataclass(frozen=True)
class Job:
    image: Image
    point: Any
    path: Path    # where the bitstream goes (relative to the repo: see Runner)


def device_label(threads: int) -> str:
    """Where a timing or a decode ran: ``cpu (N threads)`` or ``cuda (<GPU name>)``."""
    import torch

    return f"cpu ({threads} threads)" if not torch.cuda.is_available() else f"cuda ({torch.cuda.get_device_name(0)})"


def decoded_hash(pixels: np.ndarray) -> str:
    """Fingerprint of a decoded image: ``bench verify`` decodes again in another process and
    compares, which checks that decoding is bit-exact, not only close."""
    a = np.ascontiguousarray(pixels, dtype=np.uint8)
    return hashlib.sha256(repr(a.shape).encode() + a.tobytes()).hexdigest()[:16]


def execute(sub: Submission, content_hash: str, job: Job, threads: int = 1) -> dict:
    """Run one job in this process and return its record (see module doc)."""
    import torch

    torch.set_num_threads(threads)
    codec = _codec(sub, content_hash)
    img = job.image
    t0 = time.perf_counter()
    data = codec.encode(img.pixels, job.point)
    enc_s = time.perf_counter() - t0
    if not isinstance(data, (bytes, bytearray)) or not data:
        raise TypeError(f"{sub.name}: encode must return non-empty bytes, got {type(data).__name__}")
    atomic_write_bytes(job.path, bytes(data))
    on_disk = job.path.read_bytes()
    t0 = time.perf_counter()
    decoded = codec.decode(on_disk)
    dec_s = time.perf_counter() - t0
    decoded = np.asarray(decoded)
    if decoded.dtype != np.uint8:
        decoded = np.clip(np.round(decoded), 0, 255).astype(np.uint8)
    if decoded.shape != img.pixels.shape:
        raise BitstreamError(f"{sub.name}: decoded {decoded.shape} from {job.path.name}, "
                             f"the original is {img.pixels.shape}")
    rec = {
        "submission": sub.name, "content_hash": content_hash, "image_id": img.id, "image_sha256": img.sha256,
        "height": img.height, "width": img.width, "point": job.point, "point_key": point_key(job.point),
        "bytes": len(on_disk), "bpp": len(on_disk) * 8 / img.num_pixels, "file": str(job.path),
        "enc_s": enc_s, "dec_s": dec_s, "device": device_label(threads),
        "decoded_sha256": decoded_hash(decoded),
    }
    rec |= image_metrics(img.pixels, decoded)
    rec |= {f"x_{k}": v for k, v in codec.measure(img.pixels, job.point, on_disk).items()}
    return rec


class Runner:
    """Evaluates (image id, point) pairs for one submission on one dataset, with a cache."""

    def __init__(self, sub: Submission, images: list[Image], run_dir: Path, jobs: int = 1,
                 backend: str = "joblib", scheduler: str | None = None, progress: bool = True,
                 log: Callable[[str], None] = print) -> None:
        self.sub = sub
        self.images = {im.id: im for im in images}
        self.run_dir = Path(run_dir)
        self.content_hash = sub.content_hash()
        self.store = RecordStore(self.run_dir / "records.jsonl")
        self.jobs, self.backend, self.scheduler = max(1, jobs), backend, scheduler
        self.progress, self.log = progress, log
        self.computed = 0
        self.failures: list[str] = []
        self.failed_images: set[str] = set()   # ids of images with at least one failed job

    def session(self):
        """A context that keeps the backend's workers up across rounds of :meth:`evaluate`
        (one Dask cluster for the whole run, not one per round); a no-op for joblib."""
        if self.backend == "dask":
            from bench.distributed import dask_session

            return dask_session(self.scheduler, self.jobs)
        from contextlib import nullcontext

        return nullcontext()

    def bitstream_path(self, image: Image, point: Any) -> Path:
        return self.run_dir / "cache" / self.content_hash / point_key(point) / f"{image.id}.bin"

    def cached(self, image_id: str, point: Any) -> dict | None:
        im = self.images[image_id]
        rec = self.store.get(self.content_hash, im.sha256, point_key(point))
        if rec is not None and not (self.run_dir / rec["file"]).exists():
            return None  # bitstream deleted: recompute rather than report a file that is gone
        return rec

    def evaluate(self, requests: list[tuple[str, Any]]) -> list[dict]:
        """Records for the requested pairs (cached or computed); failed jobs are left out and
        listed in ``failures`` so one bad image does not stop the others."""
        todo = [Job(self.images[i], p, self.bitstream_path(self.images[i], p))
                for i, p in dict.fromkeys(requests) if self.cached(i, p) is None]
        for rec in self._run(todo):
            rec["file"] = str(Path(rec["file"]).relative_to(self.run_dir))
            self.store.append(rec)
            self.computed += 1
        out = []
        for i, p in requests:
            rec = self.cached(i, p)
            if rec is not None:
                out.append(rec)
        return out

    def _run(self, jobs: list[Job]) -> Iterator[dict]:
        if not jobs:
            return
        from tqdm import tqdm

        bar = tqdm(total=len(jobs), desc=f"{self.sub.name}", unit="job", disable=not self.progress,
                   leave=False, dynamic_ncols=True)
        try:
            for job, result in self._dispatch(jobs):
                bar.update(1)
                if isinstance(result, BaseException):
                    msg = f"{job.image.id} @ {point_key(job.point)}: {type(result).__name__}: {result}"
                    self.failures.append(msg)
                    self.failed_images.add(job.image.id)
                    self.log(f"[run] job failed: {msg}")
                    continue
                yield result
        finally:
            bar.close()

    def _dispatch(self, jobs: list[Job]) -> Iterator[tuple[Job, Any]]:
        if self.backend == "dask":
            from bench.distributed import dask_map

            yield from dask_map(self.sub, self.content_hash, jobs, self.scheduler, self.jobs)
        elif self.jobs == 1:
            threads = default_threads(self.jobs)
            for job in jobs:
                yield job, _safe_execute(self.sub, self.content_hash, job, threads)
        else:
            from joblib import Parallel, delayed

            par = Parallel(n_jobs=self.jobs, return_as="generator_unordered", backend="loky")
            threads = default_threads(self.jobs)
            calls = (delayed(_indexed)(k, self.sub, self.content_hash, job, threads) for k, job in enumerate(jobs))
            for k, result in par(calls):
                yield jobs[k], result


def default_threads(jobs: int) -> int:
    """Torch threads per job: ``BENCH_THREADS`` or the cores shared out among the jobs."""
    if os.environ.get("BENCH_THREADS"):
        return max(1, int(os.environ["BENCH_THREADS"]))
    return max(1, (os.cpu_count() or 1) // jobs)


def _safe_execute(sub: Submission, content_hash: str, job: Job, threads: int) -> Any:
    try:
        return execute(sub, content_hash, job, threads)
    except Exception as e:  # reported per job by the caller; the run goes on
        return e


def _indexed(k: int, sub: Submission, content_hash: str, job: Job, threads: int) -> tuple[int, Any]:
    return k, _safe_execute(sub, content_hash, job, threads)
