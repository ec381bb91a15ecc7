"""A dataset's report: ``leaderboard.csv``, ``per_image.csv``, RD plots and ``leaderboard.html``.

``build_report(reports/<dataset>)`` reads every ``runs/<submission>/`` folder (skipping
incomplete ones, which the page names), and rewrites the outputs next to ``runs/``::

    from bench.report import build_report
    paths = build_report(Path("reports/kodak"))
    # {"leaderboard_csv", "per_image_csv", "rd_msssim", "rd_psnr", "rd_msssim_full", "rd_psnr_full", "html"}

``rd_*.png`` are fitted to the targets, ``rd_*_full.png`` show every evaluated point. The page
also has a BD-rate table against ``bd_anchor`` (default: the best classical codec). A
``model_count.csv`` beside ``runs/`` (``bench model-count``), ``ablation_*`` (``bench ablation``),
``gating_*`` (``bench gating``) and ``verify.csv`` (``bench verify``) become sections with tables
(:mod:`bench.report.studies`). Nothing here codes an image: the studies (``bench/studies/``) and
runs write those files, and the caller (the CLI) rebuilds the report after them. Callers add
their own with ``extra_sections=[(title, html_fragment), ...]``; fragments are trusted HTML and
are placed at the end of the page in order.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

from bench.atomic import atomic_write_text
from bench.paths import REFERENCE_DIR
from bench.registry import Registry

from .leaderboard import (
    Run,
    Skipped,
    bd_summary,
    default_anchor,
    leaderboard_table,
    load_runs,
    per_image_table,
    write_csv_atomic,
)

log = logging.getLogger(__name__)
_DEFAULT = object()
METRICS = (("rd_msssim", "msssim_db"), ("rd_psnr", "psnr"))


def _plots(runs: list[Run], dataset_dir: Path, references: list, xlim: tuple[float, float]) -> dict[str, Path]:
    """Each metric twice: fitted to the targets (``xlim``, shown) and over the full range (a click away)."""
    from .plots import plot_rd

    targets = sorted({float(t) for r in runs for t in r.rows["target_bpp"].dropna()})
    out = {}
    for key, metric in METRICS:
        out[key] = plot_rd(runs, metric, dataset_dir / f"{key}.png", dataset_dir.name, references, targets,
                           xlim=xlim)
        out[f"{key}_full"] = plot_rd(runs, metric, dataset_dir / f"{key}_full.png", dataset_dir.name, references,
                                     targets)
    return out


def build_report(dataset_dir: Path, extra_sections: Iterable[tuple[str, str]] = (), *,
                 reference_dir: Path | None = _DEFAULT,  # type: ignore[assignment]
                 bd_anchor: str | None = None) -> dict[str, Path]:
    """Rebuild the report of one dataset folder; returns the written files by name.

    ``reference_dir`` defaults to :data:`bench.paths.REFERENCE_DIR` (published curves, drawn for
    datasets that have them); ``None`` leaves them out. ``bd_anchor``: the submission the BD-rates
    are measured against (default: the best classical codec at the highest target).
    """
    from .html import render_page
    from .plots import fitted_xlim, load_references
    from .studies import study_sections

    dataset_dir = Path(dataset_dir)
    runs, skipped = load_runs(dataset_dir)
    board, per_image = leaderboard_table(runs), per_image_table(runs)
    out = {"leaderboard_csv": write_csv_atomic(board, dataset_dir / "leaderboard.csv"),
           "per_image_csv": write_csv_atomic(per_image, dataset_dir / "per_image.csv")}
    references, notes = load_references(REFERENCE_DIR if reference_dir is _DEFAULT else reference_dir, dataset_dir.name)
    for n in notes:
        log.warning("report %s: %s", dataset_dir.name, n)
    xlim = fitted_xlim(runs, sorted({float(t) for r in runs for t in r.rows["target_bpp"].dropna()}))
    out |= _plots(runs, dataset_dir, references, xlim)
    studies, named = study_sections(dataset_dir, {r.name for r in runs}, {s.name: s.reason for s in skipped}, board)
    if bd_anchor:
        ran: Registry[Run] = Registry("run (BD-rate anchor)")
        for r in runs:
            ran.add(r.name, r)
        ran.get(bd_anchor)                    # an unknown name: RegistryError with "did you mean"
    anchor = bd_anchor or default_anchor(runs)
    page = render_page(dataset_dir.name, runs, [s for s in skipped if s.name not in named], board, out,
                       extra_sections=studies + list(extra_sections), notes=notes, per_image=per_image,
                       bd=(anchor, xlim[1], bd_summary(runs, anchor, xlim[1])) if anchor else None)
    out["html"] = atomic_write_text(dataset_dir / "leaderboard.html", page)
    return out


__all__ = ["build_report", "load_runs", "Run", "Skipped"]
