"""The run's stores (bench/results.py): the append-only record store and its repairs on load."""

from __future__ import annotations

import json

from bench.results import RecordStore


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
