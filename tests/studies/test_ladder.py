"""The ablation ladder (bench/studies/ladder.py): rungs from real stored runs (two JPEG settings
and a tiny untrained context model with real serial coding), BD-rates, MACs, seconds, the
verdict, the files and the HTML section."""

from __future__ import annotations

import json
import math

import pytest
import torch

from bench.cli import main
from bench.models.context3d import build_context_model
from bench.report import build_report
from bench.run import run_benchmark
from bench.studies.ladder import ladder, verdict, write_ladder
from bench.submission import get_submission
from tests.helpers.manifests import write_submission


def _tiny_context_submission(subs, name: str) -> None:
    write_submission(subs, name, "bench.codecs.context3d:Context3DCodec", points=["m0", "m1"],
                     description="a tiny 3-D context model (untrained)", params={"models": ["m0", "m1"]})
    (subs / name / "weights").mkdir()
    for i in range(2):
        torch.manual_seed(i)
        model = build_context_model("context3d_gmm", 8, 8)
        model.g_a[-1].weight.data.mul_(10 * (i + 1))      # two rates: y spans more values in m1
        torch.save({"state_dict": model.state_dict(), "meta": {"arch": "context3d_gmm", "N": 8, "M": 8}},
                   subs / name / "weights" / f"m{i}.pt")


@pytest.mark.timeout(300)
def test_ladder_from_stored_runs(image_folder, tmp_path):
    subs, reports = tmp_path / "subs", tmp_path / "reports"
    for name, subsampling in [("plain", 2), ("better", 0)]:
        write_submission(subs, name, "bench.codecs.classical:JpegCodec", points=[20, 40, 60, 80],
                         description=f"JPEG, subsampling {subsampling}", params={"subsampling": subsampling})
    _tiny_context_submission(subs, "ctx")
    for name in ("plain", "better", "ctx"):
        run_benchmark(name, f"folder:{image_folder}", [1.0], reports_dir=reports, progress=False, submissions_root=subs)

    res = ladder(reports / "imgs", ["plain", "better", "ctx"], "plain", "t", submissions_root=subs)
    by_rung = {r["submission"]: r for r in res["summary"]}
    assert by_rung["plain"]["bd_first_psnr"] == pytest.approx(0, abs=1e-9)      # against itself
    assert by_rung["better"]["bd_first_psnr"] == by_rung["better"]["bd_ref_psnr"]  # the first rung is the reference
    assert math.isfinite(by_rung["better"]["bd_first_msssim_db"])
    assert [m["model"] for m in res["models"] if m["submission"] == "ctx"] == ["m0", "m1"]   # cheapest first
    ctx = [m for m in res["models"] if m["submission"] == "ctx"]
    # MACs from the codec's count (serial loop included) on the set's 176×192 images, per pixel
    c = get_submission("ctx", subs).make_codec().complexity("m0", 176, 192)
    assert ctx[0]["enc_kmac_px"] == pytest.approx(c.enc_macs / (176 * 192) / 1e3)
    assert ctx[0]["params"] == c.params and by_rung["ctx"]["uncounted"].startswith("pmf")
    assert all(m["enc_s"] > 0 and 0 < m["dec_coder_s"] < m["dec_s"] for m in ctx)
    assert by_rung["plain"]["params"] is None or math.isnan(by_rung["plain"]["params"])   # JPEG has no MAC count
    assert by_rung["ctx"]["images"] == 3 and by_rung["ctx"]["image_size"] == "192×176"

    paths = write_ladder(res, reports / "imgs")
    assert [p.name for p in paths] == ["ablation_t.csv", "ablation_t.json", "ablation_t.md"]
    assert json.loads(paths[1].read_text())["verdict"] == res["verdict"]
    build_report(reports / "imgs")
    page = (reports / "imgs" / "leaderboard.html").read_text()
    assert "Ablation ladder: t" in page and "BD-rate vs plain" in page and res["verdict"] in page


def test_ladder_without_a_stored_run_says_what_to_run(tmp_path, image_folder, capsys):
    with pytest.raises(FileNotFoundError, match="bench run -s a"):
        ladder(tmp_path / "kodak", ["a", "b"], "a", "t")
    assert main(["ladder", "jpeg", "webp", "--name", "x", "--dataset", f"folder:{image_folder}",
                 "--reports", str(tmp_path / "reports")]) == 2
    assert "bench run -s jpeg" in capsys.readouterr().err


def test_verdict_says_the_direction_as_measured():
    rung = {"submission": "2d", "bd_first_msssim_db": 0.0, "bd_first_psnr": 0.0}
    assert "holds here" in verdict([rung, {"submission": "3d", "bd_first_msssim_db": -4.0, "bd_first_psnr": -2.0}])
    assert "does not hold" in verdict([rung, {"submission": "3d", "bd_first_msssim_db": 1.0, "bd_first_psnr": 3.0}])
    assert "one metric only" in verdict([rung, {"submission": "3d", "bd_first_msssim_db": -1.0, "bd_first_psnr": 3.0}])
    assert "not computable" in verdict([rung, {"submission": "3d", "bd_first_msssim_db": math.nan,
                                              "bd_first_psnr": -1.0}])
