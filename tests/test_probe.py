"""Probe cheaply, code for real (``bench run --probe estimate``): a codec's estimates steer the
search, and every reported number still comes from real files decoded in the run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.run import run_benchmark
from bench.runner import Runner
from tests.helpers.manifests import continuous, write_submission

WRONG_ESTIMATE = '''
from bench.codec import Estimate
from bench.codecs.classical import JpegCodec


class WrongEstimateJpeg(JpegCodec):
    """JPEG whose estimate claims 30 % fewer bytes than its real files (the reconstruction is real)."""

    def estimate(self, image, point):
        data = self.encode(image, point)
        return Estimate(int(len(data) * 0.7), self.decode(data))
'''
TARGETS = [0.6, 1.2]


@pytest.fixture
def subs(tmp_path):
    write_submission(tmp_path / "subs", "wrongest", "codec:WrongEstimateJpeg", points=continuous(1, 100, integer=True),
                     params={"optimize": True}, codec_source=WRONG_ESTIMATE)
    return tmp_path / "subs"


def _run(image_folder, reports, subs, probe="estimate"):
    return run_benchmark("wrongest", f"folder:{image_folder}", TARGETS, reports_dir=reports, progress=False,
                         submissions_root=subs, probe=probe)


def test_an_estimate_wrong_by_30_percent_still_ends_within_budget_with_real_bytes(image_folder, tmp_path, subs):
    res = _run(image_folder, tmp_path / "r", subs)
    plain = _run(image_folder, tmp_path / "plain", subs, probe="none")
    assert res.estimated > 0 and res.computed < plain.computed
    for row, ref in zip(res.rows, plain.rows):
        assert row["status"] == "ok" and row["bytes"] <= row["budget_bytes"]
        files = sorted(Path(row["bitstreams"]).glob("*.bin"))              # tmp_path: an absolute path
        assert sum(f.stat().st_size for f in files) == row["bytes"]          # real files, real sizes
        assert row["msssim"] >= ref["msssim"] - 0.002
    per_image = (res.run_dir / "per_image.csv").read_text().splitlines()
    head = per_image[0].split(",")
    counts = [dict(zip(head, line.split(","))) for line in per_image[1:]]
    assert all(int(c["points_coded"]) >= 1 and int(c["points_estimated"]) > int(c["points_coded"]) for c in counts)
    assert json.loads((res.run_dir / "run.json").read_text())["settings"]["probe"] == "estimate"


def test_the_rd_curve_of_a_probed_run_says_its_bytes_are_estimates(image_folder, tmp_path, subs):
    from bench.report.leaderboard import bd_summary, estimated_points, load_run

    def curve(run_dir: Path):
        run = load_run(run_dir)
        return run, estimated_points(run.rd), bd_summary([run], "wrongest")[0]["estimated"]

    res = _run(image_folder, tmp_path / "r", subs)
    run, points, bd = curve(res.run_dir)
    assert len(run.rd) >= 5 and points == len(run.rd) and bd == len(run.rd)   # the sweep, estimated
    # same cache, no probe: the sweep is coded now, and the curve says so
    plain = _run(image_folder, tmp_path / "r", subs, probe="none")
    run, points, bd = curve(plain.run_dir)
    assert len(run.rd) >= 5 and points == 0 and bd == 0


def test_run_json_says_what_the_run_cost_and_the_page_shows_it(image_folder, tmp_path, subs):
    from bench.report.html import run_summary
    from bench.report.leaderboard import load_run

    res = _run(image_folder, tmp_path / "r", subs)
    cost = json.loads((res.run_dir / "run.json").read_text())["cost"]
    assert cost["jobs_coded"] == res.computed > 0 and cost["points_estimated"] == res.estimated > 0
    assert 0 < cost["wall_s"] <= res.seconds + 0.1
    assert run_summary(load_run(res.run_dir))["cost"].endswith(f"· {res.computed} coded · {res.estimated} estimated")
    again = _run(image_folder, tmp_path / "r", subs)                    # cached: nothing coded again
    assert json.loads((again.run_dir / "run.json").read_text())["cost"]["jobs_coded"] == 0


def test_a_run_interrupted_between_probe_and_coding_resumes(image_folder, tmp_path, subs, monkeypatch):
    def stop(self, requests):
        raise KeyboardInterrupt("killed after probing")

    with monkeypatch.context() as m:
        m.setattr(Runner, "evaluate", stop)
        with pytest.raises(KeyboardInterrupt):
            _run(image_folder, tmp_path / "r", subs)
    stored = (tmp_path / "r" / "imgs" / "runs" / "wrongest" / "estimates.jsonl").read_text().splitlines()
    assert stored                                            # the probe's work is on disk
    resumed = _run(image_folder, tmp_path / "r", subs)
    fresh = _run(image_folder, tmp_path / "fresh", subs)
    assert resumed.estimated < fresh.estimated               # estimates came from the file
    assert [r.get("bytes") for r in resumed.rows] == [r.get("bytes") for r in fresh.rows]
    assert [r.get("msssim") for r in resumed.rows] == [r.get("msssim") for r in fresh.rows]
