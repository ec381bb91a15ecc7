"""Rate control: the knapsack against brute force, the budget rules, and the driver's evaluation economy."""

from __future__ import annotations

import itertools
import math
import random
from collections import Counter
from collections.abc import Callable

import pytest

from bench.codec import OperatingPoints
from bench.ratecontrol import (
    Candidate,
    _Evaluations,
    _hull,
    allocate,
    objective_value,
    rate_control,
)

pytestmark = pytest.mark.timeout(30)  # a refinement loop that never converges fails instead of hanging


def brute_force(tables: dict[str, list[Candidate]], budget: int) -> float | None:
    best = None
    for combo in itertools.product(*tables.values()):
        if sum(c.bytes for c in combo) <= budget:
            v = sum(c.value for c in combo)
            best = v if best is None or v > best else best
    return best


def total(alloc: dict[str, Candidate]) -> tuple[int, float]:
    return sum(c.bytes for c in alloc.values()), sum(c.value for c in alloc.values())


def random_tables(rng: random.Random) -> dict[str, list[Candidate]]:
    return {f"im{i}": [Candidate(j, rng.randint(1, 60), rng.uniform(0, 10)) for j in range(rng.randint(1, 5))]
            for i in range(rng.randint(1, 4))}


# ---------------------------------------------------------------- allocate


def test_allocate_matches_brute_force_on_concave_equal_step_tables():
    # Equal byte steps and diminishing returns: marginal-gain order is optimal, so the answer is exact.
    rng = random.Random(1)
    for _ in range(30):
        tables = {}
        for i in range(rng.randint(2, 4)):
            gains = sorted((rng.uniform(0.1, 5) for _ in range(rng.randint(1, 4))), reverse=True)
            vals = list(itertools.accumulate([rng.uniform(0, 3)] + gains))
            tables[f"im{i}"] = [Candidate(j, 10 * (j + 1), v) for j, v in enumerate(vals)]
        lo = sum(min(c.bytes for c in t) for t in tables.values())
        hi = sum(max(c.bytes for c in t) for t in tables.values())
        for budget in range(lo, hi + 11, 5):
            alloc = allocate(tables, budget)
            nbytes, value = total(alloc)
            assert nbytes <= budget
            assert value == pytest.approx(brute_force(tables, budget), abs=1e-9)


def test_allocate_random_tables_against_brute_force():
    rng = random.Random(7)
    exact = cases = 0
    for _ in range(300):
        tables = random_tables(rng)
        lo = sum(min(c.bytes for c in t) for t in tables.values())
        hi = sum(max(c.bytes for c in t) for t in tables.values())
        budget = rng.randint(lo - 5, hi + 5)
        opt = brute_force(tables, budget)
        alloc = allocate(tables, budget)
        if opt is None:
            assert alloc is None
            continue
        assert alloc.keys() == tables.keys()
        assert all(alloc[k] in tables[k] for k in tables)
        nbytes, value = total(alloc)
        assert nbytes <= budget
        assert value <= opt + 1e-9
        # Lagrangian duality: the gap is at most one hull segment's value step.
        step = max((b.value - a.value for h in map(_hull, tables.values()) for a, b in zip(h, h[1:])), default=0.0)
        assert value >= opt - step - 1e-9
        cases += 1
        exact += math.isclose(value, opt, abs_tol=1e-9)
    assert cases > 250 and exact >= 0.9 * cases


def test_known_optimum_by_hand():
    tables = {
        "a": [Candidate("a0", 10, 1.0), Candidate("a1", 20, 5.0), Candidate("a2", 40, 6.0)],
        "b": [Candidate("b0", 10, 0.0), Candidate("b1", 30, 8.0), Candidate("b2", 50, 9.0)],
    }
    alloc = allocate(tables, 50)
    assert {k: c.point for k, c in alloc.items()} == {"a": "a1", "b": "b1"}
    assert allocate(tables, 100) == {"a": tables["a"][2], "b": tables["b"][2]}
    assert {k: c.point for k, c in allocate(tables, 20).items()} == {"a": "a0", "b": "b0"}


def test_greedy_fill_spends_budget_the_hull_leaves():
    # Hulls: a (0,0)-(50,10) slope 0.2, b (0,0)-(60,30) slope 0.5. Budget 100: the Lagrangian stops at
    # a=0, b=60 (value 30, 40 bytes left); a's off-hull point (40, 5) fits that gap.
    tables = {
        "a": [Candidate("a0", 0, 0.0), Candidate("a40", 40, 5.0), Candidate("a50", 50, 10.0)],
        "b": [Candidate("b0", 0, 0.0), Candidate("b60", 60, 30.0)],
    }
    assert [c.point for c in _hull(tables["a"])] == ["a0", "a50"]
    alloc = allocate(tables, 100)
    assert {k: c.point for k, c in alloc.items()} == {"a": "a40", "b": "b60"}
    assert total(alloc) == (100, 35.0) and brute_force(tables, 100) == 35.0


def test_allocate_infeasible_and_empty():
    tables = {"a": [Candidate(0, 30, 1.0)], "b": [Candidate(0, 31, 1.0), Candidate(1, 40, 2.0)]}
    assert allocate(tables, 60) is None
    assert allocate(tables, 61) == {"a": tables["a"][0], "b": tables["b"][0]}
    with pytest.raises(ValueError, match="'b' has no candidates"):
        allocate({"a": tables["a"], "b": []}, 100)


def test_objective_value():
    rec = {"height": 10, "width": 20, "msssim": 0.9, "sse": 600.0}
    assert objective_value(rec, "msssim") == pytest.approx(180.0)
    assert objective_value(rec, "psnr") == -600.0
    tiny_good = {"height": 4, "width": 4, "msssim": float("nan"), "sse": 10.0}
    tiny_bad = dict(tiny_good, sse=1000.0)
    good, bad = objective_value(tiny_good, "msssim"), objective_value(tiny_bad, "msssim")
    assert bad < good < 0 and good - bad < 1e-3  # prefers quality, but below any real MS-SSIM gain
    with pytest.raises(ValueError, match="allowed"):
        objective_value(rec, "ssim")


# ---------------------------------------------------------------- the driver

SIZES = {f"img{i:02d}": (64 + 16 * (i % 5), 96 + 8 * i) for i in range(12)}
PIXELS = {k: h * w for k, (h, w) in SIZES.items()}


def synthetic(rate: Callable[[str, float], float]) -> tuple[Callable, list[list[tuple[str, object]]]]:
    """A closed-form codec: bpp = rate(image, knob) (increasing), quality concave in bpp."""
    calls: list[list[tuple[str, object]]] = []

    def evaluate(pairs):
        calls.append(list(pairs))
        out = []
        for img, q in pairs:
            h, w = SIZES[img]
            s = 0.6 + 0.1 * int(img[3:])
            nbytes = max(1, round(rate(img, q) * h * w / 8))
            bpp = nbytes * 8 / (h * w)
            out.append({"image_id": img, "point": q, "bytes": nbytes, "height": h, "width": w, "bpp": bpp,
                        "msssim": 1 - 0.3 * math.exp(-bpp / (0.25 * s)),
                        "sse": 3 * h * w * 400 * math.exp(-bpp / (0.2 * s))})
        return out

    return evaluate, calls


def float_rate(img, q):
    return 0.02 * (0.6 + 0.1 * int(img[3:])) * math.exp(3.5 * q)


def int_rate(img, q):
    return 0.02 * (0.6 + 0.1 * int(img[3:])) * math.exp(0.035 * q)


FLOAT_KNOB = OperatingPoints("continuous", low=0.0, high=1.0, grid=8)
INT_KNOB = OperatingPoints("continuous", low=1, high=100, integer=True, grid=8)


def assert_no_duplicates(calls):
    pairs = [p for call in calls for p in call]
    assert not [p for p, n in Counter(pairs).items() if n > 1]
    return len(pairs)


@pytest.mark.parametrize("objective", ["msssim", "psnr"])
def test_refinement_fills_budget_with_few_evaluations(objective):
    # Four images leave the greedy fill little freedom: the first sweep alone misses 98 % of the budget.
    images = dict(list(PIXELS.items())[:4])
    targets = (0.075, 0.15, 0.30)

    def usage(sel):
        return sum(r["bytes"] for r in sel.chosen.values()) / sel.budget_bytes

    evaluate, _ = synthetic(float_rate)
    coarse = rate_control(images, FLOAT_KNOB, evaluate, targets, objective=objective, refine_rounds=0)
    assert all(usage(sel) < 0.98 for sel in coarse)
    evaluate, calls = synthetic(float_rate)
    sels = rate_control(images, FLOAT_KNOB, evaluate, targets, objective=objective)
    n = assert_no_duplicates(calls)
    assert len(calls) <= 1 + 4 * len(targets)  # one batched call per round
    for sel, t in zip(sels, targets):
        assert sel.status == "ok" and sel.note == ""
        assert sel.budget_bytes == math.floor(t * sum(images.values()) / 8)
        assert sel.chosen.keys() == images.keys()
        assert 0.98 <= usage(sel) <= 1.0
    # At most two new points per image and round; a dense grid at the refined spacing (1/7 halved
    # four times) would be 113 points per image.
    assert n <= len(images) * (8 + 2 * 4 * len(targets)) < len(images) * 113 / 3


def test_refinement_bisects_towards_the_side_of_the_best_point():
    """One image: its best point under the budget is the highest-rate one that fits, so the
    slope at the chosen point exceeds the multiplier and the one new point lies above it."""
    images = {"img03": PIXELS["img03"]}
    grid = FLOAT_KNOB.initial()
    first = rate_control(images, FLOAT_KNOB, synthetic(float_rate)[0], [0.1], refine_rounds=0)[0]
    evaluate, calls = synthetic(float_rate)
    sel = rate_control(images, FLOAT_KNOB, evaluate, [0.1], refine_rounds=1)[0]
    k = grid.index(first.chosen["img03"]["point"])
    assert 0 < k < len(grid) - 1
    assert [q for _, q in calls[1]] == [FLOAT_KNOB.snap((grid[k] + grid[k + 1]) / 2)]
    assert sel.status == "ok" and sel.chosen["img03"]["bytes"] * 8 <= 0.1 * images["img03"]


@pytest.mark.parametrize("rate,knob", [(float_rate, FLOAT_KNOB), (int_rate, INT_KNOB)])
def test_one_sided_refinement_ends_where_a_dense_grid_does(rate, knob):
    """Twelve images share one budget: the refined choice is worth what the knapsack finds on
    a dense grid of the knob (every integer; 1/448 steps for the float knob), with at most
    one new point per image and round (two-sided bisection: 1.5× the evaluations here)."""
    dense = list(range(1, 101)) if knob.integer else [i / 448 for i in range(449)]
    targets = (0.075, 0.15, 0.30)
    evaluate, calls = synthetic(rate)
    sels = rate_control(PIXELS, knob, evaluate, targets)
    n = assert_no_duplicates(calls)
    assert all(len(call) <= len(PIXELS) for call in calls[1:])
    all_eval, _ = synthetic(rate)
    recs = all_eval([(img, q) for img in PIXELS for q in dense])
    tables = {img: [Candidate(r["point"], r["bytes"], objective_value(r, "msssim"), r)
                    for r in recs if r["image_id"] == img] for img in PIXELS}
    for sel in sels:
        best = allocate(tables, sel.budget_bytes)
        got = sum(objective_value(r, "msssim") for r in sel.chosen.values())
        want = sum(c.value for c in best.values())
        assert got >= want - 2e-4 * sum(PIXELS.values()), (sel.target_bpp, got, want)   # MS-SSIM within 2e-4
    rounds = len(calls) - 1
    assert n <= len(PIXELS) * (len(knob.initial()) + rounds)


def test_log_knob_sweeps_and_bisects_in_log_space():
    """λ-like knobs: the grid is geometric and the refinement's midpoints are geometric means,
    so the low-rate end (0.55…2) gets as many points as the high-rate end (8…16)."""
    knob = OperatingPoints("continuous", low=0.5, high=16.0, grid=6, log=True)
    assert knob.initial() == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0]
    assert knob.midpoint(1.0, 4.0) == 2.0 and FLOAT_KNOB.midpoint(0.25, 0.75) == 0.5
    assert knob.midpoint(1.0, 1.000001) is None

    def log_rate(img, lam):       # rate grows with log λ, as a variable-rate model's does
        return float_rate(img, math.log(lam / 0.5) / math.log(32))
    images = dict(list(PIXELS.items())[:4])
    evaluate, calls = synthetic(log_rate)
    sel = rate_control(images, knob, evaluate, [0.05])[0]
    assert sel.status == "ok"
    grid = knob.initial()
    geometric = {knob.snap(math.sqrt(a * b)) for a, b in zip(grid, grid[1:])}
    new = {q for _, q in calls[1]}          # the first refinement round: midpoints of grid neighbours
    assert new and new <= geometric


def test_log1p_knob_puts_the_sweep_where_a_quality_scale_keeps_its_low_rates():
    """WebP's manifest: quality 0–100 swept evenly in log(1 + q); its Kodak targets lie at
    quality 0–12, which the linear grid of 12 covered with 2 points and this one with 6."""
    knob = OperatingPoints("continuous", low=0, high=100, integer=True, grid=12, log=True, log_offset=1.0)
    sweep = knob.initial()
    assert sweep[0] == 0 and sweep[-1] == 100 and len([q for q in sweep if q <= 12]) == 6
    assert knob.midpoint(0, 3) == 1 and knob.midpoint(7, 11) == 9 and knob.midpoint(0, 1) is None
    assert OperatingPoints("continuous", low=0, high=100, integer=True, grid=12).initial()[:3] == [0, 9, 18]


def test_integer_knob_stops_refining_at_adjacent_points():
    evaluate, calls = synthetic(int_rate)
    rate_control(PIXELS, OperatingPoints("continuous", low=1, high=8, integer=True, grid=8), evaluate, [0.02, 0.03])
    assert len(calls) == 1


def test_budget_reads_the_target_as_a_decimal():
    # 0.7 * 720 / 8 is 62.999... in binary floats; CLIC's budget is 63 bytes.
    records = {0: 63, 1: 64}
    sel = rate_control({"a": 720}, OperatingPoints("discrete", points=(0, 1)),
                       lambda pairs: [{"image_id": i, "point": p, "bytes": records[p], "height": 24, "width": 30,
                                       "sse": 1.0 - p, "msssim": 0.5 + p, "bpp": records[p] * 8 / 720}
                                      for i, p in pairs], [0.7])[0]
    assert sel.budget_bytes == 63 and sel.status == "ok" and sel.chosen["a"]["point"] == 0


def test_evaluations_table_never_asks_twice():
    evaluate, calls = synthetic(float_rate)
    ev = _Evaluations(evaluate, PIXELS)
    ev.request([("img00", 0.5), ("img00", 0.5), ("img01", 0.5)])
    ev.request([("img00", 0.5), ("img01", 0.25)])
    ev.request([("img01", 0.25)])
    assert calls == [[("img00", 0.5), ("img01", 0.5)], [("img01", 0.25)]]
    with pytest.raises(RuntimeError, match="no record for 1 requested pair"):
        _Evaluations(lambda pairs: evaluate(pairs[:1]), PIXELS).request([("img00", 0.0), ("img01", 0.0)])


def test_refinement_beats_the_first_sweep():
    evaluate, _ = synthetic(float_rate)
    coarse = rate_control(PIXELS, FLOAT_KNOB, evaluate, [0.15], refine_rounds=0)[0]
    evaluate, _ = synthetic(float_rate)
    fine = rate_control(PIXELS, FLOAT_KNOB, evaluate, [0.15])[0]

    def score(sel):
        return sum(r["msssim"] * r["height"] * r["width"] for r in sel.chosen.values())

    assert score(fine) > score(coarse)


def test_infeasible_reports_lowest_bpp():
    evaluate, calls = synthetic(float_rate)
    sel = rate_control(PIXELS, FLOAT_KNOB, evaluate, [0.005])[0]
    assert sel.status == "infeasible" and sel.chosen == {}
    lowest = sum(max(1, round(float_rate(k, 0.0) * p / 8)) for k, p in PIXELS.items()) * 8 / sum(PIXELS.values())
    assert sel.lowest_bpp == pytest.approx(lowest)
    assert "above the 0.005 bpp target" in sel.note
    assert len(calls) == 1  # nothing to refine


def test_shared_policy_uses_one_point():
    evaluate, calls = synthetic(int_rate)
    targets = (0.1, 0.3)
    sels = rate_control(PIXELS, INT_KNOB, evaluate, targets, policy="shared", refine_rounds=1)
    assert_no_duplicates(calls)
    for sel in sels:
        assert sel.status == "ok"
        (point,) = {r["point"] for r in sel.chosen.values()}
        assert sum(r["bytes"] for r in sel.chosen.values()) <= sel.budget_bytes
        # Bisected to adjacency (past refine_rounds): one knob step more does not fit.
        assert sum(max(1, round(int_rate(k, point + 1) * p / 8)) for k, p in PIXELS.items()) > sel.budget_bytes


def test_per_image_mode_keeps_every_image_under_target():
    evaluate, calls = synthetic(int_rate)
    targets = (0.1, 0.2)
    sels = rate_control(PIXELS, INT_KNOB, evaluate, targets, mode="per-image", refine_rounds=1)
    n = assert_no_duplicates(calls)
    for sel, t in zip(sels, targets):
        assert sel.status == "ok" and sel.mode == "per-image"
        assert sel.budget_bytes == sum(math.floor(t * p / 8) for p in PIXELS.values())
        for img, r in sel.chosen.items():
            assert r["bytes"] * 8 <= t * PIXELS[img]
            if r["point"] < 100:  # integer knobs are bisected to adjacency, past refine_rounds
                assert max(1, round(int_rate(img, r["point"] + 1) * PIXELS[img] / 8)) * 8 > t * PIXELS[img]
    assert n < len(PIXELS) * 100 / 2


def test_per_image_mode_counts_images_that_cannot_reach():
    evaluate, _ = synthetic(float_rate)
    # The cheapest bpp is 0.02 * s with s = 0.6 + 0.1 i: images 6..11 are above 0.0239 at knob 0.
    sel = rate_control(PIXELS, FLOAT_KNOB, evaluate, [0.0239], mode="per-image")[0]
    assert sel.status == "infeasible" and sel.chosen == {}
    assert sel.note == "6 of 12 images cannot reach 0.0239 bpp"


def test_discrete_points_evaluated_once_across_targets():
    points = OperatingPoints("discrete", points=(0.0, 0.25, 0.5, 0.75, 1.0))
    evaluate, calls = synthetic(float_rate)
    sels = rate_control(PIXELS, points, evaluate, [0.075, 0.15, 0.3])
    assert len(calls) == 1 and len(calls[0]) == 5 * len(PIXELS)
    for sel in sels:
        assert sel.status == "ok" and sum(r["bytes"] for r in sel.chosen.values()) <= sel.budget_bytes


@pytest.mark.parametrize("kwargs, message", [
    ({"mode": "bogus"}, "mode 'bogus'; allowed: ('clic', 'per-image')"),
    ({"objective": "ssim"}, "objective 'ssim'; allowed: ('msssim', 'psnr')"),
    ({"policy": "all"}, "policy 'all'; allowed: ('per-image', 'shared')"),
    ({"targets": [0.1, 0.0]}, "targets must be finite bpp values > 0"),
    ({"targets": []}, "targets is empty"),
    ({"images": {}}, "images is empty"),
    ({"refine_rounds": -1}, "refine_rounds must be >= 0"),
])
def test_bad_arguments(kwargs, message):
    evaluate, calls = synthetic(float_rate)
    args = {"images": PIXELS, "points": FLOAT_KNOB, "evaluate": evaluate, "targets": [0.1]} | kwargs
    with pytest.raises(ValueError) as err:
        rate_control(**args)
    assert message in str(err.value)
    assert calls == []


# ---------------------------------------------------------------- estimates (probe cheaply, code for real)


def estimating(evaluate: Callable, scale: float) -> tuple[Callable, list]:
    """The same codec's estimate, with its bytes deliberately off by ``scale`` and marked."""
    calls: list = []

    def estimate(pairs):
        calls.append(list(pairs))
        return [r | {"bytes": max(1, round(r["bytes"] * scale)), "estimated": True} for r in evaluate(pairs)]

    return estimate, calls


@pytest.mark.parametrize("scale", [0.7, 1.0, 1.3])
@pytest.mark.parametrize("knob,rate", [(FLOAT_KNOB, float_rate), (INT_KNOB, int_rate)])
@pytest.mark.parametrize("mode,policy", [("clic", "per-image"), ("per-image", "per-image"), ("clic", "shared")])
def test_estimates_never_decide_a_reported_number(scale, knob, rate, mode, policy):
    """Even with estimates 30 % off, every chosen record is real, within the budget, and the
    real jobs are few: a handful per image and target, not the whole sweep."""
    images = dict(list(PIXELS.items())[:6])
    targets = (0.075, 0.15, 0.30)
    real, real_calls = synthetic(rate)
    estimate, est_calls = estimating(synthetic(rate)[0], scale)
    sels = rate_control(images, knob, real, targets, mode=mode, policy=policy, estimate=estimate)
    coded = assert_no_duplicates(real_calls)
    for sel, t in zip(sels, targets):
        assert sel.status == "ok", sel.note
        assert all(not r.get("estimated") for r in sel.chosen.values())
        used = sum(r["bytes"] for r in sel.chosen.values())
        if mode == "clic":
            assert used <= sel.budget_bytes
        else:
            assert all(r["bytes"] <= math.floor(t * images[i] / 8) for i, r in sel.chosen.items())
    assert coded < sum(len(c) for c in est_calls)            # most points were only estimated
    assert coded <= 6 * len(images) * len(targets)


def test_with_exact_estimates_the_choice_is_the_one_full_coding_makes():
    images = dict(list(PIXELS.items())[:6])
    targets = (0.075, 0.15, 0.30)
    plain = rate_control(images, FLOAT_KNOB, synthetic(float_rate)[0], targets)
    real, real_calls = synthetic(float_rate)
    probed = rate_control(images, FLOAT_KNOB, real, targets, estimate=estimating(synthetic(float_rate)[0], 1.0)[0])
    for a, b in zip(plain, probed):
        assert {i: r["point"] for i, r in a.chosen.items()} == {i: r["point"] for i, r in b.chosen.items()}
    assert assert_no_duplicates(real_calls) <= len(images) * len(targets)    # one real job per image-target


def test_an_infeasible_verdict_rests_on_real_bytes():
    images = dict(list(PIXELS.items())[:3])
    real, _ = synthetic(float_rate)
    estimate, _ = estimating(synthetic(float_rate)[0], 0.01)    # the estimate says anything fits
    sel = rate_control(images, FLOAT_KNOB, real, [0.001], estimate=estimate)[0]
    assert sel.status == "infeasible"
    lowest = sum(min(r["bytes"] for r in synthetic(float_rate)[0]([(i, 0.0)])) for i in images)
    assert sel.lowest_bpp == pytest.approx(lowest * 8 / sum(images.values()))
