"""Which source files make a codec's bytes: its module and every module of this project it
imports, directly or through others, read with ``ast`` (nothing is imported or run).

The results cache is keyed by a submission's content hash; hashing only the codec class's
own file would miss the modules that do the work (``VariableRateCodec`` lives in
``variable_rate.py``, its encode and decode in ``learned.py``), so a change there could serve
stale cached results. In-function imports count too: they run when the codec does.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = "bench"


def _module_file(name: str, package_root: Path) -> Path | None:
    """The file of module ``name`` (``bench.a.b``) under ``package_root`` (the ``bench`` folder)."""
    parts = name.split(".")
    if parts[0] != PACKAGE:
        return None
    base = package_root.joinpath(*parts[1:])
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _module_name(path: Path, package_root: Path) -> str | None:
    try:
        rel = path.resolve().relative_to(package_root.resolve()).with_suffix("")
    except ValueError:
        return None                    # a file outside the package (a submission's own codec.py)
    parts = [PACKAGE, *rel.parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, package_root: Path) -> set[str]:
    """Names of the package modules a file imports (``from a import b`` may name module a.b)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    me = _module_name(path, package_root)
    pkg = (me if path.name == "__init__.py" else me.rpartition(".")[0]) if me else ""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = pkg.split(".")[: len(pkg.split(".")) - (node.level - 1)]
                base = ".".join(up + ([base] if base else []))
            names |= {base} | {f"{base}.{a.name}" for a in node.names}
    return {n for n in names if n == PACKAGE or n.startswith(PACKAGE + ".")}


def source_closure(entry: Path, package_root: Path) -> list[Path]:
    """``entry`` and every file of the package it reaches through imports, with the packages'
    ``__init__.py`` files (they run on import); sorted, each once."""
    seen: set[Path] = set()
    todo = [Path(entry).resolve()]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in imported_modules(path, package_root):
            parts = name.split(".")
            for k in range(1, len(parts) + 1):          # bench, bench.codecs, bench.codecs.learned
                f = _module_file(".".join(parts[:k]), package_root)
                if f is not None and f.resolve() not in seen:
                    todo.append(f.resolve())
    return sorted(seen)


def import_graph(package_root: Path) -> dict[str, set[str]]:
    """Module name → the package modules it imports (module-level and in-function alike)."""
    files = {_module_name(p, package_root): p for p in Path(package_root).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        targets = set()
        for imported in imported_modules(path, package_root):
            while imported and imported not in files:          # ``from bench.a import func`` → bench.a
                imported = imported.rpartition(".")[0]
            if imported and imported != name:
                targets.add(imported)
        graph[name] = targets
    return graph
