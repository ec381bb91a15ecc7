"""Results in other tools' formats, from the stored run files (nothing is coded).

``compressai``: one JSON per run, as CompressAI publishes its RD curves and as its plotting
helper (``python -m compressai.utils.plot``) reads them: ``{"name", "description",
"results": {"bpp", "psnr-rgb", "ms-ssim-rgb", "encoding_time", "decoding_time"}}``, one entry
per point of the run's RD curve (``rd.csv``: the first sweep, lowest rate first; times in
seconds per image, present when the run recorded them for every point).

``csv-long``: one tidy table of every published row's images (submission, dataset, mode,
objective, target, image, point, bytes, bpp, metrics, seconds), as pandas or R read it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from bench.results import PER_IMAGE_COLUMNS, atomic_write_text, column_value, read_csv, write_csv

FORMATS = ("compressai", "csv-long")
LONG_COLUMNS = ["submission", "dataset", "mode", "objective", "target_bpp", "image_id", "point", "bytes", "bpp",
                "psnr", "msssim", "msssim_db", "enc_s", "dec_s", "file_sha256"]


def _number(v: str) -> float | None:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def compressai_results(run_dir: Path) -> dict | None:
    """A run's RD curve as a CompressAI results dict (None for a run without one)."""
    rd = sorted(read_csv(run_dir / "rd.csv"), key=lambda r: float(r["bpp"]))
    if not rd:
        return None
    info = json.loads((run_dir / "run.json").read_text()) if (run_dir / "run.json").exists() else {}
    results = {"bpp": [float(r["bpp"]) for r in rd], "psnr-rgb": [_number(r["psnr"]) for r in rd],
               "ms-ssim-rgb": [_number(r["msssim"]) for r in rd]}
    for key, column in (("encoding_time", "enc_s"), ("decoding_time", "dec_s")):
        times = [_number(r.get(column, "")) for r in rd]
        if all(t is not None for t in times):
            results[key] = times
    estimated = sum(int(r.get("estimated") or 0) > 0 for r in rd)
    description = info.get("description", "")
    if estimated:
        description += f" ({estimated} of {len(rd)} points with the codec's estimated bytes)"
    return {"name": run_dir.name, "description": description,
            "dataset": info.get("dataset", run_dir.parent.parent.name), "results": results}


def export(reports_dir: Path, fmt: str, out: Path, datasets: list[str] | None = None) -> list[Path]:
    """Write ``fmt`` files for every stored run under ``reports_dir`` (or only ``datasets``') into
    ``out``; the paths written."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; known: {', '.join(FORMATS)}")
    folders = [p for p in sorted(Path(reports_dir).iterdir()) if (p / "runs").is_dir()
               and (not datasets or p.name in datasets)]
    out = Path(out)
    written = []
    if fmt == "compressai":
        for folder in folders:
            for run_dir in sorted((folder / "runs").iterdir()):
                res = compressai_results(run_dir)
                if res is not None:
                    path = out / folder.name / f"{run_dir.name}.json"
                    atomic_write_text(path, json.dumps(res, indent=2) + "\n")
                    written.append(path)
        return written
    lines = []
    for folder in folders:
        for path in sorted((folder / "runs").glob("*/per_image.csv")):
            for r in read_csv(path):
                lines.append({**{k: r.get(k, "") for k in PER_IMAGE_COLUMNS}, "dataset": folder.name,
                              "objective": column_value(r, "objective")})
    extra = [c for c in PER_IMAGE_COLUMNS if c not in LONG_COLUMNS and c not in ("file",)]
    path = out / "results_long.csv"
    write_csv(path, lines, LONG_COLUMNS + extra)
    return [path]
