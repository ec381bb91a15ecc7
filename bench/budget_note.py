"""Why a CLIC row leaves part of its budget unused, so a range limit is never read as a quality
result.

A learned submission whose highest operating point is reached for most images cannot spend
its budget: its row loses to a codec with a wider range by construction, not by merit. A
single-model (``shared``) submission jumps from one model to the next for the whole set, so
it may stop well below the budget because the next model is over it. The note says which.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bench.codec import OperatingPoints
from bench.ratecontrol import Selection

#: A row that spends less than this share of its budget gets a note saying why.
FULL_USE = 0.99


def top_point(points: OperatingPoints) -> Any:
    """The operating point with the most bits: the last discrete point, or the knob's
    high end (low end for a knob whose larger values give fewer bits)."""
    if points.kind == "discrete":
        return points.points[-1]
    return points.snap(points.high if points.rate_increases else points.low)


def budget_note(sel: Selection, points: OperatingPoints, policy: str, pixels: int,
                record_at: Callable[[str, Any], dict | None]) -> str:
    """'' when the row uses at least :data:`FULL_USE` of its budget (or is not an ok CLIC row),
    else why not. ``record_at(image_id, point)`` gives a stored record or None (for the
    next model up of a shared submission)."""
    if sel.status != "ok" or sel.mode != "clic" or not sel.budget_bytes:
        return ""
    used = sum(int(r["bytes"]) for r in sel.chosen.values()) / sel.budget_bytes
    if used >= FULL_USE:
        return ""
    top = points.rate_order(top_point(points))
    at_top = sum(points.rate_order(r["point"]) >= top for r in sel.chosen.values())
    share = f"{used:.1%} of the budget used"
    if at_top:
        return (f"top operating point reached on {at_top} of {len(sel.chosen)} images: the codec's range "
                f"ends below the target ({share})")
    if policy == "shared" and points.kind == "discrete":
        point = next(iter(sel.chosen.values()))["point"]
        up = points.points[points.points.index(point) + 1]
        recs = [record_at(i, up) for i in sel.chosen]
        if all(recs):
            bpp = sum(int(r["bytes"]) for r in recs) * 8 / pixels
            return (f"{share}: one model for every image, and the next one up ({up}) gives {bpp:.4f} bpp, "
                    "over the budget")
    return f"{share}: no image's next evaluated operating point fits in the bytes left"
