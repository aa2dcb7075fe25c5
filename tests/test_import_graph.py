"""The layering of docs/architecture.md, checked on the source: imports go downward only
(storage <- mappers/conformance <- fhir_gateway) and no module imports itself back through
others.  Every import statement counts, also the ones inside functions (a lazy import that
closes a cycle is still a cycle); only ``if TYPE_CHECKING:`` blocks are skipped."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("storage", "mappers", "conformance", "fhir_gateway")
# what each layer may import from the project (itself included)
ALLOWED = {"storage": {"storage"}, "mappers": {"storage", "mappers"},
           "conformance": {"storage", "mappers", "conformance"}}


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for f in sorted((ROOT / pkg).rglob("*.py")):
            parts = f.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = f
    return out


def _imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    out: list[ast.Import | ast.ImportFrom] = []

    def walk(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                for sub in child.orelse:
                    walk(sub)
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                out.append(child)
            walk(child)
    walk(tree)
    return out


def _targets(mod: str, path: Path, node: ast.Import | ast.ImportFrom,
             mods: dict[str, Path]) -> set[str]:
    """The project modules an import statement loads (the deepest existing module named)."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        base = node.module or ""
        if node.level:
            pkg = mod.split(".") if path.name == "__init__.py" else mod.split(".")[:-1]
            pkg = pkg[:len(pkg) - (node.level - 1)]
            base = ".".join(pkg + ([base] if base else []))
        subs = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in mods]
        names = subs if len(subs) == len(node.names) else [base] + subs
    out = set()
    for n in names:
        while n and n not in mods:
            n = n.rpartition(".")[0]
        if n:
            out.add(n)
    return out


def graph() -> dict[str, set[str]]:
    mods = _modules()
    g: dict[str, set[str]] = {}
    for mod, path in mods.items():
        deps: set[str] = set()
        for node in _imports(ast.parse(path.read_text(encoding="utf-8"))):
            deps |= _targets(mod, path, node, mods)
        # a package is always initialised before its submodules: not an edge back
        g[mod] = {d for d in deps if d != mod and not mod.startswith(d + ".")}
    return g


def _cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(g[v]):
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
                out.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def test_the_graph_sees_lazy_imports():
    g = graph()
    assert len(g) > 100
    # a function-level import in the drill worker is an edge like any other
    assert "fhir_gateway.services.readmap" in g["fhir_gateway.drill.worker"]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == [["a", "b", "c"]]


def test_no_import_cycles():
    assert _cycles(graph()) == []


def test_lower_layers_import_nothing_above_them():
    wrong = []
    for mod, deps in graph().items():
        layer = mod.split(".")[0]
        allowed = ALLOWED.get(layer)
        if allowed is None:
            continue
        wrong += [f"{mod} -> {d}" for d in sorted(deps) if d.split(".")[0] not in allowed]
    assert wrong == []
