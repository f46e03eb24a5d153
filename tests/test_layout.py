"""The package's shape: no import cycles between its modules, no file over 400 lines.

The import graph is built from the source with ``ast`` (every ``import`` and
``from ... import`` anywhere in a module, including inside functions and
``TYPE_CHECKING`` blocks), so a cycle hidden behind a local import counts too.
"""

import ast
from pathlib import Path

import networkx as nx

ROOT = Path(__file__).resolve().parents[1]
ROOMS = {
    "surgeon": "surgeon",
    "analyzers": "surgeon.analyzers",
    "rewriters": "surgeon.rewriters",
    "viz": "surgeon.viz",
}
MAX_LINES = 400


def _modules() -> dict[str, Path]:
    modules = {}
    for folder, package in ROOMS.items():
        for path in (ROOT / folder).rglob("*.py"):
            parts = [p for p in path.relative_to(ROOT / folder).with_suffix("").parts]
            parts = [p for p in parts if p != "__init__"]
            modules[".".join([package, *parts])] = path
    return modules


def _import_graph(modules: dict[str, Path]) -> nx.DiGraph:
    graph = nx.DiGraph()
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join([*up, base] if base else up)
                targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
            else:
                continue
            for target in targets:
                if target in modules and target != name:
                    graph.add_edge(name, target)
    return graph


def test_the_package_has_no_import_cycles():
    modules = _modules()
    graph = _import_graph(modules)
    assert graph.number_of_edges() > 100  # the walk sees the package's real imports
    # a package __init__ re-exporting its children is how a namespace is built, not a cycle
    cycles = [
        c for c in nx.simple_cycles(graph) if not any(modules[m].name == "__init__.py" for m in c)
    ]
    assert cycles == [], "import cycles: " + "; ".join(" -> ".join(c) for c in cycles[:5])


def test_no_package_file_is_over_400_lines():
    long = {
        str(path.relative_to(ROOT)): n
        for path in _modules().values()
        if (n := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}
