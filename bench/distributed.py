"""Scale-out on Dask: the runner's image × operating-point jobs as Dask futures.

``python -m bench run --backend dask`` (``make bench BACKEND=dask``) runs every missing job
on a Dask cluster: the one at ``--scheduler ADDRESS`` (``SCHEDULER=tcp://host:8786``), or a
``LocalCluster`` of ``--jobs`` worker processes (one thread each) started for the run and
closed after it. Results come back as the futures finish (``as_completed``), so the runner
appends each record to ``records.jsonl`` at once, exactly as with joblib; the records are the
same as a local run's (same code, same inputs: only where they run differs).

Each image's pixels are scattered to the cluster once, not once per operating point. Workers
write the bitstreams themselves (``Job.path``) and decode them back from those files, so with
a remote scheduler the workers must see the reports folder and the submission at the same
paths (a shared filesystem), and have this package installed.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:   # bench.job imports torch: keep ``SchedulerError`` cheap to import
    from bench.job import Job, JobContext

CONNECT_TIMEOUT_S = 10.0


class SchedulerError(ConnectionError):
    """The Dask scheduler given with ``--scheduler`` cannot be reached (or no cluster can start)."""


def _connect_timeout() -> float:
    return float(os.environ.get("BENCH_DASK_TIMEOUT", CONNECT_TIMEOUT_S))


def _run_job(ctx: JobContext, image, point: Any, path) -> Any:
    """On a worker: one job, its codec in that worker's own sandboxed processes; an exception
    comes back as the result (reported per job)."""
    from bench.job import Job, safe_execute

    return safe_execute(ctx, Job(image, point, path))


def _client(scheduler: str | None, n_workers: int):
    """A connected Client and the LocalCluster it owns (None with an external scheduler)."""
    from dask.distributed import Client, LocalCluster

    if scheduler:
        try:
            return Client(scheduler, timeout=_connect_timeout(), set_as_default=False), None
        except (OSError, TimeoutError, ValueError) as e:
            raise SchedulerError(f"cannot reach the Dask scheduler at {scheduler!r} within "
                                 f"{_connect_timeout():g} s ({type(e).__name__}: {e}). Start one with "
                                 "`dask scheduler` (and workers with `dask worker ADDRESS`), or leave "
                                 "--scheduler out to use a LocalCluster") from None
    try:
        cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                               dashboard_address=None, silence_logs=logging.ERROR)
    except Exception as e:  # e.g. cannot bind a port, cannot spawn workers
        raise SchedulerError(f"cannot start a Dask LocalCluster with {n_workers} workers: "
                             f"{type(e).__name__}: {e}") from e
    try:
        return Client(cluster, set_as_default=False), cluster
    except BaseException:
        cluster.close()
        raise


_SESSIONS: dict[tuple[str | None, int], list] = {}


@contextmanager
def dask_session(scheduler: str | None, n_workers: int) -> Iterator[None]:
    """Keep one client (and LocalCluster) for every ``dask_map`` call made inside the block
    with the same scheduler and worker count: a run asks for jobs in several rounds and should
    not start a cluster per round. Started by the first call that has jobs (a fully cached
    re-run starts none); closed when the block ends."""
    key = (scheduler, max(1, n_workers))
    if key in _SESSIONS:
        yield
        return
    _SESSIONS[key] = []
    try:
        yield
    finally:
        held = _SESSIONS.pop(key)
        if held:
            _close(*held)


def _close(client, cluster) -> None:
    client.close()
    if cluster is not None:
        cluster.close()


def dask_map(ctx: JobContext, jobs: list[Job], scheduler: str | None = None,
             n_workers: int = 1) -> Iterator[tuple[Job, Any]]:
    """Run ``jobs`` on Dask and yield ``(job, record or exception)`` as each one finishes.

    ``scheduler=None`` starts a LocalCluster of ``n_workers`` single-threaded worker processes
    and closes it when the iteration ends (also when the caller stops early), unless a
    :func:`dask_session` for the same cluster is open, which it then uses. A job whose
    worker raised, or died, yields its exception, like the joblib path.
    """
    if not jobs:
        return
    from dataclasses import replace

    from dask.distributed import as_completed

    from bench.job import default_threads

    n_workers = max(1, n_workers)
    # torch threads per job: BENCH_THREADS, else this machine's cores shared among the local
    # workers; a remote cluster's cores are unknown here, so one thread unless told otherwise
    threads = default_threads(n_workers) if scheduler is None or os.environ.get("BENCH_THREADS") else 1
    ctx = replace(ctx, threads=threads)
    session = _SESSIONS.get((scheduler, n_workers))
    if session is None:
        client, cluster = _client(scheduler, n_workers)
    else:
        if not session:
            session.extend(_client(scheduler, n_workers))
        client, cluster = session
    futures = {}
    try:
        scattered = {}
        for job in jobs:
            if job.image.id not in scattered:
                scattered[job.image.id] = client.scatter(job.image, hash=False)
        for job in jobs:
            fut = client.submit(_run_job, ctx, scattered[job.image.id], job.point, job.path,
                                key=f"bench-{ctx.sub.name}-{job.image.id}-{uuid.uuid4().hex}", pure=False)
            futures[fut] = job
        for fut in as_completed(list(futures), loop=client.loop):
            job = futures.pop(fut)
            if fut.status == "error":
                result: Any = fut.exception()
            else:
                try:
                    result = fut.result()
                except Exception as e:  # e.g. the worker died (KilledWorker) or the task was lost
                    result = e
            fut.release()
            yield job, result
    finally:
        for fut in futures:
            fut.cancel()
        if session is None:
            _close(client, cluster)

