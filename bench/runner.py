"""The runner: the cache and the scheduler of jobs (one job is :func:`bench.job.execute`).

Everything the rate controller asks for goes through :meth:`Runner.evaluate`, which answers
from the cache (same submission content, same image bytes, same point) or runs the missing
jobs in parallel (joblib, or Dask with ``backend="dask"``) and appends each finished record
to the run's log at once, so an interrupted run loses at most the jobs in flight.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bench.cachekey import point_key, run_hash
from bench.data import Image
from bench.device import (
    DeviceError,
    DeviceFailure,
    check_device,
    device_failure,
    device_identity,
    device_refusal,
    identity_tag,
    jobs_on,
)
from bench.job import Job, JobContext, default_threads, execute, in_worker, probe, safe_execute
from bench.progress import RunProgress
from bench.records import JobRecord, JobsFailed
from bench.results import RecordStore
from bench.sandbox.client import remote_codec
from bench.submission import Submission

_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


class Runner:
    """Evaluates (image id, point) pairs for one submission on one dataset, with a cache.

    ``device``: where the codec's networks run (checked here, before any job: this machine
    and the codec must both have it; on a GPU, one job at a time (:func:`bench.device.jobs_on`)
    and a GPU failure stops the run (:class:`bench.device.DeviceFailure`)). ``sandboxed``: the
    codec's processes run under bubblewrap (:mod:`bench.sandbox`); off only when asked, and then
    its records are cached apart (:func:`bench.cachekey.run_hash`) and say ``sandbox: off``."""

    def __init__(self, sub: Submission, images: list[Image], run_dir: Path, jobs: int = 1,
                 backend: str = "joblib", scheduler: str | None = None, progress: bool = True,
                 log: Callable[[str], None] = print, device: str = "cpu", sandboxed: bool = True) -> None:
        self.sub = sub
        self.images = {im.id: im for im in images}
        self.run_dir = Path(run_dir)
        self.device = check_device(device)
        self.sandboxed = sandboxed
        self.files_hash = sub.files_hash()
        self.remote = remote_codec(sub, self.files_hash, sandboxed, self.device.startswith("cuda"))
        info = self.remote.info()              # the codec's own process: a codec that cannot load says so here
        if self.device.split(":")[0] not in info.devices:
            raise DeviceError(device_refusal(sub.name, info.devices, self.device))
        self.identity = device_identity(self.device)     # GPU model and libraries: part of the cache key on CUDA
        self.content_hash = run_hash(sub.content_hash(info.versions, self.files_hash), self.device, sandboxed,
                                     identity_tag(self.identity))
        self.store = RecordStore(self.run_dir / "records.jsonl")
        self.estimates = RecordStore(self.run_dir / "estimates.jsonl")
        self.jobs, self.backend, self.scheduler = jobs_on(self.device, jobs), backend, scheduler
        self.log = log
        if self.jobs < jobs:
            log(f"[run] {self.device}: one job at a time on the GPU (asked for {jobs}): jobs sharing it would "
                "each time the other's kernels")
        self.progress = RunProgress(sub.name, enabled=progress)
        self.computed = 0
        self.failures: list[str] = []
        self.failed_images: set[str] = set()   # ids of images with at least one failed job
        self._pool = None                      # loky's executor, once a round has used it
        self.estimated = 0                     # estimates computed this time (0 on a cached re-run)
        self.points: dict[str, dict[str, set[str]]] = {i: {"estimated": set(), "coded": set()} for i in self.images}

    def context(self, workers: int) -> JobContext:
        return JobContext(self.sub, self.content_hash, default_threads(workers), self.device, self.sandboxed,
                          self.files_hash)

    def session(self):
        """A context that keeps the backend's workers up across rounds of :meth:`evaluate` (one
        Dask cluster for the whole run, not one per round) and the run's progress bar; it stops
        them at its end."""
        from contextlib import ExitStack

        stack = ExitStack()
        stack.callback(self.progress.close)
        stack.callback(self._stop_workers)
        if self.backend == "dask":
            from bench.distributed import dask_session

            stack.enter_context(dask_session(self.scheduler, self.jobs))
        return stack

    def _stop_workers(self) -> None:
        """Stop loky's workers and so their codec processes (each about 3 GB on a CLIC photo):
        the perceptual pass after the session decodes in one process and needs that memory."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def bitstream_path(self, image: Image, point: Any) -> Path:
        return self.run_dir / "cache" / self.content_hash / point_key(point) / f"{image.id}.bin"

    def cached(self, image_id: str, point: Any) -> JobRecord | None:
        im = self.images[image_id]
        rec = self.store.get(self.content_hash, im.sha256, point_key(point))
        if rec is not None and not (self.run_dir / rec["file"]).exists():
            return None  # bitstream deleted: recompute rather than report a file that is gone
        return rec

    def cached_estimate(self, image_id: str, point: Any) -> JobRecord | None:
        im = self.images[image_id]
        return self.estimates.get(self.content_hash, im.sha256, point_key(point))

    def evaluate(self, requests: list[tuple[str, Any]]) -> list[JobRecord]:
        """Records for the requested pairs (cached or computed). Failed jobs are listed in
        ``failures`` and raised together as :class:`JobsFailed` once the others are stored."""
        todo = [Job(self.images[i], p, self.bitstream_path(self.images[i], p))
                for i, p in dict.fromkeys(requests) if self.cached(i, p) is None]
        failed: list[tuple[str, str]] = []
        self.progress.plan(len(todo), "coding")
        for job, rec in self._round(todo, execute, self.jobs):
            self.progress.done()
            if isinstance(rec, BaseException):
                failed.append(self._failed(job.image.id, job.point, rec))
                continue
            rec["file"] = str(Path(rec["file"]).relative_to(self.run_dir))
            self.store.append(rec)
            self.computed += 1
        if failed:
            raise JobsFailed({i for i, _ in failed}, [m for _, m in failed])
        out = []
        for i, p in requests:
            rec = self.cached(i, p)
            if rec is not None:
                self.points[i]["coded"].add(point_key(p))
                out.append(rec)
        return out

    def estimate(self, requests: list[tuple[str, Any]]) -> list[JobRecord]:
        """Estimated records for the requested pairs (:func:`bench.job.probe`: one network pass,
        no file), cached in ``estimates.jsonl`` and computed one at a time in this process's
        encoder with all the cores' threads; pairs the codec cannot estimate are evaluated for
        real. A failed estimate is a failed job."""
        pairs = list(dict.fromkeys(requests))
        todo = [Job(self.images[i], p, Path()) for i, p in pairs if self.cached_estimate(i, p) is None]
        real, failed = [], []
        self.progress.plan(len(todo), "estimating")
        for job, rec in self._round(todo, probe, 1):
            self.progress.done()
            if isinstance(rec, BaseException):
                failed.append(self._failed(job.image.id, job.point, rec))
            elif rec is None:
                real.append((job.image.id, job.point))
            else:
                self.estimates.append(rec)
                self.estimated += 1
        if failed:
            raise JobsFailed({i for i, _ in failed}, [m for _, m in failed])
        out = []
        for i, p in pairs:
            rec = self.cached_estimate(i, p)
            if rec is not None:
                self.points[i]["estimated"].add(point_key(p))
                out.append(rec)
        return out + (self.evaluate(real) if real else [])

    def _failed(self, image_id: str, point: Any, error: BaseException) -> tuple[str, str]:
        msg = f"{image_id} @ {point_key(point)}: {type(error).__name__}: {error}"
        if device_failure(error):     # the GPU's failure, not the image's: stop, never leave the image out
            raise DeviceFailure(f"{msg}. The run stops on {self.device}'s failure rather than leave {image_id} out: "
                                "free the GPU's memory (nvidia-smi lists its processes) or run with --device cpu")
        self.failures.append(msg)
        self.failed_images.add(image_id)
        self.progress.write(f"[run] job failed: {msg}", self.log)
        return image_id, msg

    def _on_dask(self, fn: Callable) -> bool:
        """Coded jobs go to Dask with ``backend="dask"``; estimates never do."""
        return self.backend == "dask" and fn is execute

    def _round(self, jobs: list[Job], fn: Callable, workers: int) -> Iterator[tuple[Job, Any]]:
        """``(job, record or exception)`` as each finishes."""
        if not jobs:
            return
        ctx = self.context(workers)
        if self._on_dask(fn):
            from bench.distributed import dask_map

            yield from dask_map(ctx, jobs, self.scheduler, workers)
        elif workers == 1:
            for job in jobs:      # an image with a failed job is left out: its other jobs are not run
                yield job, (_left_out(job) if job.image.id in self.failed_images else safe_execute(ctx, job, fn))
        else:     # loky's worker processes (joblib's pool, kept between rounds)
            from concurrent.futures import as_completed

            from joblib.externals.loky import get_reusable_executor

            # as joblib's loky backend: its idle timeout (workers, with their codec processes
            # started, outlive a pause for estimates) and native thread pools sized to the job's threads
            env = {var: str(ctx.threads) for var in _THREAD_VARS if var not in os.environ}
            pool = self._pool = get_reusable_executor(max_workers=workers, timeout=300, env=env)
            futures = {pool.submit(in_worker, ctx, job, fn): job for job in jobs}
            for fut in as_completed(futures):
                job = futures[fut]
                try:
                    result = _left_out(job) if fut.cancelled() else fut.result()
                except Exception as e:   # the worker died (e.g. killed by the kernel): this job's failure
                    result = e
                if isinstance(result, BaseException) and not isinstance(result, LeftOut):
                    for other, j in futures.items():     # the image's jobs not started yet are not worth it
                        if j.image.id == job.image.id and other is not fut:
                            other.cancel()
                yield job, result


class LeftOut(Exception):
    """A job that did not run: an earlier job of its image failed, which leaves the image out."""


def _left_out(job: Job) -> LeftOut:
    return LeftOut(f"not run: an earlier job of {job.image.id} failed (the image is left out)")
