"""The ablation study (bench/studies/ablation.py): two submissions with the same model names,
compared from their stored runs."""

from __future__ import annotations

import math

import pytest

from bench.cli import main
from bench.run import run_benchmark
from bench.studies.ablation import ablation
from tests.helpers.manifests import write_submission


def test_ablation_pairs_models_and_measures_bd_rate(image_folder, tmp_path):
    subs = tmp_path / "subs"
    for name, subsampling in [("plain", 2), ("better", 0)]:
        write_submission(subs, name, "bench.codecs.classical:JpegCodec", points=[20, 40, 60, 80],
                         description=f"JPEG at fixed qualities (subsampling = {subsampling})",
                         params={"subsampling": subsampling})
    reports = tmp_path / "reports"
    for name in ("plain", "better"):
        run_benchmark(name, f"folder:{image_folder}", [1.0], reports_dir=reports, progress=False, submissions_root=subs)
    res = ablation(reports / "imgs", "plain", "better")
    assert [p["model"] for p in res["pairs"]] == ["20", "40", "60", "80"]
    for p in res["pairs"]:           # 4:4:4 spends more bits than 4:2:0 at the same quality setting
        assert p["b_bpp"] > p["a_bpp"] and p["d_bpp_pct"] == pytest.approx(100 * (p["b_bpp"] / p["a_bpp"] - 1))
    assert all(math.isfinite(res["bd"][m]["bd_rate_pct"]) for m in ("msssim_db", "psnr"))
    assert {r["submission"] for r in res["rows"]} == {"plain", "better"}

    assert main(["ablation", "plain", "better", "--dataset", f"folder:{image_folder}", "--reports", str(reports)]) == 0
    assert (reports / "imgs" / "ablation_plain_vs_better.json").exists()
    page = (reports / "imgs" / "leaderboard.html").read_text()
    assert "Ablation: plain vs better" in page and "BD-rate of better against plain" in page


def test_ablation_without_a_stored_run_says_what_to_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="bench run -s plain"):
        ablation(tmp_path / "kodak", "plain", "better")
