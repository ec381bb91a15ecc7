"""Where the project keeps things: the repository root, the shared data mirror, checkpoints."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
SUBMISSIONS_DIR = REPO_ROOT / "submissions"
REPORTS_DIR = REPO_ROOT / "reports"
LOCAL_DATA_DIR = REPO_ROOT / "data"
SHARED_DATA_DIR = REPO_ROOT.parent / "shared" / "data"
REFERENCE_DIR = REPO_ROOT.parent / "shared" / "reference" / "compressai-results"


def checkpoints_dir() -> Path:
    """Intermediate training checkpoints: ``BENCH_CHECKPOINTS`` or ``<repo>/checkpoints`` (ignored by git)."""
    return Path(os.environ.get("BENCH_CHECKPOINTS", REPO_ROOT / "checkpoints"))
