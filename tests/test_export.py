"""bench export: CompressAI results JSON per run (read back by CompressAI's own plotting
helper) and one tidy CSV, from stored runs only."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from compressai.utils.plot.__main__ import parse_json_file

from bench.cli import main
from bench.export import export
from bench.paths import REPORTS_DIR
from bench.results import read_csv


def test_a_run_exports_as_compressai_reads_it(jpeg_run, tmp_path):
    res, folder, _ = jpeg_run
    paths = export(res.run_dir.parent.parent.parent, "compressai", tmp_path / "out")
    assert [p.name for p in paths] == ["jpeg.json"]
    rd = sorted(read_csv(res.run_dir / "rd.csv"), key=lambda r: float(r["bpp"]))
    data = json.loads(paths[0].read_text())
    assert data["name"] == "jpeg" and len(data["results"]["bpp"]) == len(rd)
    assert len(data["results"]["encoding_time"]) == len(rd) and all(t > 0 for t in data["results"]["decoding_time"])
    psnr = parse_json_file(paths[0], "psnr")                       # CompressAI's own reader
    assert psnr["xs"] == pytest.approx([float(r["bpp"]) for r in rd])
    assert psnr["ys"] == pytest.approx([float(r["psnr"]) for r in rd])
    ms = parse_json_file(paths[0], "ms-ssim")                      # it converts to dB itself
    assert ms["ys"] == pytest.approx([float(r["msssim_db"]) for r in rd], rel=1e-4)   # from 6-decimal MS-SSIM


def test_csv_long_is_one_tidy_table(jpeg_run, tmp_path):
    res, _, _ = jpeg_run
    assert main(["export", "--format", "csv-long", "--out", str(tmp_path / "out"),
                 "--reports", str(res.run_dir.parent.parent.parent)]) == 0
    df = pd.read_csv(tmp_path / "out" / "results_long.csv")
    per_image = read_csv(res.run_dir / "per_image.csv")
    assert len(df) == len(per_image) and set(df["submission"]) == {"jpeg"}
    assert {"dataset", "image_id", "point", "bpp", "psnr", "msssim", "file_sha256"} <= set(df.columns)
    assert df["file_sha256"].str.len().eq(64).all()


def test_every_committed_kodak_run_exports_and_loads_back(tmp_path):
    paths = export(REPORTS_DIR, "compressai", tmp_path, ["kodak"])
    runs = sorted(p.name for p in (REPORTS_DIR / "kodak" / "runs").iterdir() if (p / "rd.csv").exists())
    assert sorted(p.stem for p in paths) == runs
    for p in paths:
        curve = parse_json_file(p, "ms-ssim")
        assert curve["xs"] == sorted(curve["xs"]) and len(curve["xs"]) == len(curve["ys"]) >= 2
