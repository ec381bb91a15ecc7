"""Nothing lost: a run killed with SIGKILL mid-way resumes and ends exactly like an uninterrupted one.

Real processes, a real kill: ``python -m bench run`` (the command ``make bench`` runs) with a
real codec (AVIF) on four small Kodak crops, killed (the whole process group, so its joblib
workers too) once ``records.jsonl`` has some lines, a torn half line appended to stand for a
write cut by the kill, then the same command again. The resumed run must end with every
record present once, no torn line, every bitstream on disk at its recorded size, and the same
``rows.csv`` / ``per_image.csv`` numbers as an uninterrupted run into another reports folder.
(How RecordStore repairs a torn file on its own: tests/test_results.py.)
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image as PILImage

from bench.paths import REPO_ROOT
from bench.results import RecordStore, read_csv
from tests.helpers.images import kodak_crop

SUBMISSION = "avif"
TARGETS = "0.3,0.8"
KILL_AFTER = 30          # records on disk before the kill (the whole run writes ~100)
VARYING = {"enc_s", "dec_s", "date", "bitstreams", "file"}   # timings and paths differ between runs


@pytest.fixture
def crops(tmp_path: Path) -> Path:
    folder = tmp_path / "crops"
    folder.mkdir()
    for i, name in enumerate(["kodim01.png", "kodim05.png", "kodim07.png", "kodim23.png"]):
        PILImage.fromarray(kodak_crop(name, (100, 100, 356, 292))).save(folder / f"c{i}.png")
    return folder


def _cmd(folder: Path, reports: Path, jobs: int) -> list[str]:
    return [sys.executable, "-m", "bench", "run", "--submission", SUBMISSION, "--dataset", f"folder:{folder}",
            "--targets", TARGETS, "--jobs", str(jobs), "--reports", str(reports), "--no-progress"]


def _env() -> dict:
    return {**os.environ, "BENCH_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _run(folder: Path, reports: Path, jobs: int = 1) -> subprocess.CompletedProcess:
    p = subprocess.run(_cmd(folder, reports, jobs), cwd=REPO_ROOT, env=_env(), capture_output=True, text=True,
                       timeout=180)
    assert p.returncode == 0, p.stderr[-3000:]
    return p


def _lines(path: Path) -> list[bytes]:
    return path.read_bytes().split(b"\n") if path.exists() else []


def _kill_midway(folder: Path, reports: Path, records: Path) -> int:
    """Start a run, SIGKILL it (and its workers) once KILL_AFTER records are on disk; the count then."""
    proc = subprocess.Popen(_cmd(folder, reports, jobs=2), cwd=REPO_ROOT, env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while sum(1 for ln in _lines(records) if ln.strip()) < KILL_AFTER:
            assert proc.poll() is None, f"the run ended before it could be killed: {proc.stderr.read()[-2000:]!r}"
            assert time.monotonic() < deadline, "no records appeared in time"
            time.sleep(0.01)
        assert proc.poll() is None, "the run finished before the kill: the test would prove nothing"
        os.killpg(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        proc.stderr.close()
    return sum(1 for ln in _lines(records) if ln.strip())


def _strip(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in VARYING} for r in rows]


@pytest.mark.timeout(300)
def test_sigkill_mid_run_then_resume_matches_an_uninterrupted_run(crops, tmp_path):
    # the reference: one uninterrupted run
    ref_reports = tmp_path / "ref"
    _run(crops, ref_reports)
    ref_dir = ref_reports / crops.name / "runs" / SUBMISSION
    ref = RecordStore(ref_dir / "records.jsonl").records
    assert len(ref) > KILL_AFTER + 20

    # killed mid-way, a torn last line added, then resumed with the same command
    reports = tmp_path / "killed"
    run_dir = reports / crops.name / "runs" / SUBMISSION
    records = run_dir / "records.jsonl"
    done_before_kill = _kill_midway(crops, reports, records)
    assert KILL_AFTER <= done_before_kill < len(ref)
    assert not (run_dir / "rows.csv").exists()
    whole = [ln for ln in _lines(records) if ln.strip()]
    whole = [ln for ln in whole if ln.endswith(b"}")]            # (a line cut by the kill itself is allowed)
    with records.open("ab") as f:                               # …but a torn write must not hurt either
        f.write(whole[-1][: len(whole[-1]) // 2])

    resumed = _run(crops, reports)
    computed = int(resumed.stdout.split(" jobs encoded")[0].rsplit(" ", 1)[-1])
    assert computed == len(ref) - done_before_kill             # only the missing jobs were encoded

    # nothing missing, duplicated or half-written
    lines = [ln for ln in _lines(records) if ln.strip()]
    recs = [json.loads(ln) for ln in lines]                     # every line is a whole record
    keys = [RecordStore.key(r) for r in recs]
    assert len(keys) == len(set(keys)), "duplicate records"
    assert set(keys) == set(ref), "records missing or extra"
    for r in recs:
        want = ref[RecordStore.key(r)]
        assert (r["bytes"], r["psnr"], r["msssim"]) == (want["bytes"], want["psnr"], want["msssim"])
        assert (run_dir / r["file"]).stat().st_size == r["bytes"]

    # the same final numbers as the uninterrupted run
    assert _strip(read_csv(run_dir / "rows.csv")) == _strip(read_csv(ref_dir / "rows.csv"))
    assert _strip(read_csv(run_dir / "per_image.csv")) == _strip(read_csv(ref_dir / "per_image.csv"))
    assert _strip(read_csv(run_dir / "rd.csv")) == _strip(read_csv(ref_dir / "rd.csv"))
    for folder in (run_dir / "bitstreams").iterdir():           # one file per image, as in the reference
        ref_files = {f.name: f.read_bytes() for f in (ref_dir / "bitstreams" / folder.name).iterdir()}
        assert {f.name: f.read_bytes() for f in folder.iterdir()} == ref_files
