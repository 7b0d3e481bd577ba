"""The package's layering, checked over its import graph (every ``import`` in a module, a function's
lazy ones too, read with ``ast``): no module imports a layer above its own, and no modules import
each other in a loop. A layer is a folder of pytest_moeperf/; the order, bottom first, is LAYERS.

To move a module up or down, move it to that layer's folder; to let a new folder in, give it a
place in LAYERS. An edge another change is still moving may stand in ALLOWED, with a comment
saying who moves it; the list is meant to be empty.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "pytest_moeperf"

# bottom first; a layer may import its own and any below it
LAYERS = (
    "settings",   # option parsers shared by every setting
    "metrics",    # the metric registry, formulas, statistics, value formats
    "model",      # presets, cases, loading, tokenizer, context, routing
    "device",     # the GPU interface with NoGpu, NVML, every energy instrument
    "results",    # run documents, the results log, output checks
    "measure",    # the measurement rounds, clocks, energy, memory (works without pytest)
    "history",    # change points over stored runs
    "gate",       # the regression gate (history_gate.py gates against history's segments)
    "serving",    # load generator, engine and endpoint backends, serving runner
    "report",     # tables, plots, HTML
    "plugin",     # the pytest glue
    "parallel",   # xdist and tensor-parallel runs
    "ab",         # the A/B command: base and head run interleaved, decided on paired runs
    "__main__",   # the command line
)

# (importer, imported) module pairs allowed to break the rule for now, each with who moves it
ALLOWED: set[tuple[str, str]] = set()


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _targets(node: ast.AST, module: str, is_package: bool) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if isinstance(node, ast.ImportFrom):
        if node.level:
            base = module.split(".") if is_package else module.split(".")[:-1]
            base = base[:len(base) - node.level + 1]
            origin = ".".join(base + ([node.module] if node.module else []))
        else:
            origin = node.module or ""
        return [origin] + [f"{origin}.{a.name}" for a in node.names]
    return []


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """module -> the package's modules it imports (anywhere in its body)."""
    files = {module_name(p, root): p for p in (root / PACKAGE).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        found = {t for node in ast.walk(tree) for t in _targets(node, module, path.name == "__init__.py")}
        graph[module] = {t for t in found if t in files and t != module}
    return graph


def layer_of(module: str) -> str | None:
    """The layer a module belongs to; None for the package's face (pytest_moeperf/__init__.py)."""
    parts = module.split(".")
    return None if len(parts) == 1 else parts[1]


def upward_imports(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    rank = {name: i for i, name in enumerate(LAYERS)}
    bad = []
    for a, targets in graph.items():
        for b in targets:
            la, lb = layer_of(a), layer_of(b)
            if lb is not None and (la not in rank or lb not in rank or rank[lb] > rank[la]):
                bad.append((a, b))
    return sorted(bad)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def _without_allowed(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    return {a: {b for b in targets if (a, b) not in ALLOWED} for a, targets in graph.items()}


def test_every_folder_has_a_layer():
    folders = {p.name for p in (ROOT / PACKAGE).iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert folders <= set(LAYERS), f"give {sorted(folders - set(LAYERS))} a place in LAYERS"


def test_no_module_imports_a_layer_above_its_own():
    assert upward_imports(_without_allowed(import_graph())) == []


def test_no_import_cycles():
    assert cycles(_without_allowed(import_graph())) == []


def test_the_allowed_exceptions_still_exist():
    graph = import_graph()
    assert [pair for pair in sorted(ALLOWED) if pair[1] not in graph.get(pair[0], ())] == [], \
        "an allowed edge is gone: remove it from ALLOWED"


def test_the_checks_find_an_upward_import_and_a_cycle(tmp_path):
    pkg = tmp_path / PACKAGE
    for folder, body in (("metrics", "from pytest_moeperf.gate import rule\n"),
                         ("gate", "from . import other\n"), ("report", "")):
        (pkg / folder).mkdir(parents=True)
        (pkg / folder / "__init__.py").write_text("")
        (pkg / folder / "rule.py").write_text(body)
    (pkg / "__init__.py").write_text("")
    (pkg / "gate" / "other.py").write_text("def f():\n    from pytest_moeperf.gate.rule import x\n")
    graph = import_graph(tmp_path)
    assert upward_imports(graph) == [("pytest_moeperf.metrics.rule", "pytest_moeperf.gate"),
                                     ("pytest_moeperf.metrics.rule", "pytest_moeperf.gate.rule")]
    assert cycles(graph) == [["pytest_moeperf.gate.other", "pytest_moeperf.gate.rule"]]
