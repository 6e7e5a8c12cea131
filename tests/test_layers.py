"""The package's layers import only downward, and the lower layers have no import cycles.

Layer order, lowest first (a module may import its own package and lower layers, function-level
imports included): base (errors, config, progress, utils, the package root) < manifest < media <
datasets < decode < clip < store < extract < models < eval < train < bench < audit < apps <
testing < cli. Checked here for the layers up to ``extract``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import dsan_toolkit

ORDER = ("base", "manifest", "media", "datasets", "decode", "clip", "store", "extract", "models", "eval", "train",
         "bench", "audit", "apps", "testing", "cli")
BASE = {"errors", "config", "progress", "utils", "_manifests"}
CHECKED = ORDER[: ORDER.index("extract") + 1]
PACKAGE = Path(dsan_toolkit.__file__).resolve().parent


def _layer(module: str) -> str:
    parts = module.split(".")
    return "base" if len(parts) == 1 or parts[1] in BASE else parts[1]


def _modules() -> dict[str, tuple[Path, bool]]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = ["dsan_toolkit", *path.relative_to(PACKAGE).with_suffix("").parts]
        is_pkg = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_pkg else parts)] = (path, is_pkg)
    return out


def _imports(module: str, path: Path, is_pkg: bool) -> list[tuple[str, list[str], int]]:
    """(imported module, names imported from it, line) of every import in the file."""
    package = module if is_pkg else module.rsplit(".", 1)[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            out.append((target, [a.name for a in node.names], node.lineno))
        elif isinstance(node, ast.Import):
            out += [(a.name, [], node.lineno) for a in node.names]
    return [(t, names, line) for t, names, line in out if t == "dsan_toolkit" or t.startswith("dsan_toolkit.")]


def test_lower_layers_import_only_downward():
    modules = _modules()
    upward = []
    for module, (path, is_pkg) in sorted(modules.items()):
        mine = _layer(module)
        if mine not in CHECKED:
            continue
        for target, _, line in _imports(module, path, is_pkg):
            theirs = _layer(target)
            if ORDER.index(theirs) > ORDER.index(mine):
                upward.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {mine} imports {target} ({theirs})")
    assert not upward, "\n".join(upward)


def test_lower_layers_have_no_import_cycles():
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for module, (path, is_pkg) in modules.items():
        if is_pkg or _layer(module) not in CHECKED:
            continue  # a package's __init__ re-exporting its modules is no cycle of theirs
        deps = set()
        for target, names, _ in _imports(module, path, is_pkg):
            for dep in (target, *(f"{target}.{n}" for n in names)):
                if dep in modules and not modules[dep][1] and dep != module:
                    deps.add(dep)
        graph[module] = deps
    cycles = []
    done: set[str] = set()

    def visit(node: str, trail: list[str]) -> None:
        if node in trail:
            cycles.append(" -> ".join(trail[trail.index(node):] + [node]))
            return
        if node in done or node not in graph:
            return
        for dep in sorted(graph[node]):
            visit(dep, trail + [node])
        done.add(node)

    for module in sorted(graph):
        visit(module, [])
    assert not cycles, "\n".join(cycles)
