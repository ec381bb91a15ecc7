"""A row coded on a changed tree is matched to the first clean commit whose own code gives the
run's content hash (bench/codematch.py), hashed in this repository's real history; a hash no
commit gives leaves the row unmatched and marked on the page."""

from __future__ import annotations

import json
import subprocess

import pandas as pd
import pytest

from bench.codematch import candidate_commits, dirty_runs, hashes_at, match_runs
from bench.paths import REPO_ROOT
from bench.report.html import _code_cell, _unreproduced
from bench.results import ROW_COLUMNS, read_csv, write_csv
from bench.submission import get_submission


def _rev(ref: str) -> str | None:
    p = subprocess.run(["git", "rev-parse", ref], cwd=REPO_ROOT, capture_output=True, text=True)
    return p.stdout.strip() if p.returncode == 0 else None


def _run_dir(tmp_path, commit: str, content_hash: str):
    run = tmp_path / "reports" / "kodak" / "runs" / "webp"
    run.mkdir(parents=True)
    row = {"submission": "webp", "dataset": "kodak", "target_bpp": 0.15, "mode": "clic", "status": "ok",
           "commit": commit[:12] + "+dirty"}
    earlier = {**row, "objective": "psnr", "commit": "15bfc2324601+dirty"}   # another run's row: not matched
    write_csv(run / "rows.csv", [row, earlier], ROW_COLUMNS)
    (run / "run.json").write_text(json.dumps({"submission": "webp", "commit": commit[:12] + "+dirty",
                                              "content_hash": content_hash}))
    return run


@pytest.fixture()
def three_back():
    commit = _rev("HEAD~3")
    if commit is None:
        pytest.skip("a clone without three commits of history (shallow): nothing to match against")
    return commit


def test_a_dirty_row_is_matched_to_the_first_commit_with_its_code(tmp_path, three_back):
    sub = get_submission("webp")
    want = sub.content_hash(sub.make_codec().versions())           # the code of this checkout
    run = _run_dir(tmp_path, three_back, want)
    assert dirty_runs(tmp_path / "reports", "kodak") == [run]
    logged = []
    [res] = match_runs([run], log=logged.append)
    assert res["code_commit"], f"no commit from {three_back[:12]} on hashes webp as {want}: {logged}"
    found = _rev(res["code_commit"])
    assert hashes_at(found, ["webp"])["webp"] == want               # computed by that commit's own code
    earlier = candidate_commits(three_back)
    before = earlier[:earlier.index(found)]
    assert all(hashes_at(c, ["webp"])["webp"] != want for c in before)  # and it is the first
    row, earlier = read_csv(run / "rows.csv")
    assert row["code_commit"] == res["code_commit"] and not earlier["code_commit"]
    assert json.loads((run / "run.json").read_text())["code_match"]["content_hash"] == want
    assert dirty_runs(tmp_path / "reports", "kodak") == []          # settled (the other run's row is not its)
    assert _unreproduced(pd.Series(row)) == ""
    assert f"code = {res['code_commit'][:10]}" in _code_cell(pd.Series(row)).text


def test_a_hash_no_commit_gives_leaves_the_row_unmatched_and_marked(tmp_path):
    head = _rev("HEAD")
    run = _run_dir(tmp_path, head, "0123456789abcdef")
    [res] = match_runs([run], log=lambda m: None)
    assert res["code_commit"] is None
    row, _ = read_csv(run / "rows.csv")
    assert not row.get("code_commit") and "code_match" not in json.loads((run / "run.json").read_text())
    assert "with uncommitted changes" in _unreproduced(pd.Series(row))


def test_a_commit_without_the_submission_says_so():
    root = subprocess.run(["git", "rev-list", "--max-parents=0", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                          text=True).stdout.split()
    if not root:
        pytest.skip("no root commit in this clone")
    assert hashes_at(root[0], ["context3d_gmm"]) == {}             # the ladder came much later
