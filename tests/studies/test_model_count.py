"""The models-per-image study (bench/studies/model_count.py): the one / two / four models
table, best subsets, re-using the run's cached encodes."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from bench.report import build_report
from bench.run import run_benchmark
from bench.studies.model_count import model_count_table, write_model_count
from tests.helpers.manifests import write_submission


@pytest.fixture
def subs(tmp_path: Path) -> Path:
    root = tmp_path / "subs"
    for name, policy in [("five", "per-image"), ("five_shared", "shared")]:
        write_submission(root, name, "bench.codecs.classical:JpegCodec", points=[10, 25, 45, 70, 90],
                         description="JPEG at five fixed qualities, standing in for five models", rate_control=policy)
    return root


def test_more_models_never_worse_and_one_model_is_the_shared_policy(subs, image_folder, tmp_path):
    reports, targets = tmp_path / "reports", [0.8, 1.5]
    ds = f"folder:{image_folder}"
    run = run_benchmark("five", ds, targets, reports_dir=reports, progress=False, submissions_root=subs)
    assert run.computed > 0
    log: list[str] = []
    df = model_count_table("five", ds, targets, (1, 2, 5), reports_dir=reports, submissions_root=subs, log=log.append)
    assert list(df["models"]) == [1, 1, 2, 2, 5, 5]
    assert (df["status"] == "ok").all() and (df["bpp"] <= df["target_bpp"]).all()
    for t in targets:
        by_k = df[df["target_bpp"] == t].set_index("models")["msssim"]
        assert by_k[1] <= by_k[2] <= by_k[5]
        # all five points allowed = the submission's own per-image result
        own = next(r for r in run.rows if r["target_bpp"] == t)
        assert by_k[5] == pytest.approx(own["msssim"])
    # k = 1 is the single-model (shared policy) result
    shared = run_benchmark("five_shared", ds, targets, reports_dir=tmp_path / "r2", progress=False,
                           submissions_root=subs)
    for r in shared.rows:
        one = df[(df["models"] == 1) & (df["target_bpp"] == r["target_bpp"])].iloc[0]
        assert one["msssim"] == pytest.approx(r["msssim"]) and len(one["models_used"].split()) == 1

    csv_path, md_path = write_model_count(df, reports / "imgs")
    assert "| 5 |" in md_path.read_text()
    page = build_report(reports / "imgs")["html"].read_text()
    assert "Models per image" in page
    # another submission's table joins the file; writing one again replaces only its own rows
    other = df.assign(submission="other", msssim=df["msssim"] - 0.01)
    write_model_count(other, reports / "imgs")
    write_model_count(df, reports / "imgs")
    stored = pd.read_csv(csv_path)
    assert sorted(stored["submission"].unique()) == ["five", "other"] and len(stored) == 2 * len(df)
    assert "## five" in md_path.read_text() and "## other" in md_path.read_text()
    page = build_report(reports / "imgs")["html"].read_text()
    assert "five, MS-SSIM objective: the best subset" in page and "other, MS-SSIM objective: the best subset" in page


def test_a_psnr_table_sits_beside_the_msssim_one_and_older_rows_count_as_msssim(subs, image_folder, tmp_path):
    reports, targets = tmp_path / "reports", [0.8, 1.5]
    ds = f"folder:{image_folder}"
    run_benchmark("five", ds, targets, reports_dir=reports, progress=False, submissions_root=subs)
    by_ssim = model_count_table("five", ds, targets, (1, 2), reports_dir=reports, submissions_root=subs)
    by_psnr = model_count_table("five", ds, targets, (1, 2), objective="psnr", reports_dir=reports,
                                submissions_root=subs)
    assert set(by_ssim["objective"]) == {"msssim"} and set(by_psnr["objective"]) == {"psnr"}
    # each objective's best subset is best by its own measure
    assert (by_psnr["psnr"].to_numpy() >= by_ssim["psnr"].to_numpy() - 1e-9).all()
    assert (by_ssim["msssim"].to_numpy() >= by_psnr["msssim"].to_numpy() - 1e-12).all()
    csv_path, md_path = write_model_count(by_ssim.drop(columns="objective"), reports / "imgs")  # a file from before
    write_model_count(by_psnr, reports / "imgs")
    stored = pd.read_csv(csv_path)
    assert len(stored) == len(by_ssim) + len(by_psnr)
    assert stored["objective"].fillna("msssim").value_counts().to_dict() == {"msssim": 4, "psnr": 4}
    md = md_path.read_text()
    assert md.index("## five (MS-SSIM objective)") < md.index("## five (PSNR objective)")
    page = build_report(reports / "imgs")["html"].read_text()
    assert "five, MS-SSIM objective" in page and "five, PSNR objective" in page


def test_counts_beyond_the_models_are_refused(subs, image_folder, tmp_path):
    with pytest.raises(ValueError, match="has 5 models"):
        model_count_table("five", f"folder:{image_folder}", [0.5], (6,), reports_dir=tmp_path, submissions_root=subs)
