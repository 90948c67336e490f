"""The package's shape: arrows go one way (cli -> services -> selection / reports -> featurize /
heads -> store), no import cycle, no module takes another's private names, and every top-level
name is defined once.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "featstore"
# higher imports lower; equal ranks may not import each other across packages
RANKS = {"version": 0, "store": 0, "featurize": 1, "heads": 1, "selection": 2, "reports": 2,
         "search": 2, "services": 3, "cli": 4}
TOP = 5  # featstore/__init__.py and __main__.py: the public facade and the entry point


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}
TREES = {name: ast.parse(path.read_text(encoding="utf-8")) for name, path in MODULES.items()}


def is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def imports(name: str) -> list[tuple[str, str | None, int]]:
    """(module imported, name taken from it or None, line) for every import in the module,
    top-level or inside functions."""
    out = []
    for node in ast.walk(TREES[name]):
        if isinstance(node, ast.Import):
            out += [(a.name, None, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = name if is_package(name) else name.rsplit(".", 1)[0]
                for _ in range(node.level - 1):
                    pkg = pkg.rsplit(".", 1)[0]
                base = f"{pkg}.{base}" if base else pkg
            for a in node.names:
                sub = f"{base}.{a.name}"
                out.append((sub, None, node.lineno) if sub in MODULES
                           else (base, a.name, node.lineno))
    return [(m, n, line) for m, n, line in out if m == "featstore" or m.startswith("featstore.")]


def rank(name: str) -> tuple[int, str]:
    parts = name.split(".")
    if len(parts) == 1 or parts[1] == "__main__":
        return TOP, "featstore"
    return RANKS[parts[1]], parts[1]


def test_every_module_is_in_a_known_room():
    for name in MODULES:
        rank(name)  # KeyError names a module outside the rooms


def test_arrows_point_one_way():
    wrong = []
    for name in MODULES:
        r, room = rank(name)
        for target, _, line in imports(name):
            tr, troom = rank(target)
            if room == troom:
                continue
            if tr >= r:
                wrong.append(f"{name}:{line} imports {target}")
    assert not wrong, "imports against cli -> services -> selection/reports -> " \
        "featurize/heads -> store:\n" + "\n".join(wrong)


def test_no_import_cycle():
    graph = {name: {t for t, _, _ in imports(name) if t in MODULES and t != name}
             for name in MODULES}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph[n]):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state and (cycle := visit(m)):
                return cycle
        stack.pop()
        state[n] = 2
        return None

    for name in MODULES:
        if name not in state:
            cycle = visit(name)
            assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_no_module_takes_another_modules_private_names():
    wrong = []
    for name, tree in TREES.items():
        aliases = {}
        for target, taken, line in imports(name):
            if taken is not None and taken.startswith("_") and not taken.startswith("__"):
                wrong.append(f"{name}:{line} imports {taken} from {target}")
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom | ast.Import):
                for a in node.names:
                    full = a.name if isinstance(node, ast.Import) else f"{node.module}.{a.name}"
                    if full in MODULES:
                        aliases[a.asname or a.name.split(".")[-1]] = full
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id in aliases and node.attr.startswith("_")
                    and not node.attr.startswith("__")):
                wrong.append(f"{name}:{node.lineno} uses {node.value.id}.{node.attr}")
    assert not wrong, "\n".join(wrong)


def test_every_top_level_name_is_defined_once():
    where = defaultdict(list)
    for name, tree in TREES.items():
        for node in tree.body:
            if (isinstance(node, ast.FunctionDef | ast.ClassDef | ast.AsyncFunctionDef)
                    and node.name != "__getattr__"):  # lazy exports of package files
                where[node.name].append(name)
    twice = {n: mods for n, mods in where.items() if len(mods) > 1}
    assert not twice, f"names defined in several modules: {twice}"


@pytest.mark.parametrize("cycle_free_root", ["featstore.featurize", "featstore.heads"])
def test_featurize_and_heads_never_meet(cycle_free_root):
    other = "featstore.heads" if cycle_free_root == "featstore.featurize" else \
        "featstore.featurize"
    for name in MODULES:
        if name.startswith(cycle_free_root):
            assert not [t for t, _, _ in imports(name) if t.startswith(other)], name


SIBLINGS = ("featstore.selection", "featstore.reports", "featstore.search")


@pytest.mark.parametrize("package", SIBLINGS)
def test_selection_reports_and_search_read_vectors_only_through_heads(package):
    """They sit above heads, beside each other, and never reach the encoder pass."""
    for name in MODULES:
        if name.startswith(package):
            reached = {t for t, _, _ in imports(name)}
            assert not [t for t in reached if t.startswith("featstore.featurize")], name
            for sibling in SIBLINGS:
                if sibling != package:
                    assert not [t for t in reached if t.startswith(sibling)], name
