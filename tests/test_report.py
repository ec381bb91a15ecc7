"""The report package: leaderboard.csv / per_image.csv / RD plots / self-contained HTML.

Runs are written by hand here (consistent CLIC numbers for two 768×512 images), so these
tests only exercise the renderer, not any codec.
"""

from __future__ import annotations

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
    assert set(paths) == {"leaderboard_csv", "per_image_csv", "html", "rd_msssim", "rd_psnr"}
    for p in paths.values():
        assert p.parent == ds and p.is_file() and p.stat().st_size > 0
    for key in ("rd_msssim", "rd_psnr"):
        assert paths[key].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert paths[key].stat().st_size > 10_000


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
    assert list(board.columns[:5]) == ["submission", "dataset", "target_bpp", "mode", "status"]
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
    assert page.count("data:image/png;base64,") == 2
    assert 'src="http' not in page and "<link" not in page and "<script" not in page
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)
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
