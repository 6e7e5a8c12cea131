"""The package's layers hold: no import cycles, no upward imports, no private names across
packages (function-level imports included). docs/architecture.md describes the layers."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "dsan_toolkit"

# lowest first; a module may import its own package and the layers below
LAYERS: tuple[frozenset[str], ...] = tuple(
    frozenset(x.split())
    for x in (
        "__init__ errors config keys progress utils",
        "manifest",
        "media",
        "datasets",
        "decode",
        "clip",
        "store",
        "extract",
        "models",
        "eval",
        "train",
        "bench",
        "audit",
        "apps",
        "testing",
        "cli",
    )
)
RANK = {name: i for i, layer in enumerate(LAYERS) for name in layer}


def _modules() -> dict[str, Path]:
    out = {}
    for p in PACKAGE.rglob("*.py"):
        parts = ["dsan_toolkit", *p.relative_to(PACKAGE).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


MODULES = _modules()


def _imports(mod: str) -> list[tuple[str, list[str], int]]:
    """(imported module, imported names, line) of every import in ``mod``, at any depth."""
    path = MODULES[mod]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    base = mod.split(".") if path.name == "__init__.py" else mod.split(".")[:-1]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, [], node.lineno) for a in node.names if a.name.startswith("dsan_toolkit")]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                root = base[: len(base) - (node.level - 1)]
                target = ".".join(root + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("dsan_toolkit"):
                continue
            names = [a.name for a in node.names]
            subs = [f"{target}.{n}" for n in names if f"{target}.{n}" in MODULES]
            out += [(s, [], node.lineno) for s in subs]
            rest = [n for n in names if f"{target}.{n}" not in MODULES]
            if rest or not subs:
                out.append((target, rest, node.lineno))
    return out


def _resolve(name: str) -> str:
    while name not in MODULES and "." in name:
        name = name.rsplit(".", 1)[0]
    return name


def _package(mod: str) -> str:
    parts = mod.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _graph() -> dict[str, set[str]]:
    return {m: {t for t in (_resolve(n) for n, _, _ in _imports(m)) if t != m} for m in MODULES}


def test_every_package_has_a_layer():
    assert {_package(m) for m in MODULES} <= set(RANK), sorted({_package(m) for m in MODULES} - set(RANK))


def test_no_upward_imports():
    bad = []
    for m in MODULES:
        for name, _, line in _imports(m):
            t = _resolve(name)
            if RANK.get(_package(t), -1) > RANK.get(_package(m), -1):
                bad.append(f"{MODULES[m].relative_to(PACKAGE.parent)}:{line}: {m} imports {t} (a higher layer)")
    assert not bad, "\n".join(bad)


def test_no_private_names_across_packages():
    bad = []
    for m in MODULES:
        for name, names, line in _imports(m):
            t = _resolve(name)
            private = [n for n in names if n.startswith("_") and not (n.startswith("__") and n.endswith("__"))]
            if private and _package(t) != _package(m):
                bad.append(f"{MODULES[m].relative_to(PACKAGE.parent)}:{line}: {m} imports {private} from {t}")
    assert not bad, "\n".join(bad)


def test_no_import_cycles():
    graph = _graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    assert not cycles, cycles
