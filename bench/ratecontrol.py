"""Rate control: which operating point each image gets so that a set meets a bits-per-pixel target.

CLIC judges a whole set against one budget, ``floor(target * total_pixels / 8)`` bytes, so bytes
can move between images: :func:`allocate` solves that as a multiple-choice knapsack. The
:func:`rate_control` driver evaluates a codec's first sweep, allocates, and asks for more points
only near the chosen ones (continuous knobs), so a set costs a few encodes per image rather than
a dense grid. It also covers the stricter "every image at or below the target" mode and
single-model codecs that must use one point for every image (policy ``"shared"``).
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from bench.codec import OperatingPoints

MODES = ("clic", "per-image")
POLICIES = ("per-image", "shared")    # a manifest's rate_control.policy: a point per image, or one for all
OBJECTIVES = ("msssim", "psnr")

# MS-SSIM is undefined (NaN) for images smaller than its coarsest scale; such images do not count
# in the set's pixel-weighted MS-SSIM, so bytes spent on them buy no score. Their value is
# -MSE/255² per pixel times this weight: still higher for better quality (they take leftover
# bytes), but far below any real MS-SSIM gain, so scored images are served first.
NAN_MSSSIM_WEIGHT = 1e-6
#: Rounds of "select on estimates, code the chosen points, select again" before every point
#: evaluated so far is coded for real (a codec whose estimates keep misleading the search).
SETTLE_ROUNDS = 8
#: Of those rounds, how many search again (refinement, bisection) on the corrected estimates.
REFINE_AFTER_CODING = 1
#: Real bytes this far (relative) from the estimates make the search run again on corrected ones.
ESTIMATE_TOLERANCE = 0.05

Evaluate = Callable[[list[tuple[str, Any]]], list[dict]]


@dataclass(frozen=True)
class Candidate:
    """One evaluated operating point of one image, as the knapsack sees it."""

    point: Any
    bytes: int
    value: float
    record: Any = field(default=None, compare=False, repr=False)  # the record it came from; allocate ignores it


@dataclass
class Selection:
    """The outcome for one target: the chosen record per image, or why there is none."""

    target_bpp: float
    mode: str            # "clic" or "per-image"
    objective: str       # what the choice maximised: "msssim" or "psnr" (OBJECTIVES)
    status: str          # "ok" or "infeasible"
    budget_bytes: int    # clic: floor(target*total_pixels/8); per-image: sum of per-image floors
    chosen: dict[str, dict]  # image_id -> the chosen record (empty when infeasible)
    lowest_bpp: float    # lowest bpp the set can reach with the evaluated points
    note: str            # why it is infeasible, or ""


def objective_value(record: Mapping[str, Any], objective: str) -> float:
    """What the allocation maximises, summed over images.

    ``"msssim"``: msssim × pixels, so the sum is CLIC's pixel-weighted mean up to a constant
    (NaN MS-SSIM: see :data:`NAN_MSSSIM_WEIGHT`). ``"psnr"``: -SSE, because CLIC's PSNR comes
    from one MSE pooled over the whole set, so maximising it means minimising the total SSE.
    """
    if objective == "psnr":
        return -float(record["sse"])
    if objective == "msssim":
        pixels = int(record["height"]) * int(record["width"])
        msssim = float(record["msssim"])
        if math.isnan(msssim):
            return -float(record["sse"]) / (3 * 255**2) * NAN_MSSSIM_WEIGHT
        return msssim * pixels
    raise ValueError(f"unknown objective {objective!r}; allowed: {OBJECTIVES}")


def _hull(cands: list[Candidate]) -> list[Candidate]:
    """Upper convex hull in (bytes, value), cheapest first: the points a Lagrangian can pick."""
    hull: list[Candidate] = []
    for c in sorted(cands, key=lambda c: (c.bytes, -c.value)):
        if hull and c.value <= hull[-1].value:
            continue  # no better than a cheaper point
        while len(hull) >= 2:
            a, b = hull[-2], hull[-1]
            if (b.bytes - a.bytes) * (c.value - b.value) < (b.value - a.value) * (c.bytes - b.bytes):
                break
            hull.pop()  # b lies on or under the segment a-c
        hull.append(c)
    return hull


def _lagrangian(tables: Mapping[str, list[Candidate]], budget: int) -> tuple[float, dict[str, Candidate]]:
    """The smallest multiplier λ whose hull choice (each image's hull point maximising
    value − λ·bytes) fits ``budget``, and that choice (the caller checked the cheapest fit)."""
    hulls = {k: _hull(c) for k, c in tables.items()}
    # slopes[k] holds the hull's negated segment slopes (ascending), so bisect_left(slopes, -lam)
    # counts the segments worth taking at multiplier lam.
    slopes = {k: [-(h[i + 1].value - h[i].value) / (h[i + 1].bytes - h[i].bytes) for i in range(len(h) - 1)]
              for k, h in hulls.items()}

    def pick(lam: float) -> dict[str, Candidate]:
        return {k: h[bisect_left(slopes[k], -lam)] for k, h in hulls.items()}

    # Total bytes only fall as lam grows and change only at slopes: bisect over them for the
    # smallest multiplier that fits (the largest slope takes no segment, which fits).
    lams = sorted({0.0} | {-s for ss in slopes.values() for s in ss})
    lo, hi = 0, len(lams) - 1
    while lo < hi:
        mid = (lo + hi) // 2
        if sum(c.bytes for c in pick(lams[mid]).values()) <= budget:
            hi = mid
        else:
            lo = mid + 1
    return lams[lo], pick(lams[lo])


def allocate(tables: Mapping[str, list[Candidate]], budget: int) -> dict[str, Candidate] | None:
    """One candidate per image, maximising the summed value with total bytes <= ``budget``.

    Lagrangian relaxation over each image's convex hull gives a near-optimal start (exact at
    hull breakpoints); a greedy pass then spends what it leaves, using any candidate. ``None``
    when even the cheapest candidates do not fit.
    """
    for key, cands in tables.items():
        if not cands:
            raise ValueError(f"image {key!r} has no candidates")
    if sum(min(c.bytes for c in cands) for cands in tables.values()) > budget:
        return None
    _, choice = _lagrangian(tables, budget)
    left = budget - sum(c.bytes for c in choice.values())
    while True:
        best: tuple[float, float, str, Candidate] | None = None
        for k, cands in tables.items():
            cur = choice[k]
            for c in cands:
                dv, db = c.value - cur.value, c.bytes - cur.bytes
                if dv > 0 and db <= left:
                    rank = (math.inf if db <= 0 else dv / db, dv)
                    if best is None or rank > best[:2]:
                        best = (*rank, k, c)
        if best is None:
            return choice
        k, c = best[2], best[3]
        left -= c.bytes - choice[k].bytes
        choice[k] = c


class _Evaluations:
    """Every record so far, per image and point; asks for pairs it lacks only. New pairs go to
    ``estimate`` when there is one (cheap), else to ``evaluate``; :meth:`confirm` replaces
    estimated records with real ones.

    Estimated bytes are corrected by what the real files of the same image showed: each
    estimate is scaled by the real/estimated ratio of the confirmed point nearest to it in
    size, so a codec whose estimates run 30 % low misleads the search once, not every round.
    The raw estimate stays in ``estimated_bytes``."""

    def __init__(self, evaluate: Evaluate, images: Mapping[str, int], estimate: Evaluate | None = None) -> None:
        self.evaluate, self.estimate = evaluate, estimate
        self.pixels = dict(images)
        self.records: dict[str, dict[Any, dict]] = {i: {} for i in images}
        self.ratios: dict[str, list[tuple[int, float]]] = {i: [] for i in images}   # (raw estimate, real/raw)

    def request(self, pairs: list[tuple[str, Any]]) -> None:
        self._fill(list(dict.fromkeys(p for p in pairs if p[1] not in self.records[p[0]])),
                   self.estimate or self.evaluate)

    def confirm(self, pairs: list[tuple[str, Any]]) -> float:
        """Evaluate for real the pairs whose records are estimates; the largest relative
        difference between a real file and its raw estimate."""
        todo = list(dict.fromkeys(p for p in pairs if self.records[p[0]][p[1]].get("estimated")))
        raw = {p: self.records[p[0]][p[1]]["estimated_bytes"] for p in todo}
        self._fill(todo, self.evaluate)
        fake = [p for p in todo if self.records[p[0]][p[1]].get("estimated")]
        if fake:
            raise RuntimeError(f"evaluate returned an estimated record for {len(fake)} pair(s), e.g. {fake[0]}")
        for (img, point), est in raw.items():
            self.ratios[img].append((est, int(self.records[img][point]["bytes"]) / max(est, 1)))
        for img in {img for img, _ in todo}:
            for rec in self.records[img].values():
                if rec.get("estimated"):
                    rec["bytes"] = self._corrected(img, rec["estimated_bytes"])
        return max((abs(int(self.records[i][p]["bytes"]) / max(e, 1) - 1) for (i, p), e in raw.items()), default=0.0)

    def _corrected(self, img: str, est: int) -> int:
        if not self.ratios[img]:
            return est
        _, ratio = min(self.ratios[img], key=lambda r: abs(math.log(max(r[0], 1) / max(est, 1))))
        return max(1, round(est * ratio))

    def _fill(self, new: list[tuple[str, Any]], source: Evaluate) -> None:
        if not new:
            return
        wanted = set(new)
        for rec in source(new):
            key = (rec["image_id"], rec["point"])
            if key in wanted:
                if rec.get("estimated"):
                    rec = dict(rec, estimated_bytes=int(rec["bytes"]), bytes=self._corrected(key[0], int(rec["bytes"])))
                self.records[key[0]][key[1]] = rec
        missing = [p for p in new if p[1] not in self.records[p[0]]]
        if missing:
            raise RuntimeError(f"evaluate returned no record for {len(missing)} requested pair(s), e.g. {missing[0]}")

    def candidates(self, image: str, objective: str) -> list[Candidate]:
        return [Candidate(p, int(r["bytes"]), objective_value(r, objective), r) for p, r in self.records[image].items()]

    def common_points(self) -> list[Any]:
        """Points evaluated for every image (the only ones a shared policy can use)."""
        first, *rest = self.records.values()
        return [p for p in first if all(p in r for r in rest)]


def _floor_bytes(target: float, pixels: int) -> int:
    """floor(target * pixels / 8), with the target read as the decimal it was written as
    (0.15, not the binary float just below it), so an exact budget is not lost to rounding."""
    return math.floor(Fraction(str(target)) * pixels / 8)


def _bisect_point(points: OperatingPoints, evaluated: list[Any], fits: Callable[[Any], bool]) -> Any | None:
    """The next point to try: halfway from the highest-rate point that fits to the evaluated
    point just above it in rate (which does not fit); None when nothing is left to bisect."""
    ordered = sorted(evaluated, key=points.rate_order)
    ok = [i for i, p in enumerate(ordered) if fits(p)]
    if not ok or ok[-1] == len(ordered) - 1:
        return None
    return points.midpoint(ordered[ok[-1]], ordered[ok[-1] + 1])


def _bisect_rounds(points: OperatingPoints, refine_rounds: int) -> float:
    """Bisection rounds: ``refine_rounds`` for float knobs; integer knobs go on to adjacency
    (a bounded number of rounds, as the interval halves each time)."""
    if points.kind != "continuous":
        return 0
    return math.inf if points.integer else refine_rounds


def _toward_optimum(cands: list[Candidate], chosen: Candidate, lam: float, points: OperatingPoints) -> list[Any]:
    """The evaluated knob values next to ``chosen`` (in rate order) to bisect towards: the one
    on the side where the image's best point at multiplier ``lam`` lies, read from the slope of
    its RD curve at ``chosen`` (the parabola through it and its hull neighbours: above λ, more
    bytes still buy more than λ each, so the best point has a higher rate), or both where that
    slope cannot be read (a point off the hull or at its ends). One new point per image and
    round instead of two, for the same precision on the side that matters."""
    knobs = sorted((c.point for c in cands), key=points.rate_order)
    k = knobs.index(chosen.point)
    below, above = knobs[k - 1:k], knobs[k + 1:k + 2]
    hull = _hull(cands)
    i = next((j for j, h in enumerate(hull) if h.point == chosen.point), None)
    if i is None or i == 0 or i == len(hull) - 1:
        return below + above
    a, c, b = hull[i - 1], hull[i], hull[i + 1]
    s1, s2 = (c.value - a.value) / (c.bytes - a.bytes), (b.value - c.value) / (b.bytes - c.bytes)
    slope = (s1 * (b.bytes - c.bytes) + s2 * (c.bytes - a.bytes)) / (b.bytes - a.bytes)
    return above if slope > lam else below


def _clic_per_image(ev: _Evaluations, points: OperatingPoints, budget: int, objective: str,
                    refine_rounds: int) -> dict[str, Candidate] | None:
    """Knapsack allocation, refined by evaluating, for each image, the midpoint between its
    chosen point and the neighbour on the side its best point lies (:func:`_toward_optimum`)."""
    r, limit = 0, _bisect_rounds(points, refine_rounds)
    while True:
        tables = {i: ev.candidates(i, objective) for i in ev.records}
        alloc = allocate(tables, budget)
        if alloc is None or r >= limit:
            return alloc
        lam, _ = _lagrangian(tables, budget)
        new = []
        for img, c in alloc.items():
            for nb in _toward_optimum(tables[img], c, lam, points):
                m = points.midpoint(c.point, nb)
                if m is not None:  # strictly between adjacent evaluated points, so new
                    new.append((img, m))
        if not new:
            return alloc
        ev.request(new)
        r += 1


def _per_image_mode(ev: _Evaluations, points: OperatingPoints, caps: Mapping[str, int], objective: str,
                    refine_rounds: int) -> dict[str, Candidate | None]:
    """Each image on its own: the best point within its own cap (None where none fits)."""
    r, limit = 0, _bisect_rounds(points, refine_rounds)
    while r < limit:
        new = []
        for img, recs in ev.records.items():
            m = _bisect_point(points, list(recs), lambda p, img=img: int(ev.records[img][p]["bytes"]) <= caps[img])
            if m is not None:
                new.append((img, m))
        if not new:
            break
        ev.request(new)
        r += 1
    out: dict[str, Candidate | None] = {}
    for img in ev.records:
        pick = allocate({img: ev.candidates(img, objective)}, caps[img])
        out[img] = None if pick is None else pick[img]
    return out


def _shared(ev: _Evaluations, points: OperatingPoints, fits: Callable[[Any], bool], objective: str,
            refine_rounds: int) -> Any | None:
    """One point for every image: the best total objective among common points that fit,
    bisecting a continuous knob towards the highest rate that still fits."""
    r, limit = 0, _bisect_rounds(points, refine_rounds)
    while r < limit:
        m = _bisect_point(points, ev.common_points(), fits)
        if m is None:
            break
        ev.request([(img, m) for img in ev.records])
        r += 1
    feasible = [p for p in ev.common_points() if fits(p)]
    if not feasible:
        return None

    def total(p: Any) -> float:
        return sum(objective_value(recs[p], objective) for recs in ev.records.values())

    return max(feasible, key=total)


def _check(images: Mapping[str, int], targets: Sequence[float], mode: str, objective: str, policy: str,
           refine_rounds: int) -> None:
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; allowed: {MODES}")
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; allowed: {OBJECTIVES}")
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r}; allowed: {POLICIES}")
    if not images:
        raise ValueError("images is empty; rate control needs at least one image")
    bad = [i for i, n in images.items() if not (isinstance(n, int) and n > 0)]
    if bad:
        raise ValueError(f"pixel counts must be positive integers; bad for {bad[:3]}")
    if not targets:
        raise ValueError("targets is empty; give at least one bpp target")
    bad_t = [t for t in targets if not (math.isfinite(t) and t > 0)]
    if bad_t:
        raise ValueError(f"targets must be finite bpp values > 0, got {bad_t}")
    if refine_rounds < 0:
        raise ValueError(f"refine_rounds must be >= 0, got {refine_rounds}")


def _select(ev: _Evaluations, points: OperatingPoints, target: float, mode: str, objective: str, policy: str,
            refine_rounds: int) -> Selection:
    """One target's selection from the records so far (asking for more where the policy refines)."""
    images = ev.pixels
    total_px = sum(images.values())
    caps = {img: _floor_bytes(target, n) for img, n in images.items()}
    budget = _floor_bytes(target, total_px) if mode == "clic" else sum(caps.values())
    if policy == "shared":
        def fits(p: Any) -> bool:
            sizes = {img: int(recs[p]["bytes"]) for img, recs in ev.records.items()}
            if mode == "clic":
                return sum(sizes.values()) <= budget
            return all(sizes[img] <= caps[img] for img in sizes)

        best = _shared(ev, points, fits, objective, refine_rounds)
        chosen = {} if best is None else {img: recs[best] for img, recs in ev.records.items()}
        lowest = min(sum(int(recs[p]["bytes"]) for recs in ev.records.values()) for p in ev.common_points())
        fail = f"no single point keeps {'the set' if mode == 'clic' else 'every image'} at or below {target} bpp"
    elif mode == "clic":
        alloc = _clic_per_image(ev, points, budget, objective, refine_rounds)
        chosen = {} if alloc is None else {img: c.record for img, c in alloc.items()}
        lowest = sum(min(int(r["bytes"]) for r in recs.values()) for recs in ev.records.values())
        fail = f"the cheapest evaluated points give {lowest * 8 / total_px:.4f} bpp, above the {target} bpp target"
    else:
        picks = _per_image_mode(ev, points, caps, objective, refine_rounds)
        short = [img for img, c in picks.items() if c is None]
        chosen = {} if short else {img: c.record for img, c in picks.items() if c is not None}
        lowest = sum(min(int(r["bytes"]) for r in recs.values()) for recs in ev.records.values())
        fail = f"{len(short)} of {len(images)} images cannot reach {target} bpp"
    return Selection(target_bpp=target, mode=mode, objective=objective, status="ok" if chosen else "infeasible",
                     budget_bytes=budget, chosen=chosen, lowest_bpp=lowest * 8 / total_px, note="" if chosen else fail)


def _unconfirmed(ev: _Evaluations, sel: Selection, policy: str) -> list[tuple[str, Any]]:
    """The estimated records a selection rests on: its chosen points, or, when it found none,
    the cheapest points (an infeasible verdict and its lowest bpp must come from real files)."""
    if sel.chosen:
        recs = sel.chosen.values()
    elif policy == "shared":
        cheapest = min(ev.common_points(), key=lambda p: sum(int(r[p]["bytes"]) for r in ev.records.values()))
        recs = [r[cheapest] for r in ev.records.values()]
    else:
        recs = [min(r.values(), key=lambda rec: int(rec["bytes"])) for r in ev.records.values()]
    return [(rec["image_id"], rec["point"]) for rec in recs if rec.get("estimated")]


def _settled(ev: _Evaluations, points: OperatingPoints, target: float, mode: str, objective: str, policy: str,
             refine_rounds: int) -> Selection:
    """Select on estimates (sweep and refinement), code the points the selection rests on for
    real, select again among the points known (real records where coded, corrected estimates
    elsewhere), until it rests on real records only. Should that not happen within
    :data:`SETTLE_ROUNDS`, every point evaluated so far is coded and the last selection made
    on real records alone."""
    sel = _select(ev, points, target, mode, objective, policy, refine_rounds)
    for k in range(SETTLE_ROUNDS):
        pending = _unconfirmed(ev, sel, policy)
        if not pending:
            return sel
        off = ev.confirm(pending)
        # estimates that were off: search again on the corrected ones (the first rounds only);
        # else the choice stands, among the points known
        again = off > ESTIMATE_TOLERANCE and k < REFINE_AFTER_CODING
        sel = _select(ev, points, target, mode, objective, policy, refine_rounds if again else 0)
    ev.confirm([(img, p) for img, recs in ev.records.items() for p, r in recs.items() if r.get("estimated")])
    return _select(ev, points, target, mode, objective, policy, 0)


def rate_control(images: dict[str, int], points: OperatingPoints, evaluate: Evaluate, targets: Sequence[float],
                 mode: str = "clic", objective: str = "msssim", policy: str = "per-image",
                 refine_rounds: int = 4, estimate: Evaluate | None = None) -> list[Selection]:
    """Choose a record per image for each target, evaluating as few (image, point) pairs as it can.

    ``images`` maps image id to pixel count; ``evaluate`` turns (image_id, point) pairs into
    records and is called once per round, never twice for a pair. ``mode="clic"`` spends one
    budget over the set, ``"per-image"`` keeps every image at or below the target; ``policy``
    ``"shared"`` uses one point for all images. Selections come back in ``targets`` order.

    With ``estimate`` (cheap records marked ``"estimated": True``, same keys), the sweep and
    the search run on estimates, and only the points a selection rests on are evaluated for
    real (then the selection is made again): every chosen record, hence every budget check
    and reported number, is a real one.
    """
    _check(images, targets, mode, objective, policy, refine_rounds)
    ev = _Evaluations(evaluate, images, estimate)
    ev.request([(img, p) for img in images for p in points.initial()])
    return [_settled(ev, points, t, mode, objective, policy, refine_rounds) if estimate is not None
            else _select(ev, points, t, mode, objective, policy, refine_rounds) for t in targets]
