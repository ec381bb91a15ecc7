"""RD-curve arithmetic (bench/rd.py) shared by the regression gate and the studies."""

from __future__ import annotations

from bench.rd import usable_curve


def test_usable_curve_drops_dominated_and_non_finite_points():
    rd = [{"bpp": 0.2, "q": 10.0}, {"bpp": 0.1, "q": 8.0}, {"bpp": 0.25, "q": 9.5},   # 0.25: more bits, less quality
          {"bpp": 0.3, "q": float("inf")}, {"bpp": 0.4, "q": 12.0}]
    assert usable_curve(rd, "q") == [(0.1, 8.0), (0.2, 10.0), (0.4, 12.0)]
