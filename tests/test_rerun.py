"""Checking a published row from a fresh clone (bench/rerun.py, bench verify): missing files
are said to be missing, not wrong; a row's chosen points re-coded here must give the very files
whose SHA-256 the row published, and a mismatch names the image and the point."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from bench.cli import main
from bench.results import PER_IMAGE_COLUMNS, read_csv, write_csv
from bench.verify import MISSING


def _reports(jpeg_run):
    res, folder, tmp_path = jpeg_run
    return res, f"folder:{folder}", str(tmp_path / "reports")


def test_missing_files_are_not_counted_as_rows_that_do_not_reproduce(jpeg_run, capsys):
    res, dataset, reports = _reports(jpeg_run)
    shutil.rmtree(res.run_dir / "bitstreams")           # as a clone that never had them
    assert main(["verify", "-d", dataset, "--reports", reports]) == 3
    out = capsys.readouterr().out
    assert "files not present (0 of 3)" in out and "0 of 0 rows with their files" in out
    assert f"python -m bench verify --rerun -s jpeg -d {dataset}" in out
    assert all(r["bit_identical"] == MISSING for r in read_csv(res.run_dir.parent.parent / "verify.csv"))


def test_rerun_reproduces_the_published_files_and_publish_brings_them_back(jpeg_run, capsys):
    res, dataset, reports = _reports(jpeg_run)
    published = {ln["image_id"] + ln["target_bpp"]: ln["file_sha256"] for ln in read_csv(res.run_dir / "per_image.csv")}
    assert all(len(h) == 64 for h in published.values())
    shutil.rmtree(res.run_dir / "bitstreams")
    assert main(["verify", "--rerun", "-d", dataset, "--reports", reports]) == 0
    assert "2 of 2 rows reproduce bit-exactly" in capsys.readouterr().out
    lines = read_csv(res.run_dir / "per_image.csv")          # a row published before file hashes existed
    for ln in lines:
        ln["file_sha256"] = ""
    write_csv(res.run_dir / "per_image.csv", lines, PER_IMAGE_COLUMNS)
    assert main(["verify", "--rerun", "--publish", "-d", dataset, "--reports", reports]) == 0
    again = read_csv(res.run_dir / "per_image.csv")
    assert {ln["image_id"] + ln["target_bpp"]: ln["file_sha256"] for ln in again} == published
    for ln in again:                                          # the files are back, byte for byte
        assert hashlib.sha256(Path(ln["file"]).read_bytes()).hexdigest() == ln["file_sha256"]
    assert all(r["reproduced"] for r in read_csv(res.run_dir / "rows.csv") if r["status"] == "ok")
    assert main(["verify", "-d", dataset, "--reports", reports]) == 0


def test_a_published_hash_that_differs_by_one_character_fails_naming_the_image(jpeg_run, capsys):
    res, dataset, reports = _reports(jpeg_run)
    lines = read_csv(res.run_dir / "per_image.csv")
    target = lines[1]
    h = target["file_sha256"]
    target["file_sha256"] = h[:20] + ("0" if h[20] != "0" else "1") + h[21:]
    write_csv(res.run_dir / "per_image.csv", lines, PER_IMAGE_COLUMNS)
    assert main(["verify", "--rerun", "-d", dataset, "--reports", reports]) == 1
    out = capsys.readouterr().out
    assert f"{target['image_id']} @ {target['point']}: file SHA-256" in out and "differs from the published" in out
    assert "1 of 2 rows reproduce bit-exactly" in out
