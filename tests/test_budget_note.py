"""A row that cannot spend its budget says why (bench/budget_note.py), from real runs: a codec
whose range ends below the target, and a single-model submission whose next model is over it."""

from __future__ import annotations

from bench.budget_note import FULL_USE, top_point
from bench.codec import OperatingPoints
from bench.run import run_benchmark
from tests.helpers.manifests import continuous, write_submission

JPEG = "bench.codecs.classical:JpegCodec"


def _run(name: str, image_folder, tmp_path, subs, target: float) -> dict:
    res = run_benchmark(name, f"folder:{image_folder}", [target], reports_dir=tmp_path / "r", progress=False,
                        submissions_root=subs)
    return res.rows[0]


def test_a_range_that_ends_below_the_target_gets_the_note(image_folder, tmp_path):
    subs = tmp_path / "subs"
    write_submission(subs, "narrow", JPEG, points=continuous(1, 20, integer=True, grid=4),
                     params={"optimize": True})
    row = _run("narrow", image_folder, tmp_path, subs, 6.0)      # JPEG q20 is far below 6 bpp
    assert row["status"] == "ok" and row["bytes"] < FULL_USE * row["budget_bytes"]
    assert row["budget_limited"] is True
    assert "top operating point reached on 3 of 3 images" in row["note"]


def test_a_single_model_submission_names_the_next_model_over_the_budget(image_folder, tmp_path):
    subs = tmp_path / "subs"
    write_submission(subs, "steps", JPEG, points=[10, 90], params={"optimize": True}, rate_control="shared")
    row = _run("steps", image_folder, tmp_path, subs, 1.5)           # q10 fits, q90 (≈3 bpp) does not
    assert row["status"] == "ok" and row["budget_limited"] is True
    assert "one model for every image, and the next one up (90) gives" in row["note"]
    assert "over the budget" in row["note"]


def test_a_row_that_uses_its_budget_has_no_note(jpeg_run):
    res, _, _ = jpeg_run
    for row in res.rows:
        if row["status"] == "ok":
            assert row["bytes"] >= FULL_USE * row["budget_bytes"] and "budget_limited" not in row


def test_top_point_of_each_kind_of_knob():
    assert top_point(OperatingPoints("discrete", ("a", "b"))) == "b"
    assert top_point(OperatingPoints("continuous", low=1, high=100, integer=True)) == 100
    assert top_point(OperatingPoints("continuous", low=0.5, high=25, rate_increases=False)) == 0.5
