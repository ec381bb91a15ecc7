"""Which clean commit's code made a row that was coded on a tree with changes.

A run records its submission's content hash (:meth:`bench.submission.Submission.content_hash`:
the submission folder, the codec module's import closure inside this project, the codec's
library versions). For a published row whose commit says ``+dirty``, the commits from that one
on are searched for the first whose code hashes the same, each hashed by its own code in a
fresh interpreter on its exported tree. A match means that commit's code is the code that coded
the row (with these library versions), so the row is reproducible from that commit without
re-coding it; ``rows.csv``'s ``code_commit`` column and ``run.json``'s ``code_match`` say so.
Rows with no match keep their mark on the page until ``bench verify --rerun --publish``
re-codes them at a clean commit.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.paths import REPO_ROOT
from bench.results import ROW_COLUMNS, atomic_write_text, read_csv, write_csv

#: What a commit's paths must include for its submission hashes to be computed there.
CODE_PATHS = ("bench", "submissions", "pyproject.toml")

# Run inside an exported tree with that tree's ``bench`` first on the path. Works with every
# version of the hash: before the stateless contract it took no arguments and asked the codec
# for its versions itself.
_HASH_SCRIPT = """
import json, sys
from pathlib import Path
import bench
from bench.submission import load_manifest
out = {"_bench": bench.__file__}
for name in sys.argv[1:]:
    try:
        sub = load_manifest(Path.cwd() / "submissions" / name / "submission.toml")
        try:
            out[name] = sub.content_hash()
        except TypeError:
            out[name] = sub.content_hash(sub.make_codec().versions())
    except Exception as e:
        out[name] = "error: " + type(e).__name__ + ": " + str(e)
print(json.dumps(out))
"""


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, check=True,
                          timeout=120).stdout


def candidate_commits(commit: str) -> list[str]:
    """``commit`` and then every later commit (oldest first) that changed code a hash reads."""
    later = _git("rev-list", "--reverse", "--first-parent", f"{commit}..HEAD", "--", *CODE_PATHS).split()
    return [_git("rev-parse", commit).strip(), *later]


def hashes_at(commit: str, names: list[str]) -> dict[str, str]:
    """Each named submission's content hash computed by ``commit``'s own code on its tree
    (``error: …`` where it cannot be: the folder is absent there, its codec does not load)."""
    present = [n for n in names if _git("ls-tree", commit, f"submissions/{n}/submission.toml").strip()]
    if not present:
        return {}
    with tempfile.TemporaryDirectory(prefix="codematch-") as tmp:
        paths = ["bench", *(f"submissions/{n}" for n in present)]
        archive = subprocess.run(["git", "archive", commit, *paths], cwd=REPO_ROOT, capture_output=True,
                                 check=True, timeout=600).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True, timeout=600)
        env = {**os.environ, "PYTHONPATH": tmp, "PYTHONDONTWRITEBYTECODE": "1"}
        p = subprocess.run([sys.executable, "-c", _HASH_SCRIPT, *present], cwd=tmp, env=env,
                           capture_output=True, text=True, timeout=900)
        if p.returncode:
            return {n: f"error: {p.stderr.strip()[-300:]}" for n in present}
        out = json.loads(p.stdout.strip().splitlines()[-1])
        if not str(out.pop("_bench")).startswith(tmp):
            raise RuntimeError(f"hashing at {commit[:12]} imported another tree's bench: {out}")
        return out


def dirty_runs(reports: Path, dataset: str, submissions: list[str] | None = None) -> list[Path]:
    """The run folders whose own run (``run.json``) wrote a row on a changed tree that has not
    been re-coded or matched since."""
    found = []
    for rows_csv in sorted((reports / dataset / "runs").glob("*/rows.csv")):
        if submissions and rows_csv.parent.name not in submissions:
            continue
        info = json.loads((rows_csv.parent / "run.json").read_text())
        if any("+dirty" in r.get("commit", "") and not _settled(r) and coded_by_run(r, info)
               for r in read_csv(rows_csv)):
            found.append(rows_csv.parent)
    return found


def _settled(row: dict) -> bool:
    again = row.get("reproduced") or ""
    return bool(row.get("code_commit")) or (bool(again) and "+dirty" not in again)


def match_runs(run_dirs: list[Path], log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """For each run, the first clean commit (from its own on) whose code hashes as the run's
    did; stamps the matched ones (:func:`stamp`). A commit hashes the unmatched runs'
    submissions once, for all of them."""
    infos = {d.name: json.loads((d / "run.json").read_text()) for d in run_dirs}
    seen: dict[str, dict[str, str]] = {}
    found: dict[str, str] = {}
    for run_dir in run_dirs:
        info = infos[run_dir.name]
        for c in candidate_commits(info["commit"].split("+")[0]):
            if run_dir.name not in seen.setdefault(c, {}):
                names = [n for n in infos if n not in found and n not in seen[c]]
                seen[c].update(hashes_at(c, names))
                log(f"[code] {c[:12]}: hashed {', '.join(names)}")
            if seen[c].get(run_dir.name) == info["content_hash"]:
                found[run_dir.name] = c[:12]
                stamp(run_dir, c[:12], info["content_hash"])
                break
    return [{"submission": infos[d.name]["submission"], "commit": infos[d.name]["commit"],
             "content_hash": infos[d.name]["content_hash"], "code_commit": found.get(d.name)} for d in run_dirs]


def coded_by_run(row: dict, info: dict[str, Any]) -> bool:
    """Whether ``run.json``'s run wrote the row: same commit, mode and objective. A run folder
    keeps the rows of earlier runs with other settings; their content hash is not recorded."""
    settings = info.get("settings", {})
    return (row.get("commit") == info.get("commit") and row.get("mode") == settings.get("mode", row.get("mode"))
            and (row.get("objective") or "msssim") == settings.get("objective", "msssim"))


def stamp(run_dir: Path, commit: str, content_hash: str) -> None:
    """``code_commit`` on the dirty rows the run wrote and ``code_match`` in its run.json."""
    info = json.loads((run_dir / "run.json").read_text())
    rows = read_csv(run_dir / "rows.csv")
    for row in rows:
        if "+dirty" in row.get("commit", "") and coded_by_run(row, info):
            row["code_commit"] = commit
    write_csv(run_dir / "rows.csv", rows, ROW_COLUMNS)
    info["code_match"] = {"commit": commit, "content_hash": content_hash,
                          "checked": datetime.now(UTC).date().isoformat(),
                          "by": "content hash of the submission folder, its codec's import closure and "
                                "library versions, computed by that commit's own code"}
    atomic_write_text(run_dir / "run.json", json.dumps(info, indent=2) + "\n")
