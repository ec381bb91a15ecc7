"""The run's stores (bench/results.py): the append-only record store and its repairs on load."""

from __future__ import annotations

import json

from bench.results import ROW_KEY, RecordStore, merge_rows, write_csv


def test_torn_and_duplicate_lines_are_dropped_on_load(tmp_path):
    path = tmp_path / "records.jsonl"
    recs = [{"content_hash": "h", "image_sha256": f"s{i}", "point_key": "1", "bytes": i} for i in range(3)]
    lines = [json.dumps(r) for r in recs]
    path.write_text(lines[0] + "\n" + lines[1] + "\n" + lines[0].replace('"bytes": 0', '"bytes": 9') + "\n"
                    + lines[2][:10])
    store = RecordStore(path)
    assert store.repaired == 2 and len(store.records) == 2
    assert store.get("h", "s0", "1")["bytes"] == 9                 # the later copy wins
    assert [json.loads(ln)["image_sha256"] for ln in path.read_text().splitlines()] == ["s1", "s0"]
    store.append(recs[2])
    assert [json.loads(ln)["image_sha256"] for ln in path.read_text().splitlines()] == ["s1", "s0", "s2"]
    assert RecordStore(path).repaired == 0


def test_rows_written_before_the_objective_column_count_as_msssim_rows(tmp_path):
    """A rows.csv from before the objective column: a PSNR-objective row at the same target
    joins it, an MS-SSIM one replaces it."""
    path = tmp_path / "rows.csv"
    write_csv(path, [{"mode": "clic", "target_bpp": 0.15, "bpp": 0.149},
                     {"mode": "clic", "target_bpp": 0.3, "bpp": 0.29}])
    psnr = {"mode": "clic", "objective": "psnr", "target_bpp": 0.15, "bpp": 0.148}
    both = merge_rows(path, [psnr], ROW_KEY)
    assert [(r.get("objective") or "(old)", str(r["bpp"])) for r in both] == \
        [("(old)", "0.149"), ("(old)", "0.29"), ("psnr", "0.148")]
    write_csv(path, both)
    again = merge_rows(path, [{"mode": "clic", "objective": "msssim", "target_bpp": 0.15, "bpp": 0.1495}], ROW_KEY)
    assert sorted((r["objective"] or "(old)", str(r["bpp"])) for r in again) == \
        [("(old)", "0.29"), ("msssim", "0.1495"), ("psnr", "0.148")]
