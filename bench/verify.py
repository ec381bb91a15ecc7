"""Recompute a leaderboard from its files alone: decode every row's bitstream folder, compare
sizes and metrics with what the row reports. Writes ``reports/<dataset>/verify.csv``."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from bench.data import open_dataset
from bench.metrics import image_metrics, msssim_db, psnr_from_mse
from bench.paths import REPO_ROOT
from bench.results import read_csv, write_csv
from bench.submission import get_submission


def verify_dataset(dataset_dir: Path, dataset: str) -> list[dict]:
    """One line per ok row: bytes on disk vs reported, PSNR / MS-SSIM recomputed vs reported."""
    originals = {im.id: im for im in open_dataset(dataset).images()}
    out = []
    for row in read_csv(Path(dataset_dir) / "leaderboard.csv"):
        if row["status"] != "ok":
            continue
        folder = Path(row["bitstreams"])
        folder = folder if folder.is_absolute() else REPO_ROOT / folder
        files = sorted(folder.glob("*.bin"))
        codec = get_submission(row["submission"]).make_codec()
        sse = values = 0.0
        ms_weighted = pixels = 0.0
        for f in files:
            orig = originals[f.stem].pixels
            m = image_metrics(orig, np.asarray(codec.decode(f.read_bytes())))
            sse += m["sse"]
            values += orig.size
            if not math.isnan(m["msssim"]):
                ms_weighted += m["msssim"] * orig.shape[0] * orig.shape[1]
                pixels += orig.shape[0] * orig.shape[1]
        psnr = psnr_from_mse(sse / values)
        ms = ms_weighted / pixels if pixels else math.nan
        out.append({"submission": row["submission"], "target_bpp": row["target_bpp"], "mode": row["mode"],
                    "files": len(files), "images": int(row["images"]),
                    "bytes_on_disk": sum(f.stat().st_size for f in files), "bytes_reported": int(row["bytes"]),
                    "psnr_recomputed": psnr, "psnr_reported": float(row["psnr"]),
                    "psnr_diff_db": abs(psnr - float(row["psnr"])),
                    "msssim_db_recomputed": msssim_db(ms), "msssim_db_reported": float(row["msssim_db"])})
    write_csv(Path(dataset_dir) / "verify.csv", out)
    return out
