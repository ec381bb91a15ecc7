"""Rate–distortion curve math shared by the regression gate, the studies and the report:
the usable (monotone) part of a curve, the overlap of two curves' quality ranges, BD-rate.

Pure functions over ``(bpp, quality)`` points; stored values may be strings, None or ''
(read back from CSV/JSON), so every reader goes through :func:`as_float`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable
from typing import Any


def as_float(v: Any) -> float:
    """A stored number as float; None or '' (a non-finite value or an absent one) → NaN."""
    if v is None or v == "":
        return math.nan
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def usable_curve(rd: Iterable[dict], metric: str) -> list[tuple[float, float]]:
    """(bpp, quality) with finite values, cheapest first, keeping only points that buy quality:
    a point with more bits and no more quality than a cheaper one is dropped (pchip needs a
    strictly monotone curve, and such a point is never an operating choice)."""
    pts = sorted((as_float(r.get("bpp")), as_float(r.get(metric))) for r in rd)
    out: list[tuple[float, float]] = []
    for b, q in pts:
        if not (math.isfinite(b) and math.isfinite(q) and b > 0):
            continue
        if out and q <= out[-1][1]:
            continue
        if out and b == out[-1][0]:
            out.pop()
        out.append((b, q))
    return out


def overlap_share(a: list[tuple[float, float]], b: list[tuple[float, float]]) -> float:
    """Overlap of the two curves' quality ranges as a share of their joint range."""
    qa, qb = [q for _, q in a], [q for _, q in b]
    lo, hi = max(min(qa), min(qb)), min(max(qa), max(qb))
    span = max(max(qa), max(qb)) - min(min(qa), min(qb))
    return max(hi - lo, 0.0) / span if span > 0 else 0.0


def bd_rate(base: list[tuple[float, float]], cur: list[tuple[float, float]]) -> float:
    """BD-rate in percent of ``cur`` against ``base`` (positive: more bits for the same quality);
    log-rate, pchip, over the overlapping quality range (``bjontegaard``)."""
    import bjontegaard

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # overlap is judged (and reported) by the caller
        return float(bjontegaard.bd_rate([b for b, _ in base], [q for _, q in base], [b for b, _ in cur],
                                         [q for _, q in cur], method="pchip", require_matching_points=False,
                                         min_overlap=0))
