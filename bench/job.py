"""One job: image × operating point → encode → file on disk → decode from the file → metrics.

The codec runs in two sandboxed worker processes (:mod:`bench.sandbox.client`): the encoder
gets the image and returns the file's bytes; the harness writes the file and reads it back;
the decoder, which never saw the image, gets those bytes; the harness computes the metrics.
Both backends run jobs through :func:`safe_execute`: the local one (joblib, in this process
or in loky workers) and Dask's workers (``bench/distributed.py``). A job's record is the same
wherever it ran; only the ``device`` label says where.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.atomic import atomic_write_bytes
from bench.cachekey import point_key
from bench.codec import BitstreamError, overhead_pct
from bench.data import Image
from bench.device import device_label
from bench.heap import keep_heap_in_loky_worker
from bench.limits import check_pixels
from bench.metrics import image_metrics
from bench.records import JobRecord
from bench.sandbox.client import RemoteCodec, remote_codec
from bench.submission import Submission


@dataclass(frozen=True)
class Job:
    image: Image
    point: Any
    path: Path    # where the bitstream goes (relative to the repo: see Runner)


@dataclass(frozen=True)
class JobContext:
    """How a run's jobs run: the submission, its run hash (the cache key's first part), torch
    threads per job, the device of the networks, whether the codec runs sandboxed, and the
    hash of its files (which codec processes hold it: :func:`bench.sandbox.client.remote_codec`)."""

    sub: Submission
    content_hash: str
    threads: int = 1
    device: str = "cpu"
    sandboxed: bool = True
    files_hash: str = ""

    def codec(self) -> RemoteCodec:
        """This process's codec workers for the run (started by the first job here)."""
        return remote_codec(self.sub, self.files_hash or self.content_hash, self.sandboxed,
                            self.device.startswith("cuda"))

    @property
    def sandbox(self) -> str:
        return "bwrap" if self.sandboxed else "off"


def decoded_hash(pixels: np.ndarray) -> str:
    """Fingerprint of a decoded image: ``bench verify`` decodes again in another process and
    compares, which checks that decoding is bit-exact, not only close."""
    a = np.ascontiguousarray(pixels, dtype=np.uint8)
    return hashlib.sha256(repr(a.shape).encode() + a.tobytes()).hexdigest()[:16]


def _identity(ctx: JobContext, job: Job) -> JobRecord:
    """What a record is about: its cache key (content, image bytes, point) and the image."""
    img = job.image
    return {"submission": ctx.sub.name, "content_hash": ctx.content_hash, "image_id": img.id,
            "image_sha256": img.sha256, "height": img.height, "width": img.width, "point": job.point,
            "point_key": point_key(job.point)}


def execute(ctx: JobContext, job: Job) -> JobRecord:
    """Run one job and return its record (see module doc). Besides encode and decode (each
    timed around its request to the worker) it times the file write and read-back (``file_s``),
    the metrics (``metrics_s``) and the whole job (``job_s``), so the harness's own share of a
    job can be read off its records."""
    t_job = time.perf_counter()
    img, name = job.image, ctx.sub.name
    check_pixels(img.height, img.width, img.id)        # an image above the cap is not coded at all
    codec = ctx.codec()
    t0 = time.perf_counter()
    enc = codec.encode(img.pixels, job.point, ctx.threads, ctx.device, f"{name}: {img.id} @ {point_key(job.point)}")
    t1 = time.perf_counter()
    atomic_write_bytes(job.path, enc.data)
    on_disk = job.path.read_bytes()
    t2 = time.perf_counter()
    dec = codec.decode(on_disk, (img.height, img.width), ctx.threads, ctx.device, f"{name}: {job.path.name}")
    t3 = time.perf_counter()
    if dec.pixels.shape != img.pixels.shape:
        raise BitstreamError(f"{name}: decoded {dec.pixels.shape} from {job.path.name}, "
                             f"the original is {img.pixels.shape}")
    rec = _identity(ctx, job) | {
        "bytes": len(on_disk), "bpp": len(on_disk) * 8 / img.num_pixels, "file": str(job.path),
        "enc_s": t1 - t0, "file_s": t2 - t1, "dec_s": t3 - t2, "device": device_label(ctx.device, ctx.threads),
        "sandbox": ctx.sandbox, "decoded_sha256": decoded_hash(dec.pixels)}
    t4 = time.perf_counter()
    rec |= image_metrics(img.pixels, dec.pixels)
    measures = enc.measures.merged(dec.measures)
    rec |= measures.as_record()
    if measures.est_bits:
        rec["overhead_pct"] = overhead_pct(measures.est_bits, len(on_disk))
    t5 = time.perf_counter()
    return rec | {"metrics_s": t5 - t4, "job_s": t5 - t_job}


def probe(ctx: JobContext, job: Job) -> JobRecord | None:
    """The codec's estimate of ``job`` (no entropy coding, no file) as a record marked
    ``"estimated": True``, with the metrics of its reconstruction; None when the codec offers
    no estimate. Rate control sweeps with these; nothing reported comes from them."""
    t0 = time.perf_counter()
    img = job.image
    check_pixels(img.height, img.width, img.id)
    est = ctx.codec().estimate(img.pixels, job.point, ctx.threads, ctx.device,
                               f"{ctx.sub.name}: {img.id} @ {point_key(job.point)}")
    if est is None:
        return None
    if est.decoded.shape != img.pixels.shape:
        raise TypeError(f"{ctx.sub.name}: estimate returned a {est.decoded.shape} reconstruction for a "
                        f"{img.pixels.shape} image (uint8 of the original's shape expected)")
    return _identity(ctx, job) | {
        "bytes": int(est.bytes), "bpp": int(est.bytes) * 8 / img.num_pixels, "estimated": True,
        **image_metrics(img.pixels, est.decoded), "probe_s": time.perf_counter() - t0}


def default_threads(jobs: int) -> int:
    """Torch threads per job: ``BENCH_THREADS`` or the cores shared out among the jobs."""
    if os.environ.get("BENCH_THREADS"):
        return max(1, int(os.environ["BENCH_THREADS"]))
    return max(1, (os.cpu_count() or 1) // jobs)


def safe_execute(ctx: JobContext, job: Job, fn: Callable = execute) -> Any:
    """``fn`` (a job, or its estimate) with any exception returned, not raised."""
    try:
        return fn(ctx, job)
    except Exception as e:  # reported per job by the caller; the run goes on
        return e


def in_worker(ctx: JobContext, job: Job, fn: Callable = execute) -> Any:
    """One job (or its estimate) in a loky worker: :func:`safe_execute` with the worker's heap kept."""
    keep_heap_in_loky_worker()
    return safe_execute(ctx, job, fn)
