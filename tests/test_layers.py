"""Layering of the package: no import cycles (function-level imports count), no package importing
another package's private names."""

from __future__ import annotations

import ast
from pathlib import Path

import dsan_toolkit

ROOT = Path(dsan_toolkit.__file__).parent
# cycles inside one package that predate this check; none may grow or join another package
KNOWN_CYCLES = [
    {"datasets.registry", "datasets.ucf", "datasets.xd"},
    {"bench.published", "bench.table"},
]


def _modules() -> dict[str, tuple[Path, bool]]:
    mods = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        mods[".".join(parts[:-1] if is_pkg else parts)] = (path, is_pkg)
    return mods


def _imports(mods: dict[str, tuple[Path, bool]]) -> tuple[dict[str, set[str]], list[str]]:
    """Module -> modules it imports (anywhere in the file); and the private names imported across packages."""
    edges: dict[str, set[str]] = {m: set() for m in mods}
    private = []
    for mod, (path, is_pkg) in mods.items():
        here = mod.split(".") if mod else []
        base = here if is_pkg else here[:-1]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ImportFrom):
                continue
            if node.level:
                up = base[: len(base) - (node.level - 1)]
                target = ".".join(up + ([node.module] if node.module else []))
            elif (node.module or "").startswith("dsan_toolkit"):
                target = node.module[len("dsan_toolkit"):].lstrip(".")  # type: ignore[index]
            else:
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}".lstrip(".")
                name = sub if sub in mods else target
                while name not in mods and "." in name:
                    name = name.rsplit(".", 1)[0]
                if name in mods and name != mod:
                    edges[mod].add(name)
                other_pkg = target.split(".")[0] != (here[0] if here else "")
                if sub not in mods and alias.name.startswith("_") and not alias.name.startswith("__") and other_pkg:
                    private.append(f"{mod} imports {alias.name} from {target}")
    return edges, private


def _cycles(edges: dict[str, set[str]]) -> list[set[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(comp)

    for v in edges:
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles():
    edges, _ = _imports(_modules())
    cycles = [c for c in _cycles(edges) if c not in KNOWN_CYCLES]
    assert not cycles, cycles


def test_no_package_cycles():
    edges, _ = _imports(_modules())
    pkg = {m: m.split(".")[0] for m in edges}
    between = {a: set() for a in set(pkg.values())}
    for m, targets in edges.items():
        for t in targets:
            if pkg[m] != pkg[t] and m and t:  # the top package's __init__ is no layer
                between[pkg[m]].add(pkg[t])
    assert not _cycles(between), _cycles(between)


def test_no_private_names_across_packages():
    _, private = _imports(_modules())
    assert not private, private
