"""Which code made a result: the commit, and whether the working tree's code differed from it.

A run on a tree with uncommitted changes names its commit with ``+dirty`` (as rows always
did) and records in ``run.json`` which files differed and the SHA-256 of their diff, so a
reader can tell "this commit plus these edits" from "this commit". Outputs do not count:
``reports/`` is where runs write, and a re-run on a clean checkout writes there too.
Untracked files count (a new submission folder that was never committed made its rows).
"""

from __future__ import annotations

import hashlib
import subprocess
from typing import Any

from bench.paths import REPO_ROOT

#: Paths whose changes do not change any result: what runs write, and the prose.
OUTPUTS = ("reports/", "docs/", "README.md")


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=30,
                          check=True).stdout


def changed_files() -> list[str]:
    """Files whose content differs from HEAD (tracked, or untracked and not ignored), outputs aside."""
    out = _git("status", "--porcelain", "--untracked-files=all", "-z")
    paths = []
    for entry in out.split("\0"):
        if len(entry) > 3:
            path = entry[3:]
            if not path.startswith(OUTPUTS):
                paths.append(path)
    return sorted(set(paths))


def code_state() -> dict[str, Any]:
    """``{"commit", "clean", "changed", "diff_sha256"}`` of this checkout (``commit`` is
    ``unknown`` outside a git checkout)."""
    try:
        sha = _git("rev-parse", "--short=12", "HEAD").strip()
        changed = changed_files()
    except (OSError, subprocess.SubprocessError):
        return {"commit": "unknown", "clean": False, "changed": [], "diff_sha256": ""}
    h = hashlib.sha256()
    if changed:
        h.update(_git("diff", "HEAD", "--binary", "--", *changed).encode())
        for path in changed:                                  # untracked files are not in the diff
            f = REPO_ROOT / path
            if f.is_file():
                h.update(path.encode() + b"\0" + f.read_bytes())
    return {"commit": sha, "clean": not changed, "changed": changed, "diff_sha256": h.hexdigest() if changed else ""}


def commit_label(state: dict[str, Any]) -> str:
    """What a row's ``commit`` column says: the commit, ``+dirty`` when the code differed."""
    return state["commit"] + ("" if state["clean"] or state["commit"] == "unknown" else "+dirty")
