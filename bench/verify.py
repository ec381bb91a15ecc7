"""Recompute a leaderboard from its files alone: decode every row's bitstream folder, compare
sizes and metrics with what the row reports, and each decoded image's fingerprint with the one
the run recorded (bit-exact decoding in another process: the submission's sandboxed decoder,
:mod:`bench.sandbox`). Writes ``reports/<dataset>/verify.csv`` with the device it ran on."""

from __future__ import annotations

import math
import re
from pathlib import Path

from bench.data import open_dataset
from bench.device import check_device, device_label, matching_gpu
from bench.job import decoded_hash
from bench.metrics import image_metrics, msssim_db, psnr_from_mse
from bench.paths import REPO_ROOT, SUBMISSIONS_DIR
from bench.report.studies import VERIFY_CSV
from bench.results import ROW_KEY, column_value, read_csv, write_csv
from bench.sandbox.client import RemoteCodec
from bench.submission import get_submission


def _run_files(dataset_dir: Path, name: str) -> list[dict]:
    """Every run's stored ``name`` (rows.csv or per_image.csv) under ``runs/``, concatenated:
    verify reads the runs themselves, not the report built from them."""
    return [r for path in sorted((Path(dataset_dir) / "runs").glob(f"*/{name}")) for r in read_csv(path)]


def _row_id(r: dict) -> tuple:
    """(submission, mode, objective, target): which row of a run a line belongs to."""
    return r["submission"], *(column_value(r, k) for k in ROW_KEY[:-1]), float(r["target_bpp"])


def _recorded_hashes(dataset_dir: Path) -> dict[tuple, str]:
    return {(*_row_id(r), r["image_id"]): r["decoded_sha256"]
            for r in _run_files(dataset_dir, "per_image.csv") if r.get("decoded_sha256")}


def _run_device(row: dict) -> str | None:
    """The device a row's networks ran on, when this machine has it: the CPU, or a GPU of the
    model the row names (None: it has none; another GPU model's arithmetic may differ)."""
    if not row.get("device", "").startswith("cuda"):
        return "cpu"
    return matching_gpu(row["device"])


def _refused(row: dict, why: str) -> dict:
    """A verify line for a row this machine cannot decode (files counted, nothing recomputed)."""
    folder = _folder(row)
    files = sorted(folder.glob("*.bin"))
    return {"submission": row["submission"], "target_bpp": row["target_bpp"], "mode": row["mode"],
            "objective": column_value(row, "objective"), "files": len(files), "images": int(row["images"]),
            "bytes_on_disk": sum(f.stat().st_size for f in files),
            "bytes_reported": int(row["bytes"]), "psnr_recomputed": math.nan, "psnr_reported": float(row["psnr"]),
            "psnr_diff_db": math.nan, "msssim_db_recomputed": math.nan, "msssim_db_reported": float(row["msssim_db"]),
            "bit_identical": f"refused: {why}", "run_device": row.get("device", ""), "verify_device": "none"}


MISSING = "files not present"


def _missing(row: dict, present: list[Path]) -> dict:
    """A verify line for a row whose files are not here: nothing to check, nothing wrong."""
    return _refused(row, "") | {"files": len(present), "bytes_on_disk": sum(f.stat().st_size for f in present),
                                "bit_identical": MISSING}


def how_to_get_files(submission: str, dataset: str) -> str:
    """What to run to have a row's files: its run again, or its chosen points re-coded."""
    return (f"run `make bench SUBMISSION={submission} DATASET={dataset}` or "
            f"`python -m bench verify --rerun -s {submission} -d {dataset}`")


def _folder(row: dict) -> Path:
    folder = Path(row["bitstreams"])
    return folder if folder.is_absolute() else REPO_ROOT / folder


def _run_threads(device: str) -> int | None:
    """N of a run's ``cpu (N threads)`` label; None for other devices."""
    m = re.fullmatch(r"cpu \((\d+) threads?\)", device or "")
    return int(m.group(1)) if m else None


def verify_dataset(reports_dir: Path, dataset: str, submissions: list[str] | None = None,
                   sandboxed: bool = True, submissions_root: Path = SUBMISSIONS_DIR) -> list[dict]:
    """One line per ok row of the dataset's runs (``runs/*/rows.csv``): bytes on disk vs
    reported, PSNR / MS-SSIM recomputed vs reported, decoded fingerprints vs recorded.

    A CPU row is decoded with the thread count it was run with: the decoder's float sums
    depend on how they are split across threads, and a file coded and decoded with 1 thread
    decodes to a few different pixel values with 2 (same PSNR to 4 decimals, other
    fingerprints; measured on Kodak with the hyperprior models)."""
    import torch

    ds = open_dataset(dataset)
    dataset_dir = Path(reports_dir) / ds.name
    originals = {im.id: im for im in ds.images()}
    recorded = _recorded_hashes(dataset_dir)
    out = _verify_rows(dataset_dir, originals, recorded, submissions, torch.get_num_threads(), sandboxed,
                       submissions_root)
    # verifying some submissions keeps the other submissions' lines of an earlier verify
    path = Path(dataset_dir) / VERIFY_CSV
    kept = [r for r in read_csv(path) if r.get("submission") not in set(submissions)] if submissions else []
    write_csv(path, kept + out)
    return out


def _verify_rows(dataset_dir: Path, originals: dict, recorded: dict, submissions: list[str] | None,
                 default_threads: int, sandboxed: bool, submissions_root: Path) -> list[dict]:
    out, remotes = [], {}
    try:
        for row in _run_files(dataset_dir, "rows.csv"):
            if row["status"] == "ok" and not (submissions and row["submission"] not in submissions):
                out.append(_verify_row(row, originals, recorded, default_threads, sandboxed, remotes,
                                       submissions_root))
    finally:
        for remote in remotes.values():
            remote.close()
    return out


def _verify_row(row: dict, originals: dict, recorded: dict, default_threads: int, sandboxed: bool,
                remotes: dict, submissions_root: Path) -> dict:
    run_device = _run_device(row)
    if run_device is None:       # a GPU-coded file decodes on a GPU only (bench.codecs.learned.CUDA_CODED)
        return _refused(row, f"coded on {row['device']}; this machine has no such GPU: verify on one")
    threads, device = _run_threads(row.get("device", "")) or default_threads, check_device(run_device)
    files = sorted(_folder(row).glob("*.bin"))
    if len(files) < int(row["images"]):      # never published, or not re-made here: missing, not wrong
        return _missing(row, files)
    if row["submission"] not in remotes:
        remotes[row["submission"]] = RemoteCodec(get_submission(row["submission"], submissions_root), sandboxed,
                                                 device.startswith("cuda"))
    codec = remotes[row["submission"]]
    sse = values = 0.0
    ms_weighted = pixels = 0.0
    identical = compared = 0
    for f in files:
        orig = originals[f.stem].pixels
        # the decoder checks the file's claimed size against the original's before it decodes
        decoded = codec.decode(f.read_bytes(), orig.shape[:2], threads, device, str(f)).pixels
        want = recorded.get((*_row_id(row), f.stem))
        if want:
            compared += 1
            identical += decoded_hash(decoded) == want
        m = image_metrics(orig, decoded)
        sse += m["sse"]
        values += orig.size
        if not math.isnan(m["msssim"]):
            ms_weighted += m["msssim"] * orig.shape[0] * orig.shape[1]
            pixels += orig.shape[0] * orig.shape[1]
    psnr = psnr_from_mse(sse / values) if values else math.nan   # no files: reported as a mismatch
    ms = ms_weighted / pixels if pixels else math.nan
    return {"submission": row["submission"], "target_bpp": row["target_bpp"], "mode": row["mode"],
            "objective": column_value(row, "objective"), "files": len(files), "images": int(row["images"]),
            "bytes_on_disk": sum(f.stat().st_size for f in files), "bytes_reported": int(row["bytes"]),
            "psnr_recomputed": psnr, "psnr_reported": float(row["psnr"]),
            "psnr_diff_db": abs(psnr - float(row["psnr"])),
            "msssim_db_recomputed": msssim_db(ms), "msssim_db_reported": float(row["msssim_db"]),
            "bit_identical": f"{identical}/{compared}" if compared else "not recorded",
            "run_device": row.get("device", ""), "verify_device": device_label(device, threads)}
