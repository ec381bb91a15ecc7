"""The runner: the cache and the scheduler of jobs (one job is :func:`bench.job.execute`).

Everything the rate controller asks for goes through :meth:`Runner.evaluate`, which answers
from the cache (same submission content, same image bytes, same point) or runs the missing
jobs in parallel (joblib, or Dask with ``backend="dask"``) and appends each finished record
to the run's log at once, so an interrupted run loses at most the jobs in flight.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Iterator

from bench.data import Image
from bench.device import DeviceError, check_device
from bench.job import (Job, ProcessRetired, default_threads, device_refusal, execute, in_worker, point_key, probe,
                       process_retired, safe_execute)
from bench.results import RecordStore
from bench.submission import Submission

_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


class Runner:
    """Evaluates (image id, point) pairs for one submission on one dataset, with a cache.

    ``device``: where the codec's networks run (checked here, before any job: this machine
    and the codec must both have it). Records made on a GPU are cached apart from CPU ones:
    the content hash gets the device kind as a suffix."""

    def __init__(self, sub: Submission, images: list[Image], run_dir: Path, jobs: int = 1,
                 backend: str = "joblib", scheduler: str | None = None, progress: bool = True,
                 log: Callable[[str], None] = print, device: str = "cpu") -> None:
        self.sub = sub
        self.images = {im.id: im for im in images}
        self.run_dir = Path(run_dir)
        self.device = check_device(device)
        devices = sub.codec_class().devices
        if self.device.split(":")[0] not in devices:
            raise DeviceError(device_refusal(sub.name, devices, self.device))
        self.content_hash = sub.content_hash() + ("" if self.device == "cpu" else "+" + self.device.split(":")[0])
        self.store = RecordStore(self.run_dir / "records.jsonl")
        self.estimates = RecordStore(self.run_dir / "estimates.jsonl")
        self.jobs, self.backend, self.scheduler = max(1, jobs), backend, scheduler
        self.progress, self.log = progress, log
        self.computed = 0
        self._pool = None                      # the loky pool of the last round, when it ran on one
        self.failures: list[str] = []
        self.failed_images: set[str] = set()   # ids of images with at least one failed job
        self.estimated = 0                     # estimates computed this time (0 on a cached re-run)
        self.points: dict[str, dict[str, set[str]]] = {i: {"estimated": set(), "coded": set()} for i in self.images}

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

    def cached_estimate(self, image_id: str, point: Any) -> dict | None:
        im = self.images[image_id]
        return self.estimates.get(self.content_hash, im.sha256, point_key(point))

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
                self.points[i]["coded"].add(point_key(p))
                out.append(rec)
        return out

    def estimate(self, requests: list[tuple[str, Any]]) -> list[dict]:
        """Estimated records for the requested pairs (:func:`bench.job.probe`: one network pass,
        no file), cached in ``estimates.jsonl`` and computed in this process (in a worker once a
        job ran out of memory here), one at a time with all the cores' threads; pairs the codec
        cannot estimate are evaluated for real. A failed estimate is a failed job."""
        pairs = list(dict.fromkeys(requests))
        todo = [Job(self.images[i], p, Path()) for i, p in pairs if self.cached_estimate(i, p) is None]
        real = []
        for job, rec in self._dispatch(todo, fn=probe, workers=1):
            if isinstance(rec, BaseException):
                self._failed(job.image.id, job.point, rec)
            elif rec is None:
                real.append((job.image.id, job.point))
            else:
                self.estimates.append(rec)
                self.estimated += 1
        out = []
        for i, p in pairs:
            rec = self.cached_estimate(i, p)
            if rec is not None:
                self.points[i]["estimated"].add(point_key(p))
                out.append(rec)
        return out + (self.evaluate(real) if real else [])

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
                    self._failed(job.image.id, job.point, result)
                    continue
                yield result
        finally:
            bar.close()

    def _failed(self, image_id: str, point: Any, error: BaseException) -> None:
        msg = f"{image_id} @ {point_key(point)}: {type(error).__name__}: {error}"
        self.failures.append(msg)
        self.failed_images.add(image_id)
        self.log(f"[run] job failed: {msg}")

    def _dispatch(self, jobs: list[Job], fn: Callable = execute, workers: int | None = None
                  ) -> Iterator[tuple[Job, Any]]:
        """``(job, record or exception)`` as each finishes. Jobs that a process refused because
        an earlier job ran out of memory in it (:class:`bench.job.ProcessRetired`) go to fresh
        worker processes in another round."""
        workers, fresh = self.jobs if workers is None else workers, False
        while jobs:
            refused = []
            for job, result in self._round(jobs, fn, workers):
                if isinstance(result, ProcessRetired):
                    refused.append((job, result))
                else:
                    yield job, result
            if fresh and len(refused) == len(jobs):    # fresh processes refused too: do not go round again
                yield from refused
                return
            # an image with a failed job is left out of the run: its other jobs are not worth a process
            jobs = [job for job, _ in refused if job.image.id not in self.failed_images]
            if jobs:
                self.log(f"[run] {len(jobs)} jobs go to fresh worker processes: a job ran out of memory "
                         "in the process that had them")
                self._fresh_workers(fn)
                fresh = True

    def _on_dask(self, fn: Callable) -> bool:
        """Coded jobs go to Dask with ``backend="dask"``; estimates never do."""
        return self.backend == "dask" and fn is execute

    def _round(self, jobs: list[Job], fn: Callable, workers: int) -> Iterator[tuple[Job, Any]]:
        if self._on_dask(fn):
            from bench.distributed import dask_map

            yield from dask_map(self.sub, self.content_hash, jobs, self.scheduler, workers, self.device)
        elif workers == 1 and not process_retired():
            threads = default_threads(1)
            for job in jobs:
                yield job, safe_execute(self.sub, self.content_hash, job, threads, fn, self.device)
        else:     # loky's worker processes (joblib's pool, kept between rounds), also for one worker
            from concurrent.futures import as_completed

            from joblib.externals.loky import get_reusable_executor

            threads = default_threads(workers)
            # as joblib's loky backend: its idle timeout (workers, with torch and the models loaded,
            # outlive a pause for estimates) and native thread pools sized to the job's threads
            env = {var: str(threads) for var in _THREAD_VARS if var not in os.environ}
            self._pool = get_reusable_executor(max_workers=workers, timeout=300, env=env)
            futures = {self._pool.submit(in_worker, self.sub, self.content_hash, job, threads, self.device, fn): job
                       for job in jobs}
            for fut in as_completed(futures):
                try:
                    result = fut.result()
                except Exception as e:   # the worker died (e.g. killed by the kernel): this job's failure
                    result = e
                yield futures[fut], result

    def _fresh_workers(self, fn: Callable) -> None:
        """Replace the worker processes that ran ``fn``'s last round before the next one (this
        process, once retired, hands its jobs to a worker from then on)."""
        if self._on_dask(fn):
            from bench.distributed import restart_workers

            restart_workers(self.scheduler, self.jobs)
            return
        if self._pool is not None:
            self._pool.shutdown(wait=True, kill_workers=True)
            self._pool = None
