"""What each stored run cost: one table per dataset from every ``reports/<dataset>/runs/*/run.json``
(wall time, coded jobs, estimated points, settings, machine share), so a reader can see what a
CLIC-size leaderboard takes before starting one. Renders stored files only; runs nothing.

    .venv/bin/python benchmarks/run_costs.py        # → reports/load/run_costs.{md,csv}
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.results import read_csv, write_csv  # noqa: E402

COLUMNS = ["dataset", "submission", "images", "targets", "wall_s", "jobs_coded", "points_estimated",
           "s_per_job", "jobs", "probe", "device", "commit", "date"]


def rows(reports: Path) -> list[dict]:
    """One row per run folder with a cost record (runs before the record existed are skipped)."""
    out = []
    for path in sorted(reports.glob("*/runs/*/run.json")):
        info = json.loads(path.read_text())
        cost, settings = info.get("cost"), info.get("settings", {})
        if not cost:
            continue
        board = path.parent / "rows.csv"
        images = (max((int(r["images"]) for r in read_csv(board) if r.get("images")), default=None)
                  if board.exists() else None)
        coded = cost.get("jobs_coded") or 0
        out.append({"dataset": info.get("dataset"), "submission": info.get("submission"), "images": images,
                    "targets": len(settings.get("targets", [])), "wall_s": cost.get("wall_s"), "jobs_coded": coded,
                    "points_estimated": cost.get("points_estimated"),
                    "s_per_job": round(cost["wall_s"] / coded, 2) if coded and cost.get("wall_s") else None,
                    "jobs": settings.get("jobs"), "probe": settings.get("probe"), "device": info.get("device"),
                    "commit": info.get("commit"), "date": info.get("date")})
    return out


def to_markdown(table: list[dict]) -> str:
    out = ["# What each stored run cost\n",
           "From each run's `run.json` (`cost`): wall time of the whole run, jobs coded (encode → file → decode → "
           "metrics), points estimated (probe mode). A run that found its jobs in the cache costs less than one "
           "from an empty cache; the commit and date say which run this is. Machines: this project's 2-core CPU "
           "box, often shared with a training run (the wall times are then upper bounds).\n"]
    for dataset in sorted({r["dataset"] for r in table}):
        out += [f"## {dataset}\n", "| submission | images | jobs coded | estimated | wall | s per job | JOBS | probe "
                "| device | commit | date |", "|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in sorted((r for r in table if r["dataset"] == dataset), key=lambda r: r["submission"]):
            wall = f"{r['wall_s'] / 60:.1f} min" if r["wall_s"] else "—"
            out.append(f"| {r['submission']} | {r['images']} | {r['jobs_coded']} | {r['points_estimated']} | {wall} | "
                       f"{r['s_per_job'] if r['s_per_job'] is not None else '—'} | {r['jobs']} | {r['probe']} | "
                       f"{r['device']} | {r['commit']} | {r['date'][:16]} |")
        out.append("")
    return "\n".join(out)


def main() -> int:
    reports = ROOT / "reports"
    table = rows(reports)
    (reports / "load").mkdir(parents=True, exist_ok=True)
    write_csv(reports / "load" / "run_costs.csv", table, COLUMNS)
    (reports / "load" / "run_costs.md").write_text(to_markdown(table))
    print(to_markdown(table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
