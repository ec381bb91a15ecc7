"""End-to-end runs (bench/run.py) of real codecs on tiny real images: files on disk, budgets,
cache, decode. (``jpeg_run`` is in tests/conftest.py; ``bench verify``: tests/test_verify.py.)"""

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from bench.cli import main
from bench.metrics import psnr_from_mse, sse
from bench.paths import REPO_ROOT
from bench.results import read_csv
from bench.run import run_benchmark


def _bitstream_dir(row: dict) -> Path:
    p = Path(row["bitstreams"])
    return p if p.is_absolute() else REPO_ROOT / p


def test_clic_rows_respect_budget_and_publish_one_file_per_image(jpeg_run):
    res, folder, _ = jpeg_run
    rows = {r["target_bpp"]: r for r in res.rows}
    assert rows[0.05]["status"] == "infeasible" and rows[0.05]["lowest_bpp"] > 0.05
    assert "bytes" not in rows[0.05]
    for t in (0.6, 1.2):
        r = rows[t]
        assert r["status"] == "ok"
        assert r["bytes"] <= r["budget_bytes"] == math.floor(t * 3 * 192 * 176 / 8)
        assert r["bytes"] >= 0.95 * r["budget_bytes"]       # the budget is used, not wasted
        files = sorted(_bitstream_dir(r).iterdir())
        assert [f.stem for f in files] == ["img0", "img1", "img2"]
        assert sum(f.stat().st_size for f in files) == r["bytes"]


def test_decode_command_reproduces_reported_psnr(jpeg_run, tmp_path):
    res, folder, _ = jpeg_run
    row = next(r for r in res.rows if r["target_bpp"] == 0.6)
    out = tmp_path / "decoded"
    assert main(["decode", str(_bitstream_dir(row)), "--submission", "jpeg", "--out", str(out)]) == 0
    total_sse, values = 0.0, 0
    for png in sorted(out.glob("*.png")):
        orig = np.asarray(PILImage.open(folder / png.name).convert("RGB"))
        dec = np.asarray(PILImage.open(png).convert("RGB"))
        total_sse += sse(orig, dec)
        values += orig.size
    assert abs(psnr_from_mse(total_sse / values) - row["psnr"]) < 0.01


def test_second_run_encodes_nothing(jpeg_run):
    res, folder, tmp_path = jpeg_run
    again = run_benchmark("jpeg", f"folder:{folder}", targets=[0.05, 0.6, 1.2], reports_dir=tmp_path / "reports",
                          progress=False)
    assert res.computed > 0 and again.computed == 0
    assert [r.get("bytes") for r in again.rows] == [r.get("bytes") for r in res.rows]


def test_reports_written(jpeg_run):
    """``bench run`` (the CLI) rebuilds the dataset's report after the run; run_benchmark alone
    only writes the run's own files."""
    res, folder, tmp_path = jpeg_run
    ds_dir = tmp_path / "reports" / folder.name
    assert not (ds_dir / "leaderboard.csv").exists()
    assert main(["run", "-s", "jpeg", "-d", f"folder:{folder}", "--targets", "0.05,0.6,1.2", "--reports",
                 str(tmp_path / "reports"), "--no-progress"]) == 0
    board = read_csv(ds_dir / "leaderboard.csv")
    assert {r["target_bpp"] for r in board} == {"0.05", "0.6", "1.2"}
    for col in ["submission", "dataset", "target_bpp", "mode", "status", "images", "bytes", "budget_bytes", "bpp",
                "psnr", "msssim", "msssim_db", "psnr_mean", "msssim_mean", "enc_s", "dec_s", "device", "bitstreams"]:
        assert col in board[0]
    assert (ds_dir / "leaderboard.html").read_text().count("data:image/png;base64,") >= 2
    assert (res.run_dir / "run.json").exists() and read_csv(res.run_dir / "rd.csv")


def test_per_image_mode_keeps_every_image_under_target(image_folder, tmp_path):
    res = run_benchmark("webp", f"folder:{image_folder}", targets=[0.5], mode="per-image",
                        reports_dir=tmp_path / "r", progress=False)
    per_image = [r for r in read_csv(res.run_dir / "per_image.csv") if r["mode"] == "per-image"]
    assert res.rows[0]["status"] == "ok" and len(per_image) == 3
    assert all(float(r["bpp"]) <= 0.5 for r in per_image)


def test_a_bad_image_is_named_and_the_rest_still_run(image_folder, tmp_path):
    (image_folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    res = run_benchmark("null", f"folder:{image_folder}", targets=[30.0], reports_dir=tmp_path / "r", progress=False)
    assert any("broken" in e for e in res.errors)
    assert res.rows[0]["status"] == "ok" and res.rows[0]["images"] == 3


def test_null_codec_is_lossless(image_folder, tmp_path):
    res = run_benchmark("null", f"folder:{image_folder}", targets=[30.0], reports_dir=tmp_path / "r", progress=False)
    assert math.isinf(res.rows[0]["psnr"]) and res.rows[0]["msssim"] == pytest.approx(1.0)


def test_cli_list_and_unknown_submission(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "webp" in out and "kodak" in out
    assert main(["run", "--submission", "wepb"]) == 2
    assert "did you mean 'webp'" in capsys.readouterr().err


def test_cli_list_shows_the_bpp_range_of_a_stored_run(tmp_path, capsys):
    """``bench list`` reads each submission's stored Kodak / CLIC runs (rd.csv) for its range."""
    from tests.helpers.images import crop_folder

    folder = crop_folder(tmp_path / "kodak")          # a folder: dataset whose name is "kodak"
    res = run_benchmark("jpeg", f"folder:{folder}", [0.6], reports_dir=tmp_path / "r", progress=False)
    bpps = [float(r["bpp"]) for r in read_csv(res.run_dir / "rd.csv")]
    assert main(["list", "--reports", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    assert f"bpp range of its operating points: kodak {min(bpps):.3f}–{max(bpps):.3f}" in out
    assert out.count("bpp range") == 1                # no other submission has a run there


def test_a_psnr_objective_run_keeps_the_msssim_rows_beside_it(jpeg_run):
    """Rows are keyed by (mode, objective, target): OBJECTIVE=psnr adds its rows and files, the
    MS-SSIM rows at the same target stay, both verify from their own files, and the page
    ranks them in separate tables."""
    from bench.report import build_report
    from bench.verify import verify_dataset

    res, folder, tmp_path = jpeg_run
    psnr = run_benchmark("jpeg", f"folder:{folder}", targets=[0.6], objective="psnr",
                         reports_dir=tmp_path / "reports", progress=False)
    rows = read_csv(res.run_dir / "rows.csv")
    at = {(r["objective"], r["target_bpp"]): r for r in rows}
    assert set(at) == {("msssim", "0.05"), ("msssim", "0.6"), ("msssim", "1.2"), ("psnr", "0.6")}
    dirs = {o: _bitstream_dir(at[(o, "0.6")]) for o in ("msssim", "psnr")}
    assert dirs["msssim"].name == "clic-0.6" and dirs["psnr"].name == "clic-psnr-0.6"
    for o, d in dirs.items():
        assert sum(f.stat().st_size for f in d.iterdir()) == int(at[(o, "0.6")]["bytes"])
    per_image = read_csv(res.run_dir / "per_image.csv")
    assert sorted(r["objective"] for r in per_image if r["target_bpp"] == "0.6") == ["msssim"] * 3 + ["psnr"] * 3
    assert psnr.rows[0]["objective"] == "psnr"

    checked = verify_dataset(tmp_path / "reports", f"folder:{folder}")
    assert sorted((r["objective"], r["target_bpp"], r["bit_identical"]) for r in checked) == \
        [("msssim", "0.6", "3/3"), ("msssim", "1.2", "3/3"), ("psnr", "0.6", "3/3")]

    page = build_report(tmp_path / "reports" / folder.name)["html"].read_text()
    assert "CLIC mode, PSNR objective" in page and "rows of clic, clic · psnr" in page
    board = read_csv(tmp_path / "reports" / folder.name / "leaderboard.csv")
    assert sorted(r["objective"] for r in board if r["target_bpp"] == "0.6") == ["msssim", "psnr"]
