"""The package's layering, read from the source: no import circles inside ``bench/``, and the
report only renders stored files (it never reaches the runner, rate control, a codec or a study)."""

from __future__ import annotations

from pathlib import Path

import bench
from bench.sources import import_graph

PACKAGE_ROOT = Path(bench.__file__).resolve().parent
#: modules that code images or drive codecs: nothing under bench/report/ may reach them
CODING = ("bench.job", "bench.runner", "bench.run", "bench.ratecontrol", "bench.distributed", "bench.codecs",
          "bench.studies", "bench.verify", "bench.models")


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def _reach(graph: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        for m in graph[todo.pop()]:
            if m not in seen:
                seen.add(m)
                todo.append(m)
    return seen


def test_circle_finder_finds_a_planted_circle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _circles(graph) == [["a", "b", "c"]]


def test_no_import_circles_in_bench():
    circles = _circles(import_graph(PACKAGE_ROOT))
    assert not circles, f"import circles in bench/: {circles}"


def test_report_never_reaches_coding_modules():
    graph = import_graph(PACKAGE_ROOT)
    reports = [m for m in graph if m == "bench.report" or m.startswith("bench.report.")]
    assert len(reports) >= 5
    bad = {m: sorted(r for r in _reach(graph, m) if r.startswith(CODING)) for m in reports}
    bad = {m: r for m, r in bad.items() if r}
    assert not bad, f"report modules that reach coding modules: {bad}"


def test_graph_sees_in_function_imports(tmp_path):
    pkg = tmp_path / "bench"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from bench.sub import b\n    return b\n")
    (pkg / "sub" / "b.py").write_text("from ..a import f\n")
    graph = import_graph(pkg)
    assert graph["bench.a"] == {"bench.sub", "bench.sub.b"} and graph["bench.sub.b"] == {"bench.a"}
    assert _circles(graph) == [["bench.a", "bench.sub.b"]]
