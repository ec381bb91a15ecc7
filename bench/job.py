"""One job: image × operating point → encode → file on disk → decode from the file → metrics.

Both backends run jobs through :func:`safe_execute`: the local one (joblib, in this process
or in loky workers) and Dask's workers (``bench/distributed.py``). A job's record is the
same wherever it ran; only the ``device`` label says where.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from bench.codec import BitstreamError, Codec, JobMeasures, overhead_pct
from bench.data import Image
from bench.device import DeviceError, device_label
from bench.heap import keep_heap_in_loky_worker
from bench.limits import check_declared_size, check_pixels, job_memory
from bench.metrics import image_metrics
from bench.results import atomic_write_bytes
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


def decoded_hash(pixels: np.ndarray) -> str:
    """Fingerprint of a decoded image: ``bench verify`` decodes again in another process and
    compares, which checks that decoding is bit-exact, not only close."""
    a = np.ascontiguousarray(pixels, dtype=np.uint8)
    return hashlib.sha256(repr(a.shape).encode() + a.tobytes()).hexdigest()[:16]


def placed_codec(sub: Submission, content_hash: str, device: str = "cpu") -> Codec:
    """The process's codec with its networks on ``device`` (DeviceError when the codec cannot
    run there: the message names the devices it can)."""
    codec = _codec(sub, content_hash)
    if codec.device != device:
        if device.split(":")[0] not in codec.devices:
            raise DeviceError(device_refusal(sub.name, codec.devices, device))
        codec.place(device)
    return codec


def device_refusal(name: str, devices: tuple[str, ...], device: str) -> str:
    return f"{name} runs on {' or '.join(devices)} only, not on {device}; run it with --device {devices[0]}"


def _ready(sub: Submission, content_hash: str, job: Job, threads: int, device: str) -> Codec:
    """The process's codec at ``threads`` torch threads on ``device``, once the image is known
    to be under the pixel cap (its file would be refused: do not code it)."""
    import torch

    torch.set_num_threads(threads)
    check_pixels(job.image.height, job.image.width, job.image.id)
    return placed_codec(sub, content_hash, device)


def _identity(sub: Submission, content_hash: str, job: Job) -> dict:
    """What a record is about: its cache key (content, image bytes, point) and the image."""
    img = job.image
    return {"submission": sub.name, "content_hash": content_hash, "image_id": img.id, "image_sha256": img.sha256,
            "height": img.height, "width": img.width, "point": job.point, "point_key": point_key(job.point)}


def _code(sub: Submission, codec: Codec, job: Job, threads: int) -> tuple[bytes, np.ndarray, dict[str, float]]:
    """Encode → file → read back → decode from the file, under the job's memory ceiling; the
    file's bytes, the decoded uint8 image and the seconds of each step."""
    img = job.image
    with job_memory(img.num_pixels, img.id, threads):
        t0 = time.perf_counter()
        data = codec.encode(img.pixels, job.point)
        t1 = time.perf_counter()
        if not isinstance(data, (bytes, bytearray)) or not data:
            raise TypeError(f"{sub.name}: encode must return non-empty bytes, got {type(data).__name__}")
        atomic_write_bytes(job.path, bytes(data))
        on_disk = job.path.read_bytes()
        check_declared_size(codec, on_disk, (img.height, img.width), f"{sub.name}: {job.path.name}")
        t2 = time.perf_counter()
        decoded = codec.decode(on_disk)
        t3 = time.perf_counter()
    decoded = np.asarray(decoded)
    if decoded.dtype != np.uint8:
        decoded = np.clip(np.round(decoded), 0, 255).astype(np.uint8)
    if decoded.shape != img.pixels.shape:
        raise BitstreamError(f"{sub.name}: decoded {decoded.shape} from {job.path.name}, "
                             f"the original is {img.pixels.shape}")
    return on_disk, decoded, {"enc_s": t1 - t0, "file_s": t2 - t1, "dec_s": t3 - t2}


def execute(sub: Submission, content_hash: str, job: Job, threads: int = 1, device: str = "cpu") -> dict:
    """Run one job in this process and return its record (see module doc). Besides the codec's
    ``enc_s`` and ``dec_s`` it times the file write and read-back (``file_s``), the metrics
    (``metrics_s``), the codec's ``measure`` (``measure_s``) and the whole job (``job_s``), so
    the harness's own share of a job can be read off its records."""
    t_job = time.perf_counter()
    codec = _ready(sub, content_hash, job, threads, device)
    img = job.image
    on_disk, decoded, times = _code(sub, codec, job, threads)
    rec = _identity(sub, content_hash, job) | {
        "bytes": len(on_disk), "bpp": len(on_disk) * 8 / img.num_pixels, "file": str(job.path),
        **times, "device": device_label(codec.device, threads), "decoded_sha256": decoded_hash(decoded),
    }
    t0 = time.perf_counter()
    rec |= image_metrics(img.pixels, decoded)
    t1 = time.perf_counter()
    measures = codec.measure(img.pixels, job.point, on_disk)
    if not isinstance(measures, JobMeasures):
        raise TypeError(f"{sub.name}: measure must return bench.codec.JobMeasures, got {type(measures).__name__}")
    rec |= measures.as_record()
    if measures.est_bits:
        rec["overhead_pct"] = overhead_pct(measures.est_bits, len(on_disk))
    t2 = time.perf_counter()
    return rec | {"metrics_s": t1 - t0, "measure_s": t2 - t1, "job_s": t2 - t_job}


def probe(sub: Submission, content_hash: str, job: Job, threads: int = 1, device: str = "cpu") -> dict | None:
    """The codec's estimate of ``job`` (no entropy coding, no file) as a record marked
    ``"estimated": True``, with the metrics of its reconstruction; None when the codec offers
    no estimate. Rate control sweeps with these; nothing reported comes from them."""
    t0 = time.perf_counter()
    codec = _ready(sub, content_hash, job, threads, device)
    img = job.image
    with job_memory(img.num_pixels, img.id, threads):
        est = codec.estimate(img.pixels, job.point)
    if est is None:
        return None
    decoded = np.asarray(est.decoded)
    if decoded.dtype != np.uint8 or decoded.shape != img.pixels.shape:
        raise TypeError(f"{sub.name}: estimate returned a {decoded.dtype} {decoded.shape} reconstruction for a "
                        f"{img.pixels.shape} image (uint8 of the original's shape expected)")
    return _identity(sub, content_hash, job) | {
        "bytes": int(est.bytes), "bpp": int(est.bytes) * 8 / img.num_pixels, "estimated": True,
        **image_metrics(img.pixels, decoded), "probe_s": time.perf_counter() - t0}


def default_threads(jobs: int) -> int:
    """Torch threads per job: ``BENCH_THREADS`` or the cores shared out among the jobs."""
    if os.environ.get("BENCH_THREADS"):
        return max(1, int(os.environ["BENCH_THREADS"]))
    return max(1, (os.cpu_count() or 1) // jobs)


class ProcessRetired(Exception):
    """The job did not run: an earlier job in this process ran out of memory, and native code
    can keep such a failure (oneDNN's process-wide primitive cache: every later convolution,
    small images included, failed with "could not create a primitive"). The process takes no
    more jobs; the runner gives this one to a fresh process."""


_OUT_OF_MEMORY: list[str] = []   # the job that ran out of memory in this process, once one has


def process_retired() -> bool:
    """True once a job in this process has run out of memory (see :class:`ProcessRetired`)."""
    return bool(_OUT_OF_MEMORY)


def safe_execute(sub: Submission, content_hash: str, job: Job, threads: int, fn: Callable = execute,
                 device: str = "cpu") -> Any:
    """``fn`` (a job, or its estimate) with any exception returned, not raised; a
    :class:`ProcessRetired`, without running it, once a job in this process ran out of memory."""
    if _OUT_OF_MEMORY:
        return ProcessRetired(f"process {os.getpid()} takes no more jobs: {_OUT_OF_MEMORY[0]} ran out of memory in it")
    try:
        return fn(sub, content_hash, job, threads, device)
    except MemoryError as e:
        _OUT_OF_MEMORY.append(f"{job.image.id} @ {point_key(job.point)}")
        return e
    except Exception as e:  # reported per job by the caller; the run goes on
        return e


def in_worker(sub: Submission, content_hash: str, job: Job, threads: int, device: str, fn: Callable = execute) -> Any:
    """One job (or its estimate) in a loky worker: :func:`safe_execute` with the worker's heap kept."""
    keep_heap_in_loky_worker()
    return safe_execute(sub, content_hash, job, threads, fn, device)
