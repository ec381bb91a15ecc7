"""Scale-out on Dask (bench/distributed.py): a real LocalCluster (2 worker processes) gives the
joblib run's records.

The first test is what CI runs on every push: a cluster started here, the harness connecting
to it by address (``--backend dask --scheduler ADDRESS``), every record equal to the local
``JOBS=1`` run's (bytes, PSNR, MS-SSIM), the jobs spread over both workers, and the rows the
same. The others cover the LocalCluster the harness starts itself when no address is given
(and closes afterwards), a job that fails on a worker, and an unreachable scheduler.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import psutil
import pytest

from bench.cli import main
from bench.distributed import SchedulerError, dask_map
from bench.job import Job
from bench.results import RecordStore, read_csv
from bench.run import run_benchmark
from bench.runner import Runner
from bench.submission import get_submission
from tests.helpers.images import crop_folder
from tests.helpers.network import free_port

TARGETS = [0.6, 1.2]
SAME = ("bytes", "bpp", "psnr", "msssim", "height", "width", "point")
VARYING = {"enc_s", "dec_s", "date", "bitstreams", "file"}


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch):
    monkeypatch.setenv("BENCH_THREADS", "1")


@pytest.fixture(scope="module")
def cluster():
    from dask.distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                      silence_logs=logging.ERROR) as c, Client(c, set_as_default=False) as client:
        client.wait_for_workers(2, timeout=120)
        yield c, client


def _records(run_dir: Path) -> dict:
    return {(r["image_id"], r["point_key"]): tuple(r[k] for k in SAME)
            for r in RecordStore(run_dir / "records.jsonl").records.values()}


def _rows(run_dir: Path, name: str) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in VARYING} for r in read_csv(run_dir / name)]


@pytest.fixture(scope="module")
def joblib_reference(tmp_path_factory):
    root = tmp_path_factory.mktemp("dask")
    folder = crop_folder(root / "imgs")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BENCH_THREADS", "1")
        ref = run_benchmark("jpeg", f"folder:{folder}", targets=TARGETS, jobs=1, reports_dir=root / "joblib",
                            progress=False)
    return folder, ref


@pytest.mark.timeout(300)
def test_dask_cluster_by_address_gives_the_joblib_records(cluster, joblib_reference, tmp_path):
    from dask.distributed import get_task_stream

    c, client = cluster
    folder, ref = joblib_reference
    with get_task_stream(client=client) as ts:
        res = run_benchmark("jpeg", f"folder:{folder}", targets=TARGETS, jobs=2, backend="dask",
                            scheduler=c.scheduler_address, reports_dir=tmp_path / "dask", progress=False)
    assert res.errors == [] and res.computed == ref.computed > 30
    assert _records(res.run_dir) == _records(ref.run_dir)
    for name in ("rows.csv", "per_image.csv", "rd.csv"):
        assert _rows(res.run_dir, name) == _rows(ref.run_dir, name), name
    workers = {t["worker"] for t in ts.data if str(t["key"]).startswith("bench-")}
    assert len(workers) == 2, f"the jobs ran on {workers}, not on both workers"
    for rec in RecordStore(res.run_dir / "records.jsonl").records.values():   # written by the workers
        assert (res.run_dir / rec["file"]).stat().st_size == rec["bytes"]


@pytest.mark.timeout(120)
def test_a_failing_job_comes_back_as_its_error_and_the_others_finish(cluster, joblib_reference, tmp_path):
    from bench.data import load_image

    c, _ = cluster
    folder, _ = joblib_reference
    sub = get_submission("jpeg")
    runner = Runner(sub, [load_image(folder / "img0.png")], tmp_path / "run", progress=False)
    img = next(iter(runner.images.values()))
    jobs = [Job(img, p, runner.bitstream_path(img, p)) for p in (20, "not-a-quality", 80)]
    out = list(dask_map(runner.context(2), jobs, c.scheduler_address, 2))
    assert sorted(str(j.point) for j, _ in out) == ["20", "80", "not-a-quality"]
    results = {str(j.point): r for j, r in out}
    assert isinstance(results["not-a-quality"], Exception) and "ValueError" in str(results["not-a-quality"])
    assert results["20"]["bytes"] < results["80"]["bytes"]


@pytest.mark.timeout(300)
def test_without_a_scheduler_a_local_cluster_is_started_and_closed(joblib_reference, tmp_path):
    folder, ref = joblib_reference
    def workers() -> set[int]:   # our child processes, bar multiprocessing's long-lived resource tracker
        return {p.pid for p in psutil.Process().children(recursive=True)                # and this process's own
                if "resource_tracker" not in " ".join(_cmdline(p)) and p.pid not in _own_codec_processes()}

    before = workers()
    res = run_benchmark("jpeg", f"folder:{folder}", targets=TARGETS, jobs=2, backend="dask",
                        reports_dir=tmp_path / "local", progress=False)
    assert _records(res.run_dir) == _records(ref.run_dir)
    assert _rows(res.run_dir, "rows.csv") == _rows(ref.run_dir, "rows.csv")
    deadline = time.monotonic() + 30
    while (left := workers() - before) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not left, f"worker processes left running: {left}"
    again = run_benchmark("jpeg", f"folder:{folder}", targets=TARGETS, jobs=2, backend="dask",
                          reports_dir=tmp_path / "local", progress=False)
    assert again.computed == 0          # a cached re-run does not even start a cluster


@pytest.mark.timeout(300)
def test_a_joblib_run_stops_its_workers_when_the_coding_ends(tmp_path):
    """loky keeps idle workers (and their codec processes, ~3 GB each on a CLIC photo) for 300 s;
    the run's perceptual pass and whatever runs next need that memory, so they stop at once."""
    def loky_workers() -> set[int]:
        return {p.pid for p in psutil.Process().children(recursive=True)
                if "loky" in " ".join(_cmdline(p)) and "resource_tracker" not in " ".join(_cmdline(p))}

    def codec_processes() -> set[int]:   # a Dask cluster of this module keeps its own: not counted
        return {p.pid for p in psutil.Process().children(recursive=True)
                if "bench.sandbox.worker" in " ".join(_cmdline(p))}

    folder = crop_folder(tmp_path / "crops")
    before = codec_processes()
    res = run_benchmark("jpeg", f"folder:{folder}", targets=TARGETS, jobs=2, reports_dir=tmp_path / "r",
                        progress=False)
    assert res.computed > 0, "the jobs were not coded by workers"
    deadline = time.monotonic() + 20
    while (left := loky_workers()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not left, f"loky workers still running after the run: {left}"
    codec = codec_processes() - before - _own_codec_processes()
    assert not codec, f"codec processes of the stopped workers still running: {codec}"


def _own_codec_processes() -> set[int]:
    """The codec processes this process keeps for its next run (bench.sandbox.client), and theirs."""
    from bench.sandbox import client

    pids = {proc.pid for remote in client._REMOTES.values() for proc in (remote.encoder, remote.decoder) if proc.pid}
    return pids | {c.pid for pid in pids if psutil.pid_exists(pid)
                   for c in psutil.Process(pid).children(recursive=True)}


def _cmdline(p: psutil.Process) -> list[str]:
    try:
        return p.cmdline()
    except psutil.Error:
        return []


@pytest.mark.timeout(60)
def test_unreachable_scheduler_is_a_clear_error(joblib_reference, tmp_path, monkeypatch, capsys):
    folder, _ = joblib_reference
    monkeypatch.setenv("BENCH_DASK_TIMEOUT", "1")
    address = f"tcp://127.0.0.1:{free_port()}"
    t = time.monotonic()
    with pytest.raises(SchedulerError, match=f"cannot reach the Dask scheduler at '{address}'"):
        run_benchmark("webp", f"folder:{folder}", targets=TARGETS, backend="dask", scheduler=address,
                      reports_dir=tmp_path / "r", progress=False)
    assert time.monotonic() - t < 20
    assert main(["run", "-s", "webp", "-d", f"folder:{folder}", "--backend", "dask", "--scheduler", address,
                 "--reports", str(tmp_path / "r"), "--no-progress"]) == 2
    assert "cannot reach the Dask scheduler" in capsys.readouterr().err
