"""A process whose job ran out of memory takes no more jobs (bench/job.py:ProcessRetired).

Native code can keep such a failure: after a job ran out of memory inside oneDNN, every later
job in its process failed with "could not create a primitive" (tests/test_limits.py's run).
Here a codec runs out of memory on two images and logs the process of every job it codes; the
run, in its own process, must code the other images in processes where nothing ran out of
memory, with JOBS=1 (the run's own process), JOBS=2 (loky workers) and on a Dask LocalCluster
(its workers restarted), coding every point or estimating first (``--probe estimate``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import defaultdict

import pytest
from PIL import Image as PILImage

from bench.paths import REPO_ROOT
from bench.results import read_csv
from tests.helpers.images import crop_folder, kodak_crop
from tests.helpers.manifests import continuous, write_submission

HUNGRY = '''
import os
from bench.codec import Estimate
from bench.codecs.classical import JpegCodec


class HungryJpeg(JpegCodec):
    """JPEG that runs out of memory on images wider than 200 pixels, in its encoder and in its
    estimate; every call is logged with its process id."""

    def _start(self, image):
        hungry = image.shape[1] > 200
        with open(os.environ["JOB_LOG"], "a") as f:
            f.write(f"{os.getpid()} {'oom' if hungry else 'ok'}\\n")
        if hungry:
            raise MemoryError("this image needs more memory than the test allows")

    def encode(self, image, point):
        self._start(image)
        return super().encode(image, point)

    def estimate(self, image, point):
        self._start(image)
        data = super().encode(image, point)
        return Estimate(len(data), self.decode(data))
'''
RUN = ("import sys; from pathlib import Path; from bench.run import run_benchmark; "
       "run_benchmark('hungry', 'folder:' + sys.argv[1], [0.6, 1.2], jobs=int(sys.argv[2]), "
       "reports_dir=Path(sys.argv[3]), progress=False, submissions_root=Path(sys.argv[4]), backend=sys.argv[5], "
       "probe=sys.argv[6])")


@pytest.mark.parametrize("backend, jobs, probe", [("joblib", 1, "none"), ("joblib", 2, "none"), ("dask", 2, "none"),
                                                  ("joblib", 2, "estimate"), ("dask", 2, "estimate")])
def test_after_a_job_runs_out_of_memory_its_process_codes_nothing_more_and_the_run_goes_on(tmp_path, backend, jobs,
                                                                                           probe):
    """Two hungry images, so that with estimates (in the run's process) the second one runs out
    of memory in the worker that took over: that worker must be replaced too, on either backend."""
    folder = crop_folder(tmp_path / "imgs")
    for k, box in enumerate([(0, 0, 256, 176), (256, 0, 512, 176)]):
        PILImage.fromarray(kodak_crop("kodim05.png", box)).save(folder / f"hungry{k}.png")
    subs = tmp_path / "subs"
    write_submission(subs, "hungry", "codec:HungryJpeg", points=continuous(1, 100, integer=True),
                     codec_source=HUNGRY)
    log = tmp_path / "jobs.log"
    p = subprocess.run([sys.executable, "-c", RUN, str(folder), str(jobs), str(tmp_path / "r"), str(subs),
                        backend, probe],
                       capture_output=True, text=True, cwd=REPO_ROOT, timeout=600,
                       env={**os.environ, "JOB_LOG": str(log), "BENCH_THREADS": "1"})
    assert p.returncode == 0, p.stderr[-3000:]
    after_oom: dict[str, list[str]] = defaultdict(list)
    oom_pids: set[str] = set()
    for line in log.read_text().splitlines():
        pid, what = line.split()
        if pid in oom_pids:
            after_oom[pid].append(what)
        if what == "oom":
            oom_pids.add(pid)
    assert oom_pids and not any(after_oom.values()), f"jobs ran in a process after it ran out of memory: {after_oom}"
    coded_elsewhere = [line for line in log.read_text().splitlines() if line.split()[0] not in oom_pids]
    assert coded_elsewhere
    if jobs == 1 or probe == "estimate":   # the run's own process ran out of memory: the rest went to a worker
        assert "go to fresh worker processes" in p.stderr + p.stdout
    run = json.loads(next((tmp_path / "r").rglob("runs/hungry/run.json")).read_text())
    errors = "\n".join(run["errors"])
    assert all(f"hungry{k} @ " in errors for k in range(2)) and "MemoryError" in errors
    assert "ProcessRetired" not in errors
    assert not any(f"img{i}" in errors for i in range(3))
    rows = read_csv(next((tmp_path / "r").rglob("runs/hungry/rows.csv")))
    assert rows and all(r["status"] == "ok" and int(r["images"]) == 3 for r in rows)
