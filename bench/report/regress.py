"""The regression gate's output (:mod:`bench.regress`): the terminal table and the report section.

Both render stored data only: the verdict as ``verdict.json`` holds it and, for the plots, each
submission's baseline and current snapshots in the baseline-file shape
(``reports/baselines/<profile>/<submission>.json``). The metrics a target is judged on are read
from the verdict's thresholds, so a metric the gate starts to judge shows up without a change here.
"""

from __future__ import annotations

import base64
import html
import io
import math
from pathlib import Path
from typing import Any

import numpy as np

from bench.rd import as_float

#: the curves drawn per submission: (axis label, metric in the snapshot's ``rd`` and ``targets``)
PLOTTED = (("MS-SSIM", "msssim_db"), ("PSNR", "psnr"))
RESULT_COLOURS = {"FAIL": "#b00020", "warn": "#a66300", "note": "#245", "ok": "#1a7f37", "n/a": "#666"}


def limit_text(key: str, v: float) -> str:
    """A threshold as the gate's help writes it: ``+1%`` for BD-rate, ``-0.001`` for a drop."""
    return f"+{v:g}%" if key == "bd_rate" else f"-{v:g}"


def create_command(name: str | None = None) -> str:
    """The command that writes a missing baseline."""
    one = f" --submission {name}" if name else ""
    return f"make regress UPDATE=1   (or: python -m bench regress --update-baseline{one})"


def _cell(v: Any) -> str:
    if v is None or v == "":
        return "-"
    if isinstance(v, float):
        if not math.isfinite(v):
            return "inf" if v > 0 else ("-inf" if v < 0 else "-")
        return f"{v:+.4g}" if abs(v) < 1e-3 and v else f"{v:.5g}"
    return str(v)


def _thresholds_text(verdict: dict) -> str:
    return ", ".join(f"{k}:{limit_text(k, v)}" for k, v in verdict["thresholds"].items())


def _table_rows(verdict: dict, verbose: bool) -> list[list[str]]:
    """One row per shown check: the failing, warning and noted ones, BD-rates and the target metrics."""
    metrics = tuple(k for k in verdict["thresholds"] if k != "bd_rate")
    rows = []
    for sv in verdict["submissions"]:
        for c in sv["checks"]:
            bd = c["check"].startswith("BD-rate")
            if not (verbose or c["result"] != "ok" or bd or c["check"].endswith(metrics)):
                continue
            delta = f"{c['delta']:+.3f}%" if bd and isinstance(c["delta"], float) and "overlap" not in c["check"] \
                else _cell(c["delta"])
            rows.append([sv["name"], c["check"], _cell(c["baseline"]), _cell(c["current"]), delta, c["limit"],
                         c["result"]])
    return rows


def _submission_lines(sv: dict) -> list[str]:
    t = f"{sv['seconds']:.1f} s"
    if sv["status"] == "updated":
        out = [f"UPDATED {sv['name']} ({t}): {sv['baseline']}"]
    elif sv["status"] == "pass":
        extra = f"; {len(sv['notes'])} note(s), {len(sv['warnings'])} warning(s)" if sv["notes"] or sv["warnings"] \
            else ""
        out = [f"PASS    {sv['name']} ({t}){extra}"]
    else:
        out = [f"FAIL    {sv['name']} ({t}, {sv['status']}):", *(f"          - {f}" for f in sv["failures"])]
    return out + [f"          warning: {w}" for w in sv["warnings"]] + [f"          note: {n}" for n in sv["notes"]]


def _closing_lines(verdict: dict) -> list[str]:
    out = [f"warning: baseline {s}.json has no submission any more (left in place; delete it if intended)"
           for s in verdict["stale_baselines"]]
    if verdict["update"]:
        done = "baselines written" if verdict["passed"] else "FAILED to write some baselines"
        out += ["", f"{done} in {verdict['baselines_dir']} ({verdict['seconds']:.0f} s). Review and commit them."]
    elif verdict["passed"]:
        passed = len(verdict["submissions"])
        out += ["", f"PASSED: {passed} submission(s) within thresholds ({verdict['seconds']:.0f} s)"]
    else:
        out += ["", f"FAILED: {', '.join(verdict['failed'])} ({verdict['seconds']:.0f} s)"]
        if any(s["status"] == "missing" for s in verdict["submissions"]):
            out.append(f"  missing baselines are created with: {create_command()}")
    if verdict["report"]:
        out += [f"report: {verdict['report']}", f"verdict: {Path(verdict['work_dir']) / 'verdict.json'}"]
    return out


def format_table(verdict: dict, verbose: bool = False) -> str:
    """The terminal table of a verdict (``verdict.json``'s content): every non-ok check (all with
    ``verbose``), then one line per submission and the verdict."""
    cols = ["submission", "check", "baseline", "current", "delta", "limit", "result"]
    rows = _table_rows(verdict, verbose)
    widths = [min(max(len(h), *(len(r[i]) for r in rows)) if rows else len(h), 40) for i, h in enumerate(cols)]

    def line(r: list[str]) -> str:
        return "  ".join(str(v)[:w].ljust(w) for v, w in zip(r, widths)).rstrip()

    title = "baseline update (comparison with the previous baselines, for the record)" if verdict["update"] \
        else "regression gate"
    out = [f"{title}: profile {verdict['profile']}, thresholds {_thresholds_text(verdict)}", "",
           line(cols), line(["-" * w for w in widths]), *map(line, rows), ""]
    for sv in verdict["submissions"]:
        out += _submission_lines(sv)
    return "\n".join(out + _closing_lines(verdict)) + "\n"


def _series(name: str, snap: dict, metric: str, style: dict, star: float) -> list:
    from .plots import Series

    ok = [r for r in snap["targets"] if r["status"] == "ok"]
    return [Series(np.array([as_float(r["bpp"]) for r in snap["rd"]]),
                   np.array([as_float(r[metric]) for r in snap["rd"]]), f"{name} RD", style),
            Series(np.array([as_float(r["bpp"]) for r in ok]), np.array([as_float(r[metric]) for r in ok]),
                   f"{name} at targets", {"ls": "none", "marker": "*", "ms": star, "mec": "black", "mew": 0.6,
                                          "color": style["color"]}, clip=False)]


def plot(name: str, baseline: dict | None, current: dict | None) -> str:
    """Baseline and current RD curves (MS-SSIM dB and PSNR) on one figure, as a data URI."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from .plots import draw_rd

    fig = Figure(figsize=(9.0, 3.6), dpi=100)
    FigureCanvasAgg(fig)
    targets = sorted({float(r["target_bpp"]) for snap in (baseline, current) if snap for r in snap["targets"]})
    styles = (("baseline", baseline, {"color": "0.55", "ls": "-", "lw": 3.5, "alpha": 0.6, "marker": "s", "ms": 6}, 13),
              ("current", current, {"color": "#d62728", "ls": "-", "lw": 1.3, "marker": "o", "ms": 3.5}, 9))
    for i, (label, metric) in enumerate(PLOTTED):
        series = [s for who, snap, style, star in styles if snap for s in _series(who, snap, metric, style, star)]
        ax = fig.add_subplot(1, 2, i + 1)
        draw_rd(ax, series, targets, max(0.5, 1.5 * max(targets, default=0.0)), f"{label} (dB)")
        if i == 0 and ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="lower right")
    fig.suptitle(name, fontsize=10, x=0.02, ha="left")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", facecolor="white")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _checks_table(checks: list[dict]) -> str:
    e = html.escape
    rows = "".join(
        f"<tr><td>{e(c['check'])}</td><td>{e(_cell(c['baseline']))}</td><td>{e(_cell(c['current']))}</td>"
        f"<td>{e(_cell(c['delta']))}</td><td>{e(c['limit'])}</td>"
        f"<td style=\"color:{RESULT_COLOURS.get(c['result'], '#000')}\"><b>{e(c['result'])}</b></td>"
        f"<td>{e(c['detail'])}</td></tr>"
        for c in checks)
    return ("<table><thead><tr><th>check</th><th>baseline</th><th>current</th><th>delta</th><th>limit</th>"
            f"<th>result</th><th>detail</th></tr></thead><tbody>{rows}</tbody></table>")


def html_section(verdict: dict, snapshots: dict[str, tuple[dict | None, dict | None]]) -> str:
    """The report section: the verdict, every check, and one baseline-vs-current plot per submission
    (``snapshots``: submission → (baseline, current), either ``None`` where there is none)."""
    e = html.escape
    head = "PASSED" if verdict["passed"] else f"FAILED: {', '.join(verdict['failed'])}"
    if verdict["update"]:
        head = "baselines updated" if verdict["passed"] else "baseline update failed"
    parts = [(f"<p><b>{e(head)}</b> &middot; profile <code>{e(verdict['profile'])}</code> &middot; thresholds "
              f"<code>{e(_thresholds_text(verdict))}</code> &middot; baselines "
              f"<code>{e(verdict['baselines_dir'])}</code> &middot; timings are reported, never gated</p>")]
    for sv in verdict["submissions"]:
        parts.append(f"<h3>{e(sv['name'])} &mdash; {e(sv['status'])}</h3>")
        baseline, current = snapshots.get(sv["name"], (None, None))
        if baseline or current:
            parts.append(f'<img alt="RD curves of {e(sv["name"])}: baseline and current" '
                         f'src="{plot(sv["name"], baseline, current)}">')
        parts.append(_checks_table(sv["checks"]))
    if verdict["stale_baselines"]:
        parts.append(f"<p>Baselines without a submission: {e(', '.join(verdict['stale_baselines']))}</p>")
    return "\n".join(parts)
