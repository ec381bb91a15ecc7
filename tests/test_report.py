"""The report package: leaderboard.csv / per_image.csv / RD plots / self-contained HTML.

Runs are written by hand here (consistent CLIC numbers for two 768×512 images), so these
tests only exercise the renderer, not any codec.
"""

from __future__ import annotations

import html
import json
import math
import re
from pathlib import Path

import pandas as pd
import pytest

from bench.paths import REFERENCE_DIR
from bench.report import build_report, load_runs

PIXELS = [768 * 512, 768 * 512]
TOTAL_PX = sum(PIXELS)
TARGETS = (0.075, 0.15, 0.3)


def _db(m: float) -> float:
    return -10 * math.log10(1 - m)


def _write_csv(path: Path, rows: list[dict]) -> None:
    pd.DataFrame(rows).to_csv(path, index=False)


def _make_run(dataset_dir: Path, name: str, curve: list[tuple[str, int, float, float]],
              picks: dict[float, int | None], extra: dict[str, object] | None = None,
              description: str = "", errors: list[str] = ()) -> Path:
    """A run folder: ``curve`` = [(point, bytes, psnr, msssim)] on both images together;
    ``picks`` = target → index into curve (None: infeasible at that target)."""
    run = dataset_dir / "runs" / name
    run.mkdir(parents=True)
    ds = dataset_dir.name
    date, commit, device = "2025-11-21T10:00:00+00:00", "0123456789abcdef0123", "cpu (2 threads)"
    json.dump({"format_version": 1, "submission": name, "description": description,
               "content_hash": "f" * 64, "dataset": ds, "date": date, "commit": commit, "device": device,
               "environment": {"python": "3.11.2", "threads": 2}, "packages": {"pillow": "11.3.0"},
               "settings": {"targets": list(TARGETS), "mode": "set", "objective": "msssim", "policy": "greedy"},
               "image_notes": [], "errors": list(errors)}, (run / "run.json").open("w"))
    rd = [{"submission": name, "point": p, "images": 2, "bytes": b, "bpp": b * 8 / TOTAL_PX, "psnr": ps,
           "msssim": m, "msssim_db": _db(m)} for p, b, ps, m in curve]
    _write_csv(run / "rd.csv", rd)
    rows, per_image = [], []
    lowest = min(b for _, b, _, _ in curve) * 8 / TOTAL_PX
    for t in TARGETS:
        budget = math.floor(t * TOTAL_PX / 8)
        base = {"submission": name, "dataset": ds, "target_bpp": t, "mode": "set", "images": 2,
                "budget_bytes": budget, "device": device, "bitstreams": f"runs/{name}/bitstreams/set-{t}",
                "date": date, "commit": commit}
        i = picks[t]
        if i is None:
            rows.append({**base, "status": "infeasible", "lowest_bpp": lowest, "note": "no point fits the budget",
                         **{k: None for k in (extra or {})}})
            continue
        p, b, ps, m = curve[i]
        assert b <= budget, (name, t)
        rows.append({**base, "status": "ok", "bytes": b, "bpp": b * 8 / TOTAL_PX, "psnr": ps, "msssim": m,
                     "msssim_db": _db(m), "psnr_mean": ps + 0.1, "msssim_mean": m - 0.001, "enc_s": 0.42,
                     "dec_s": 0.05, "lowest_bpp": lowest, "note": "", **(extra or {})})
        for k, px in enumerate(PIXELS):
            per_image.append({"submission": name, "dataset": ds, "target_bpp": t, "mode": "set",
                              "image_id": f"kodim{k + 1:02d}", "point": p, "bytes": b // 2,
                              "bpp": (b // 2) * 8 / px, "psnr": ps, "msssim": m, "msssim_db": _db(m),
                              "enc_s": 0.21, "dec_s": 0.025, "file": f"kodim{k + 1:02d}.bin"})
    _write_csv(run / "rows.csv", rows)
    _write_csv(run / "per_image.csv", per_image)
    return run


def _make_dataset(root: Path, name: str = "kodak") -> Path:
    ds = root / name
    # Budgets for 2 images: 0.075 → 7372 B, 0.15 → 14745 B, 0.3 → 29491 B.
    _make_run(ds, "jpeg", [("q10", 9000, 25.1, 0.872), ("q30", 14000, 28.2, 0.941), ("q60", 22000, 30.4, 0.962),
                           ("q80", 29000, 31.9, 0.975), ("q95", 60000, 36.0, 0.990)],
              {0.075: None, 0.15: 1, 0.3: 3}, description="libjpeg-turbo, 4:2:0")
    _make_run(ds, "tiny-hyperprior", [("l1", 4000, 26.0, 0.905), ("l2", 7000, 27.9, 0.936),
                                      ("l3", 14500, 30.1, 0.962), ("l4", 29400, 32.5, 0.972)],
              {0.075: 1, 0.15: 2, 0.3: 3},
              extra={"params": 2_150_000, "decoder_bytes": 8_700_000, "dec_kmac_px": 41.5, "rate_overhead_pct": 0.8},
              description="small learned codec", errors=["kodim99: unreadable PNG; skipped"])
    broken = ds / "runs" / "half-run"
    broken.mkdir(parents=True)
    (broken / "run.json").write_text(json.dumps({"submission": "half-run", "format_version": 1}))
    (broken / "per_image.csv").write_text("submission,target_bpp\nhalf-run,0.15\n")
    return ds


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    ds = _make_dataset(tmp_path_factory.mktemp("reports"))
    paths = build_report(ds, extra_sections=[("Ablation", "<p id='abl'>ablation table here</p>")])
    return ds, paths


def test_returns_all_outputs(report):
    ds, paths = report
    plots = {"rd_msssim", "rd_psnr", "rd_msssim_full", "rd_psnr_full"}
    assert set(paths) == {"leaderboard_csv", "per_image_csv", "html"} | plots
    for p in paths.values():
        assert p.parent == ds and p.is_file() and p.stat().st_size > 0
    for key in plots:
        assert paths[key].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert paths[key].stat().st_size > 5_000


def test_leaderboard_rows_order_and_extra_columns(report):
    _, paths = report
    board = pd.read_csv(paths["leaderboard_csv"])
    assert len(board) == 6
    order = list(zip(board["target_bpp"], board["submission"], board["status"]))
    assert order == [(0.075, "tiny-hyperprior", "ok"), (0.075, "jpeg", "infeasible"),
                     (0.15, "tiny-hyperprior", "ok"), (0.15, "jpeg", "ok"),
                     (0.3, "jpeg", "ok"), (0.3, "tiny-hyperprior", "ok")]
    for col in ("params", "decoder_bytes", "dec_kmac_px", "rate_overhead_pct", "lowest_bpp", "bitstreams", "commit"):
        assert col in board.columns
    assert list(board.columns[:6]) == ["submission", "dataset", "target_bpp", "mode", "objective", "status"]
    hp = board[board["submission"] == "tiny-hyperprior"]
    assert (hp["params"] == 2_150_000).all()
    assert board.loc[1, "msssim"] != board.loc[1, "msssim"]  # infeasible row: empty metrics stay empty
    assert str(board.loc[0, "commit"]) == "0123456789abcdef0123"
    assert "half-run" not in set(board["submission"])


def test_per_image_concatenated(report):
    _, paths = report
    per = pd.read_csv(paths["per_image_csv"], dtype={"image_id": str})
    assert len(per) == 2 * (2 + 3)  # jpeg: 2 feasible targets, hyperprior: 3; two images each
    assert set(per["submission"]) == {"jpeg", "tiny-hyperprior"}


def test_html_is_self_contained_and_complete(report):
    _, paths = report
    page = paths["html"].read_text(encoding="utf-8")
    assert "jpeg" in page and "tiny-hyperprior" in page
    assert "infeasible: lowest 0.0916 bpp" in page  # 9000 B × 8 / 786432 px
    assert page.count("data:image/png;base64,") == 4   # fitted plots and their full-range twins
    assert 'src="http' not in page and "<link" not in page
    assert re.findall(r"<script[^>]*>", page) == ["<script>"]   # one inline script, nothing loaded
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)
    assert 'href="leaderboard.csv"' in page and 'href="per_image.csv"' in page
    assert "how to read" in page.lower() and "kodak" in page
    for text in ("0.9620", "14.20", "30.10", "7,000 / 7,372", "8.7 MB", "Params", "Dec. kMAC/px", "Rate overhead"):
        assert text in page, text
    assert 'class="num best"' in page
    # runs section: description, commit, content hash, errors; the broken folder named and skipped
    assert "small learned codec" in page and "0123456789" in page and "ffffffffffff" in page
    assert "kodim99: unreadable PNG" in page
    assert "half-run" in page and "rows.csv missing" in page
    assert "<p id='abl'>ablation table here</p>" in page
    assert page.index("<h2>Ablation</h2>") > page.index('id="runs"')


def test_broken_run_is_skipped(report):
    ds, _ = report
    runs, skipped = load_runs(ds)
    assert [r.name for r in runs] == ["jpeg", "tiny-hyperprior"]
    assert [s.name for s in skipped] == ["half-run"]
    assert "rows.csv missing" in skipped[0].reason


@pytest.mark.skipif(not (REFERENCE_DIR / "kodak").is_dir(), reason="reference curves not in this checkout")
def test_kodak_reference_curves_load():
    from bench.report.plots import load_references

    refs, notes = load_references(REFERENCE_DIR, "kodak")
    assert not notes and len(refs) == 6
    jpeg = next(r for r in refs if r.label == "JPEG")
    assert 5 < jpeg.msssim_db[0] < 10 and 20 < jpeg.psnr[0] < 30  # linear MS-SSIM 0.80 → ~7 dB


def test_half_written_files_and_missing_references(tmp_path):
    ds = _make_dataset(tmp_path, "other-set")
    run = ds / "runs" / "jpeg"
    (run / "rd.csv").unlink()  # rows still count, only the curve goes
    bad = ds / "runs" / "killed"
    bad.mkdir()
    (bad / "run.json").write_text('{"submission": "killed", "da')  # cut off mid-write
    (bad / "rows.csv").write_text("submission,target_bpp,status\nkilled,0.15,ok\n")
    empty = ds / "runs" / "empty-rows"
    empty.mkdir()
    (empty / "run.json").write_text('{"submission": "empty-rows"}')
    (empty / "rows.csv").write_text("")
    paths = build_report(ds, reference_dir=tmp_path / "nowhere")
    board = pd.read_csv(paths["leaderboard_csv"])
    assert set(board["submission"]) == {"jpeg", "tiny-hyperprior"} and len(board) == 6
    page = paths["html"].read_text(encoding="utf-8")
    for name in ("killed", "empty-rows", "half-run"):
        assert name in page
    assert "rd.csv missing" in page
    assert paths["rd_psnr"].stat().st_size > 0


def test_no_runs_at_all(tmp_path):
    ds = tmp_path / "empty"
    ds.mkdir()
    paths = build_report(ds, reference_dir=None)
    assert pd.read_csv(paths["leaderboard_csv"]).empty
    assert "No complete runs" in paths["html"].read_text(encoding="utf-8")
    assert paths["rd_msssim"].stat().st_size > 0


def test_tables_compact_sortable_with_drill_downs(report):
    _, paths = report
    page = paths["html"].read_text(encoding="utf-8")
    assert page.count('class="drill" hidden') == 5          # one per feasible row: its images' results
    assert "kodim01" in page and "kodim02" in page
    head = re.search(r'<section id="target-0-15">.*?</thead>', page, re.S).group(0)
    shown = re.findall(r'<th(?![^>]*class="[^"]*\bx\b)[^>]*data-sort[^>]*>([^<]*)</th>', head)
    assert shown == ["#", "Submission", "MS-SSIM", "MS-SSIM dB", "PSNR dB", "bpp", "vs. next", "Bytes / budget",
                     "Decode s", "Decoder", "Device"]
    # encode time, SSIMULACRA 2, FLIP (offered even before any row has them), params, decoder MACs, rate overhead
    assert "More columns (8)" in head
    assert "nan" not in re.sub(r"data:image/png;base64,[^\"]*", "", page).lower().replace("nano", "")


def test_best_is_judged_on_the_value_shown():
    from bench.report.html import Column, best_text, fixed

    psnr = Column("psnr", "PSNR", fixed(2), "max")
    assert best_text(psnr, [25.4512, 25.4491, 24.0]) == "25.45"   # both rows show 25.45: both highlighted
    assert best_text(psnr, [25.4512, 25.4491]) is None            # all shown equal: nothing stands out
    assert best_text(Column("bpp", "bpp", fixed(4)), [0.1, 0.2]) is None


def _add_per_image_mode(ds: Path) -> None:
    """jpeg also run per image at 0.3 (stored in the same run folder, as bench.run does)."""
    rows = pd.read_csv(ds / "runs" / "jpeg" / "rows.csv")
    extra = rows[rows["target_bpp"] == 0.3].assign(mode="per-image", msssim=0.970, msssim_db=_db(0.970))
    pd.concat([rows, extra]).to_csv(ds / "runs" / "jpeg" / "rows.csv", index=False)


def test_modes_get_their_own_tables_and_the_header_counts_them(tmp_path):
    ds = _make_dataset(tmp_path)
    _add_per_image_mode(ds)
    page = build_report(ds, reference_dir=None)["html"].read_text(encoding="utf-8")
    assert "2 submissions · 3 targets · per-image mode also: jpeg" in page
    assert '<section id="mode-per-image">' in page and '<section id="per-image-target-0-3">' in page
    main = page[page.index('<section id="target-0-3">'):page.index('<section id="mode-per-image">')]
    assert main.count('<tbody class="g">') == 2             # jpeg once in the CLIC table, not twice


def _write_gating(ds: Path, gated: str, dense: str) -> None:
    from bench.studies.gating import COLUMNS, LAYER_COLUMNS, write_gating

    row = dict.fromkeys(COLUMNS, 1.0) | {"lmbda": 0.08, "psnr_drop_pct": 2.5, "identical": False,
                                         "values_differing": 1234, "max_abs_diff": 7, "synth_values_differing": 0}
    layer = dict.fromkeys(LAYER_COLUMNS, 1) | {"layer": "g_s.0", "active_mean": 0.25}
    summary = {"gated": gated, "dense": dense, "dataset": ds.name, "images": 2, "lambdas": [0.08],
               "bd_rate_pct": {"psnr": 9.4, "msssim_db": 10.4}, "params": 1000, "weights_never_used": 250,
               "storage_saving_pct": 25.0, "device": "cpu (1 threads)", "timing_threads": 2, "claim_2x_at_1pct": False}
    write_gating({"rows": [row], "layers": [layer], "summary": summary}, ds)


def test_studies_are_tables_and_a_skipped_subject_is_named_once(tmp_path):
    from bench.studies.ablation import ablation, write_ablation

    ds = _make_dataset(tmp_path)
    write_ablation(ablation(ds, "jpeg", "jpeg"), ds)
    _write_gating(ds, "half-run", "tiny-hyperprior")                   # half-run: a folder without rows.csv
    pd.DataFrame([{"submission": "jpeg", "target_bpp": 0.15, "mode": "set", "files": 2, "images": 2,
                   "bytes_on_disk": 14000, "bytes_reported": 14000, "psnr_diff_db": 0.0, "bit_identical": "2/2",
                   "run_device": "cpu", "verify_device": "cpu"}]).to_csv(ds / "verify.csv", index=False)
    page = build_report(ds, reference_dir=None)["html"].read_text(encoding="utf-8")
    assert "<pre>" not in page
    abl = page[page.index("<h2>Ablation: jpeg vs jpeg</h2>"):]
    assert "<table" in abl[:3000] and "BD-rate of jpeg against jpeg" in abl
    assert 'href="ablation_jpeg_vs_jpeg.csv"' in abl and 'href="ablation_jpeg_vs_jpeg.json"' in abl
    gate = page[page.index("<h2>Channel gating: half-run vs tiny-hyperprior</h2>"):]
    assert "1,234 (by ≤ 7)" in gate and "none" in gate and "g_s.0" in gate and "25%" in gate
    assert 'href="gating_half-run_vs_tiny-hyperprior_layers.csv"' in gate
    assert page.count("rows.csv missing") == 1 and "Not on the leaderboard: <code>half-run</code>" in gate
    assert "Skipped" not in page                                  # the only skipped folder is named by its study
    assert "1 of the 5 ok rows on the leaderboard (not yet checked: jpeg, tiny-hyperprior)" in page


def test_bd_rate_against_the_best_classical_codec_and_fitted_plots(report):
    from bench.report.leaderboard import bd_summary, default_anchor
    from bench.report.plots import fitted_xlim

    ds, paths = report
    runs, _ = load_runs(ds)
    assert default_anchor(runs) == "jpeg"                         # the run without learned-codec columns
    rows = {r["submission"]: r for r in bd_summary(runs, "jpeg")}
    assert rows["jpeg"]["psnr_bd"] == pytest.approx(0.0, abs=1e-6)
    assert rows["tiny-hyperprior"]["msssim_db_bd"] < 0 and 0 < rows["tiny-hyperprior"]["msssim_db_overlap"] <= 1
    page = paths["html"].read_text(encoding="utf-8")
    assert "BD-rate against jpeg" in page
    lo, hi = fitted_xlim(runs, list(TARGETS))
    assert hi == pytest.approx(0.36) and 0 <= lo < 0.04


def test_a_row_that_leaves_its_budget_unused_is_marked_with_its_note(tmp_path):
    """bench/budget_note.py marks such rows at run time; the page shows the mark and the note."""
    ds = _make_dataset(tmp_path)
    rows = pd.read_csv(ds / "runs" / "jpeg" / "rows.csv")
    note = ("top operating point reached on 2 of 2 images: the codec's range ends below the target "
            "(69.0% of the budget used)")
    limited = rows["target_bpp"] == 0.3
    rows.loc[limited, "note"] = note
    rows["budget_limited"] = limited
    rows.to_csv(ds / "runs" / "jpeg" / "rows.csv", index=False)
    page = build_report(ds, reference_dir=None)["html"].read_text(encoding="utf-8")
    table = page[page.index('<section id="target-0-3">'):page.index('<section id="target-0-3">') + 20000]
    assert 'class="limited"' in table or 'class="leader limited"' in table
    assert html.escape(note) in table
    assert page.count(" limited\"") + page.count("\"limited\"") == 1       # only that row


def test_the_bd_anchor_is_chosen_on_the_command_line(report, capsys):
    from bench.cli import main

    ds, _ = report
    assert main(["report", "--dataset", ds.name, "--reports", str(ds.parent), "--bd-anchor", "jpg"]) == 2
    assert "did you mean 'jpeg'" in capsys.readouterr().err


# ----------------------------------------------------------------------------- confidence, perceptual, explore
IMAGES = [f"img{i}" for i in range(8)]
PX = 96 * 64


def _run_from_images(ds: Path, name: str, values: dict[float, list[tuple[int, float, float]]],
                     perceptual: bool = False, learned: bool = False) -> None:
    """A run whose rows are the CLIC aggregates of its per-image values: target → per image
    (bytes, psnr, msssim); ``perceptual`` adds SSIMULACRA 2 and FLIP per image and per row."""
    run = ds / "runs" / name
    run.mkdir(parents=True)
    json.dump({"format_version": 1, "submission": name, "date": "2025-11-21T10:00:00+00:00",
               "settings": {"targets": sorted(values)}}, (run / "run.json").open("w"))
    rows, per_image, rd = [], [], []
    for t, vals in sorted(values.items()):
        total = sum(b for b, _, _ in vals)
        mse = sum(255 ** 2 / 10 ** (p / 10) for _, p, _ in vals) / len(vals)
        ms = sum(m for _, _, m in vals) / len(vals)
        row = {"submission": name, "dataset": ds.name, "target_bpp": t, "mode": "clic", "status": "ok",
               "images": len(vals), "bytes": total, "budget_bytes": math.floor(t * PX * len(vals) / 8),
               "bpp": total * 8 / (PX * len(vals)), "psnr": 10 * math.log10(255 ** 2 / mse), "msssim": ms,
               "msssim_db": _db(ms), "device": "cpu (1 threads)"}
        if learned:
            row["params"] = 1000
        for i, (b, p, m) in enumerate(vals):
            line = {"submission": name, "dataset": ds.name, "target_bpp": t, "mode": "clic", "image_id": IMAGES[i],
                    "point": f"q{i % 3}", "bytes": b, "bpp": b * 8 / PX, "psnr": p, "msssim": m, "msssim_db": _db(m)}
            if perceptual:
                line |= {"ssimulacra2": 40 + 100 * (m - 0.8), "flip": 0.3 - m / 4}
            per_image.append(line)
        if perceptual:
            row |= {"ssimulacra2": 40 + 100 * (ms - 0.8), "flip": 0.3 - ms / 4}
        rows.append(row)
        rd.append({"submission": name, "point": f"p{t}", "images": len(vals), "bytes": total, "bpp": row["bpp"],
                   "psnr": row["psnr"], "msssim": ms, "msssim_db": _db(ms)})
    for f, data in (("rows.csv", rows), ("per_image.csv", per_image), ("rd.csv", rd)):
        _write_csv(run / f, data)


def _images_dataset(root: Path) -> Path:
    """Three runs on 8 images: 'good' beats 'fair' on every image, 'fair' and 'twin' differ by noise."""
    rng = __import__("numpy").random.default_rng(5)
    ds = root / "imgset"
    base = {t: [(int(700 * t * 10 + 40 * i), 24 + 3 * t * 10 + i / 2, 0.85 + 0.1 * t + 0.01 * i) for i in range(8)]
            for t in (0.15, 0.3)}
    good = {t: [(b, p + 0.8, m + 0.01) for b, p, m in v] for t, v in base.items()}
    twin = {t: [(b, p + rng.normal(0, 0.2), m + rng.normal(0, 0.002)) for b, p, m in v] for t, v in base.items()}
    _run_from_images(ds, "fair", base)
    _run_from_images(ds, "good", good, perceptual=True, learned=True)
    _run_from_images(ds, "twin", twin)
    return ds


def test_confidence_columns_come_from_per_image_results(tmp_path):
    from bench.report.confidence import interval, row_images, set_values

    ds = _images_dataset(tmp_path)
    paths = build_report(ds, reference_dir=None)
    board = pd.read_csv(paths["leaderboard_csv"])
    for col in ("msssim_ci_lo", "msssim_ci_hi", "psnr_ci_lo", "psnr_ci_hi", "next", "next_wins", "next_images",
                "next_significant", "ssimulacra2", "flip"):
        assert col in board.columns, col
    for _, r in board.iterrows():
        assert r["msssim_ci_lo"] <= r["msssim"] <= r["msssim_ci_hi"] and r["psnr_ci_lo"] <= r["psnr"] <= r["psnr_ci_hi"]
    top = board[(board["target_bpp"] == 0.15)].reset_index(drop=True)
    assert list(top["submission"][:1]) == ["good"]
    assert top.loc[0, "next_wins"] == 8 and top.loc[0, "next_images"] == 8 and bool(top.loc[0, "next_significant"])
    assert pd.isna(top.loc[2, "next"])                                 # the last row has no next
    fair_twin = top.loc[1]
    assert {fair_twin["submission"], fair_twin["next"]} == {"fair", "twin"} and not fair_twin["next_significant"]
    # the set values the bootstrap resamples are the leaderboard's own: pixel-weighted MS-SSIM, pooled PSNR
    runs, _ = load_runs(ds)
    good = next(r for r in runs if r.name == "good")
    ri = row_images(good.per_image[good.per_image["target_bpp"] == 0.15])
    row = good.rows[good.rows["target_bpp"] == 0.15].iloc[0]
    assert set_values(ri, "msssim") == pytest.approx(row["msssim"])
    assert set_values(ri, "psnr") == pytest.approx(row["psnr"])
    assert interval(ri, "msssim") == interval(ri, "msssim")               # seeded: the same page every time
    page = paths["html"].read_text(encoding="utf-8")
    assert "8 / 8" in page and "good better than fair (the next row) on 8 of 8 images" in page
    assert "not a re-run of rate control" in page and "±0." in page


def test_paired_comparison_and_win_count():
    import numpy as np

    from bench.report.confidence import RowImages, compare

    n = 24
    ids = tuple(f"i{k}" for k in range(n))
    rng = np.random.default_rng(0)
    ms = rng.uniform(0.85, 0.97, n)

    def row(m):
        return RowImages(ids, np.full(n, 1000.0), np.full(n, 0.15), np.asarray(m, float), np.full(n, 20.0))

    ahead = rng.uniform(size=n) < 0.8
    better = compare(row(ms + 0.002 * ahead), row(ms))
    assert better.wins == ahead.sum() and better.losses == 0 and better.significant
    assert better.sentence("A", "B").startswith(f"A better than B on {better.wins} of 24 images")
    noise = compare(row(ms + rng.normal(0, 0.003, n)), row(ms))
    assert not noise.significant and noise.lo < 0 < noise.hi
    assert compare(row(ms), row(ms).take(ids[:1])) is None               # one shared image: nothing to say


def test_bd_rate_interval_at_the_chosen_points(tmp_path):
    import numpy as np

    from bench.rd import bd_rate
    from bench.report.confidence import bd_rates
    from bench.report.leaderboard import bd_summary

    rng = np.random.default_rng(1)
    for _ in range(20):                 # the vectorised BD-rate is bjontegaard's pchip BD-rate
        n1, n2 = rng.integers(2, 6, 2)
        b, qb = np.sort(rng.uniform(0.05, 1, n1)), np.sort(rng.uniform(5, 15, n1))
        c, qc = np.sort(rng.uniform(0.05, 1, n2)), np.sort(rng.uniform(5, 15, n2))
        ref, ours = bd_rate(list(zip(b, qb)), list(zip(c, qc))), bd_rates(b[None], qb[None], c[None], qc[None])[0]
        assert (math.isnan(ref) and math.isnan(ours)) or ours == pytest.approx(ref, abs=1e-9)
    ds = _images_dataset(tmp_path)
    runs, _ = load_runs(ds)
    rows = {r["submission"]: r for r in bd_summary(runs, "fair")}
    good = rows["good"]
    assert good["msssim_db_chosen_bd"] < 0 and good["msssim_db_chosen_lo"] <= good["msssim_db_chosen_bd"] \
        <= good["msssim_db_chosen_hi"] and good["chosen_images"] == 8
    assert rows["fair"]["msssim_db_chosen_bd"] == pytest.approx(0.0, abs=1e-9)
    page = build_report(ds, reference_dir=None)["html"].read_text(encoding="utf-8")
    assert "at the chosen points, 95 % interval" in page and re.search(r"[−-]\d+\.\d % \[", page.replace("−", "-"))


def test_perceptual_columns_and_not_measured(tmp_path):
    ds = _images_dataset(tmp_path)
    paths = build_report(ds, reference_dir=None)
    per = pd.read_csv(paths["per_image_csv"])
    assert {"ssimulacra2", "flip"} <= set(per.columns) and per.loc[per["submission"] == "good", "flip"].notna().all()
    page = paths["html"].read_text(encoding="utf-8")
    table = page[page.index('<section id="target-0-15">'):page.index('<section id="target-0-3">')]
    assert "SSIMULACRA 2" in table and "FLIP" in table and table.count("not measured") == 4   # fair, twin × 2 metrics
    assert '<th class="num">SSIMULACRA 2</th>' in table or "SSIMULACRA 2</th>" in table     # in the drill-down too


def test_interactive_plots_are_inline_svg_with_controls(tmp_path):
    ds = _images_dataset(tmp_path)
    page = build_report(ds, reference_dir=None)["html"].read_text(encoding="utf-8")
    assert page.count("<svg ") == 4                                      # MS-SSIM dB, PSNR, SSIMULACRA 2, FLIP
    assert page.count('<g class="curve" data-sub="good" data-family="learned"') == 4
    assert page.count('data-sub="fair" data-family="classical"') == 2 + 1   # no perceptual values: two plots, a button
    assert 'button type="button" class="fam" data-family="learned"' in page
    circle = re.search(r'<circle class="chosen"[^>]*data-s="good"[^>]*>', page).group(0)
    for attr in ('data-d="imgset"', "data-b=", "data-v=", 'data-p="chosen at 0.15 bpp (clic); per image: q0 ×3'):
        assert attr in circle, attr
    assert re.findall(r"<script[^>]*>", page) == ["<script>"] and "<link" not in page


def test_old_runs_say_not_measured_in_the_plot_caption(report):
    _, paths = report
    page = paths["html"].read_text(encoding="utf-8")
    assert "Not measured for these rows yet: SSIMULACRA 2, FLIP." in page and page.count("<svg ") == 2
