"""A codec process whose job ran out of memory takes no more jobs (bench/sandbox/worker.py).

Native code can keep such a failure: after a job ran out of memory inside oneDNN, every later
job in its process failed with "could not create a primitive" (tests/test_limits.py's run).
The codec runs in its own sandboxed processes, so the worker ends after replying and the
harness starts a fresh one for the next job. Here a codec runs out of memory on two images;
each of its processes has a random token and counts its jobs, and writes both into every file
it codes and every MemoryError it raises (the sandbox leaves it no other way out). The run
must code the other images, in processes where nothing ran out of memory, with JOBS=1 (the
run's own process), JOBS=2 (loky workers) and on a Dask LocalCluster, coding every point or
estimating first (``--probe estimate``)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

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

TOKEN = os.urandom(4).hex()      # this process
JOBS = [0]


class HungryJpeg(JpegCodec):
    """JPEG that runs out of memory on images wider than 200 pixels, in its encoder and in its
    estimate; each file starts with the process's token and the job's number in it."""

    def _start(self, image):
        JOBS[0] += 1
        if image.shape[1] > 200:
            raise MemoryError(f"process {TOKEN} job {JOBS[0]}: this image needs more memory than the test allows")

    def encode(self, image, point):
        self._start(image)
        return f"{TOKEN}:{JOBS[0]:06d}".encode() + super().encode(image, point)

    def declared_size(self, data):
        return super().declared_size(data[15:])

    def decode(self, data):
        return super().decode(data[15:])

    def estimate(self, image, point):
        self._start(image)
        data = super().encode(image, point)
        return Estimate(len(data) + 15, super().decode(data))
'''
RUN = ("import sys; from pathlib import Path; from bench.run import run_benchmark; "
       "run_benchmark('hungry', 'folder:' + sys.argv[1], [0.6, 1.2], jobs=int(sys.argv[2]), "
       "reports_dir=Path(sys.argv[3]), progress=False, submissions_root=Path(sys.argv[4]), backend=sys.argv[5], "
       "probe=sys.argv[6])")


@pytest.mark.parametrize("backend, jobs, probe", [("joblib", 1, "none"), ("joblib", 2, "none"), ("dask", 2, "none"),
                                                  ("joblib", 2, "estimate"), ("dask", 2, "estimate")])
def test_after_a_job_runs_out_of_memory_its_process_codes_nothing_more_and_the_run_goes_on(tmp_path, backend, jobs,
                                                                                           probe):
    folder = crop_folder(tmp_path / "imgs")
    for k, box in enumerate([(0, 0, 256, 176), (256, 0, 512, 176)]):
        PILImage.fromarray(kodak_crop("kodim05.png", box)).save(folder / f"hungry{k}.png")
    subs = tmp_path / "subs"
    write_submission(subs, "hungry", "codec:HungryJpeg", points=continuous(1, 100, integer=True),
                     codec_source=HUNGRY)
    p = subprocess.run([sys.executable, "-c", RUN, str(folder), str(jobs), str(tmp_path / "r"), str(subs),
                        backend, probe], capture_output=True, text=True, cwd=REPO_ROOT, timeout=600,
                       env={"PATH": "/usr/bin:/bin", "BENCH_THREADS": "1"})
    assert p.returncode == 0, p.stderr[-3000:]
    run_dir = next((tmp_path / "r").rglob("runs/hungry"))
    errors = "\n".join(json.loads((run_dir / "run.json").read_text())["errors"])
    assert all(f"hungry{k} @ " in errors for k in range(2)) and "MemoryError" in errors
    out_of_memory = {tok: int(n) for tok, n in re.findall(r"process ([0-9a-f]{8}) job (\d+)", errors)}
    coded = [(f.read_bytes()[:8].decode(), int(f.read_bytes()[9:15])) for f in (run_dir / "cache").rglob("*.bin")]
    assert out_of_memory and coded
    after = [(tok, n) for tok, n in coded if tok in out_of_memory and n > out_of_memory[tok]]
    assert not after, f"jobs ran in a process after it ran out of memory: {after}"
    assert any(tok not in out_of_memory for tok, _ in coded)       # fresh processes coded the rest
    assert not any(f"img{i}" in errors for i in range(3))
    rows = read_csv(run_dir / "rows.csv")
    assert rows and all(r["status"] == "ok" and int(r["images"]) == 3 for r in rows)
    assert all(Path(r["bitstreams"]).is_dir() for r in rows)
