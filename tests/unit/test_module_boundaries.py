"""Module boundaries, read from the source (ast): no module reaches into another's private names, and
the modules' imports form no cycle.

A cycle works today only because of the order modules happen to be loaded in (images/store.py used
to import pull.py, which imports store.py); a private name used from outside (cli._table in the
image commands) is an interface nobody promised to keep.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "pycontain"

# Cycles known and owned elsewhere, with why they are tolerated; anything else fails.
KNOWN_CYCLES: set[frozenset[str]] = set()
OTHERS: tuple[str, ...] = ()


def modules() -> dict[str, ast.Module]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = ".".join(("pycontain", *path.relative_to(PACKAGE).with_suffix("").parts)).removesuffix(".__init__")
        out[name] = ast.parse(path.read_text(), str(path))
    return out


MODULES = modules()


def _type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"


def imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """Every import that runs (at module level or inside a function), not those only for type checkers."""
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if _type_checking(child):
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                found.append(child)
            visit(child)

    visit(tree)
    return found


def edges(name: str, tree: ast.Module) -> set[str]:
    """The pycontain modules `name` imports, leaving out its own parent packages (Python loads those
    first anyway: `from pycontain.network import nat` inside the network package is no cycle)."""
    out = set()
    for node in imports(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif node.module and node.level == 0:
            out.add(node.module)
            out |= {f"{node.module}.{a.name}" for a in node.names}
    parents = {name.rsplit(".", i)[0] for i in range(1, name.count(".") + 1)}
    return {m for m in out if m in MODULES and m != name and m not in parents}


def cycles() -> set[frozenset[str]]:
    graph = {name: edges(name, tree) for name, tree in MODULES.items()}
    found = set()

    def walk(start: str, node: str, path: list[str]) -> None:
        for nxt in graph[node]:
            if nxt == start:
                found.add(frozenset(path))
            elif nxt not in path and nxt > start:  # each cycle once, from its smallest member
                walk(start, nxt, [*path, nxt])

    for name in graph:
        walk(name, name, [name])
    return found


def test_no_import_cycles_beyond_the_known_ones() -> None:
    new = {c for c in cycles() - KNOWN_CYCLES if not all(m.startswith(OTHERS) for m in c)}
    assert not new, "import cycles: " + "; ".join(" <-> ".join(sorted(c)) for c in new)


def test_the_image_commands_and_stats_do_not_import_cli_helpers_that_moved() -> None:
    for plugin in ("pycontain.images.commands", "pycontain.stats", "pycontain.network.commands"):
        names = {a.name for n in imports(MODULES[plugin]) if isinstance(n, ast.ImportFrom) for a in n.names}
        assert not names & {"_table", "_ago", "_need", "_size"}, plugin


def private_uses(name: str, tree: ast.Module) -> list[str]:
    """`from pycontain.x import _y`, and `x._y` where x is a pycontain module this module imported."""
    bad = []
    module_aliases = {}
    for node in imports(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("pycontain"):
            for a in node.names:
                full = f"{node.module}.{a.name}"
                if full in MODULES:
                    module_aliases[a.asname or a.name] = full
                elif a.name.startswith("_") and not a.name.startswith("__") and full != "pycontain._native":
                    bad.append(f"{name}: from {node.module} import {a.name}")
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name in MODULES and a.asname:
                    module_aliases[a.asname] = a.name
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                and node.value.id in module_aliases and node.attr.startswith("_") and not node.attr.startswith("__"):
            bad.append(f"{name}: {node.value.id}.{node.attr} ({module_aliases[node.value.id]})")
    return bad


def test_no_module_uses_another_modules_private_names() -> None:
    # pycontain._native is the compiled extension module itself (private by its name, public to
    # syscalls.py, its one user), not a private name inside another module.
    bad = [line for name, tree in MODULES.items() for line in private_uses(name, tree)]
    assert bad == []
