"""A dataset's report: ``leaderboard.csv``, ``per_image.csv``, RD plots and ``leaderboard.html``.

``build_report(reports/<dataset>)`` reads every ``runs/<submission>/`` folder (skipping
incomplete ones, which the page names), and rewrites the outputs next to ``runs/``::

    from bench.report import build_report
    paths = build_report(Path("reports/kodak"))   # {"leaderboard_csv", "per_image_csv", "html", "rd_msssim", "rd_psnr"}

A ``model_count.csv`` beside ``runs/`` (``bench model-count``), ``ablation_*.md`` (``bench
ablation``), ``gating_*.md`` (``bench gating``) and ``verify.csv`` (``bench verify``) become
sections. Callers add their own with ``extra_sections=[(title, html_fragment), ...]``;
fragments are trusted HTML and are placed at the end of the page in order.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Iterable

from bench.paths import REFERENCE_DIR

from .leaderboard import Run, Skipped, leaderboard_table, load_runs, per_image_table, write_csv_atomic

log = logging.getLogger(__name__)
_DEFAULT = object()


def build_report(dataset_dir: Path, extra_sections: Iterable[tuple[str, str]] = (), *,
                 reference_dir: Path | None = _DEFAULT) -> dict[str, Path]:  # type: ignore[assignment]
    """Rebuild the report of one dataset folder; returns the written files by name.

    ``reference_dir`` defaults to :data:`bench.paths.REFERENCE_DIR` (published curves, drawn for
    datasets that have them); ``None`` leaves them out.
    """
    from .html import preformatted_html, render_page
    from .model_count import CSV_NAME, model_count_html
    from .plots import load_references, plot_rd

    dataset_dir = Path(dataset_dir)
    dataset = dataset_dir.name
    if reference_dir is _DEFAULT:
        reference_dir = REFERENCE_DIR
    runs, skipped = load_runs(dataset_dir)
    board = leaderboard_table(runs)
    out = {
        "leaderboard_csv": write_csv_atomic(board, dataset_dir / "leaderboard.csv"),
        "per_image_csv": write_csv_atomic(per_image_table(runs), dataset_dir / "per_image.csv"),
    }
    references, notes = load_references(reference_dir, dataset)
    for n in notes:
        log.warning("report %s: %s", dataset, n)
    out["rd_msssim"] = plot_rd(runs, "msssim_db", dataset_dir / "rd_msssim.png", dataset, references)
    out["rd_psnr"] = plot_rd(runs, "psnr", dataset_dir / "rd_psnr.png", dataset, references)
    sections = list(extra_sections)
    if (dataset_dir / CSV_NAME).exists():
        sections.insert(0, ("Models per image", model_count_html(dataset_dir / CSV_NAME)))
    for prefix, title in (("ablation", "Ablation"), ("gating", "Channel gating")):
        for md in sorted(dataset_dir.glob(f"{prefix}_*_vs_*.md")):
            sections.append((f"{title}: {md.stem.removeprefix(prefix + '_').replace('_vs_', ' vs ')}",
                             preformatted_html(md)))
    if (dataset_dir / "verify.csv").exists():
        from bench.verify import verify_html

        sections.append(("Decoded again from the files", verify_html(dataset_dir / "verify.csv")))
    page = render_page(dataset, runs, skipped, board, out, extra_sections=sections, notes=notes)
    html_path = dataset_dir / "leaderboard.html"
    tmp = html_path.with_name(f".{html_path.name}.{os.getpid()}.tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(html_path)
    out["html"] = html_path
    return out


__all__ = ["build_report", "load_runs", "Run", "Skipped"]
