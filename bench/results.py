"""The results store: one folder per (dataset, submission) run, written so nothing is lost.

``reports/<dataset>/runs/<submission>/`` holds ``records.jsonl`` (every evaluated image ×
operating point, appended one line per image as it finishes: the cache), ``cache/`` (their
bitstreams), the rate-controlled outputs (``rows.csv``, ``per_image.csv``, ``rd.csv``,
``bitstreams/<mode>-<target>/``) and ``run.json`` (format version, environment, versions).
Files other than the append-only log are written whole to a temporary name and renamed.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import platform
from collections.abc import Iterable
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.atomic import atomic_write_bytes, atomic_write_text  # noqa: F401 - also imported from here

FORMAT_VERSION = 1
# The columns of a run folder's CSVs (rows.csv, per_image.csv, rd.csv), in order; learned
# codecs add more to rows.csv (complexity, rate overhead), which readers carry through.
ROW_COLUMNS = ["submission", "dataset", "target_bpp", "mode", "objective", "status", "images", "bytes",
               "budget_bytes", "bpp", "psnr", "msssim", "msssim_db", "psnr_mean", "msssim_mean", "ssimulacra2",
               "flip", "enc_s", "dec_s", "device", "sandbox", "bitstreams", "lowest_bpp", "note", "date", "commit",
               "reproduced", "code_commit"]
PER_IMAGE_COLUMNS = ["submission", "dataset", "target_bpp", "mode", "objective", "image_id", "point", "bytes", "bpp",
                     "psnr", "msssim", "msssim_db", "ssimulacra2", "flip", "enc_s", "dec_s", "file",
                     "file_sha256", "decoded_sha256", "est_bits", "overhead_pct", "points_estimated", "points_coded"]
RD_COLUMNS = ["submission", "point", "images", "bytes", "bpp", "psnr", "msssim", "msssim_db", "psnr_mean",
              "msssim_mean", "estimated", "enc_s", "dec_s"]
# What a row answers: rate control's rule (mode, objective) at one target. Rows of one run
# with other keys are kept when a run is re-done (bench.run, bench.verify, the report).
ROW_KEY = ("mode", "objective", "target_bpp")
# Columns added after run files were first written, and what an older file's rows mean by
# them: before "objective", rate control always maximised MS-SSIM (the default).
LATER_COLUMNS = {"objective": "msssim"}
PACKAGES = ("torch", "torchvision", "compressai", "pytorch-msssim", "pillow", "imagecodecs", "numpy",
            "pandas", "fvcore", "joblib", "dask", "distributed")


def write_csv(path: Path, rows: list[dict], columns: list[str] | None = None) -> None:
    """Write rows as CSV; ``columns`` come first, any other keys the rows carry follow them."""
    cols = list(dict.fromkeys([*(columns or []), *(k for r in rows for k in r)]))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: _fmt(r.get(k)) for k in cols})
    atomic_write_text(path, buf.getvalue())


def read_csv(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _fmt(v: Any) -> Any:
    if isinstance(v, float):
        return "" if math.isnan(v) else repr(round(v, 6))
    return "" if v is None else v


class RecordStore:
    """Append-only JSON-lines log of records, keyed by (content hash, image sha256, point key).

    Each record is one ``write`` of one line with fsync, so a killed run leaves at most one
    partial last line. Loading skips it (that job is simply redone) and, when it found such a
    line or a key twice, rewrites the log with only whole, distinct records (to a temporary
    file, then renamed), so a resumed run ends with no half-written or duplicated record.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.records: dict[tuple[str, str, str], dict] = {}
        self._needs_newline = False
        self.repaired = 0   # torn or duplicate lines dropped when loading
        if not self.path.exists():
            return
        raw = self.path.read_bytes()
        lines = [line for line in raw.split(b"\n") if line.strip()]
        for line in lines:
            try:
                rec = json.loads(line)
                key = self.key(rec)
            except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError):
                continue  # a line cut by a kill: that job is simply redone
            self.records.pop(key, None)   # the last copy of a key wins, in its place
            self.records[key] = rec
        self.repaired = len(lines) - len(self.records)
        if self.repaired:
            atomic_write_text(self.path, "".join(json.dumps(r, allow_nan=True) + "\n" for r in self.records.values()))
        else:
            self._needs_newline = bool(raw) and not raw.endswith(b"\n")

    @staticmethod
    def key(rec: dict) -> tuple[str, str, str]:
        return rec["content_hash"], rec["image_sha256"], rec["point_key"]

    def get(self, content_hash: str, image_sha: str, point_key: str) -> dict | None:
        return self.records.get((content_hash, image_sha, point_key))

    def append(self, rec: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = ("\n" if self._needs_newline else "") + json.dumps(rec, allow_nan=True) + "\n"
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        self._needs_newline = False
        self.records[self.key(rec)] = rec


def column_value(row: dict, column: str) -> str:
    """``row[column]`` as text, with :data:`LATER_COLUMNS`' meaning where an older file lacks it."""
    value = row.get(column)
    missing = value is None or value == "" or (isinstance(value, float) and math.isnan(value))
    return LATER_COLUMNS.get(column, "") if missing else str(value)


def merge_rows(path: Path, new_rows: Iterable[dict], key: tuple[str, ...]) -> list[dict]:
    """Rows of ``path`` whose key is not among the new rows, then the new rows (re-runs of one
    mode, objective and target replace their old rows; the others are kept)."""
    new = list(new_rows)
    fresh = {tuple(column_value(r, k) for k in key) for r in new}
    kept = [r for r in read_csv(path) if tuple(column_value(r, k) for k in key) not in fresh]
    return kept + new


def package_versions() -> dict[str, str]:
    out = {}
    for p in PACKAGES:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            out[p] = "not installed"
    return out


def environment() -> dict[str, Any]:
    return {"python": platform.python_version(), "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(), "cpu_count": os.cpu_count()}


def run_info(**fields: Any) -> dict[str, Any]:
    """The run.json payload: format version, date, commit (``+dirty`` when the code differed
    from it) and what differed (:mod:`bench.provenance`), environment and the caller's fields."""
    from bench.provenance import code_state, commit_label

    state = code_state()
    return {"format_version": FORMAT_VERSION, "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "commit": commit_label(state), "provenance": state, "environment": environment(),
            "packages": package_versions(), **fields}


def write_json(path: Path, payload: dict) -> None:
    atomic_write_text(path, json.dumps(payload, indent=2, default=str) + "\n")
