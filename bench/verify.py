"""Recompute a leaderboard from its files alone: decode every row's bitstream folder, compare
sizes and metrics with what the row reports, and each decoded image's fingerprint with the one
the run recorded (bit-exact decoding in another process). Writes ``reports/<dataset>/verify.csv``
with the device it ran on."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np

from bench.data import open_dataset
from bench.metrics import image_metrics, msssim_db, psnr_from_mse
from bench.paths import REPO_ROOT
from bench.results import read_csv, write_csv
from bench.runner import decoded_hash, device_label
from bench.submission import get_submission


def _recorded_hashes(dataset_dir: Path) -> dict[tuple, str]:
    path = Path(dataset_dir) / "per_image.csv"
    rows = read_csv(path) if path.exists() else []
    return {(r["submission"], r["mode"], float(r["target_bpp"]), r["image_id"]): r["decoded_sha256"]
            for r in rows if r.get("decoded_sha256")}


def _run_threads(device: str) -> int | None:
    """N of a run's ``cpu (N threads)`` label; None for other devices."""
    m = re.fullmatch(r"cpu \((\d+) threads?\)", device or "")
    return int(m.group(1)) if m else None


def verify_dataset(reports_dir: Path, dataset: str, submissions: list[str] | None = None) -> list[dict]:
    """One line per ok row of ``reports_dir/<dataset name>/leaderboard.csv``: bytes on disk vs
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
    default_threads = torch.get_num_threads()
    try:
        out = _verify_rows(dataset_dir, originals, recorded, submissions, default_threads)
    finally:
        torch.set_num_threads(default_threads)
    write_csv(Path(dataset_dir) / "verify.csv", out)
    return out


def _verify_rows(dataset_dir: Path, originals: dict, recorded: dict, submissions: list[str] | None,
                 default_threads: int) -> list[dict]:
    import torch

    out = []
    for row in read_csv(Path(dataset_dir) / "leaderboard.csv"):
        if row["status"] != "ok" or (submissions and row["submission"] not in submissions):
            continue
        torch.set_num_threads(_run_threads(row.get("device", "")) or default_threads)
        device = device_label(torch.get_num_threads())
        folder = Path(row["bitstreams"])
        folder = folder if folder.is_absolute() else REPO_ROOT / folder
        files = sorted(folder.glob("*.bin"))
        codec = get_submission(row["submission"]).make_codec()
        sse = values = 0.0
        ms_weighted = pixels = 0.0
        identical = compared = 0
        for f in files:
            orig = originals[f.stem].pixels
            decoded = np.asarray(codec.decode(f.read_bytes()))
            want = recorded.get((row["submission"], row["mode"], float(row["target_bpp"]), f.stem))
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
        out.append({"submission": row["submission"], "target_bpp": row["target_bpp"], "mode": row["mode"],
                    "files": len(files), "images": int(row["images"]),
                    "bytes_on_disk": sum(f.stat().st_size for f in files), "bytes_reported": int(row["bytes"]),
                    "psnr_recomputed": psnr, "psnr_reported": float(row["psnr"]),
                    "psnr_diff_db": abs(psnr - float(row["psnr"])),
                    "msssim_db_recomputed": msssim_db(ms), "msssim_db_reported": float(row["msssim_db"]),
                    "bit_identical": f"{identical}/{compared}" if compared else "not recorded",
                    "run_device": row.get("device", ""), "verify_device": device})
    return out


def _diff(value: str) -> str:
    try:
        return f"{float(value):.4f}"
    except ValueError:
        return "no files"


def verify_html(csv_path: Path) -> str:
    """verify.csv as an HTML fragment for the dataset's report page."""
    import html

    rows = read_csv(csv_path)
    body = "".join(
        f"<tr><td>{html.escape(r['submission'])}</td><td>{html.escape(r['mode'])}</td><td>{r['target_bpp']}</td>"
        f"<td>{r['files']}/{r['images']}</td><td>{'yes' if r['bytes_on_disk'] == r['bytes_reported'] else 'NO'}</td>"
        f"<td>{_diff(r['psnr_diff_db'])}</td><td>{html.escape(r.get('bit_identical') or 'not recorded')}</td>"
        f"<td>{html.escape(r.get('run_device') or '')}</td><td>{html.escape(r.get('verify_device') or '')}</td></tr>"
        for r in rows)
    return ("<p>Every ok row decoded again from its files by <code>python -m bench verify</code>, in a new process: "
            "file count, bytes, PSNR difference to the reported value, and decoded images bit-identical to those "
            "of the run (fingerprints recorded at run time).</p><table><thead><tr><th>submission</th><th>mode</th>"
            "<th>target</th><th>files</th><th>bytes match</th><th>|ΔPSNR| dB</th><th>bit-identical</th>"
            f"<th>run device</th><th>verify device</th></tr></thead><tbody>{body}</tbody></table>")
