"""The package's shape: no import cycle inside minisbert/, the textbook independent of the fast
encoder, `import minisbert` loads nothing but the standard library and NumPy, and every
subpackage is listed for packaging. Pure Python; no model, no reference library."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "minisbert"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imported_modules(name: str, path: Path, known: set[str]) -> set[str]:
    """The minisbert modules `name` imports anywhere in its file (functions included)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: each level above the first goes one package up
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module
            # `from .tokenizer import base` imports a module; `from .errors import X`, a name.
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base
                       for a in node.names]
        else:
            continue
        found.update(t for t in targets if t in known and t != name)
    return found


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the directed graph as [a, b, ..., a], or None if it has none."""
    state: dict[str, str] = {}  # "open" while on the current path, "done" after

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return path[path.index(nxt):] + [node, nxt] if nxt in path else [node, nxt]
            if nxt not in state and (cycle := visit(nxt, path + [node])):
                return cycle
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start, [])):
            return cycle
    return None


def import_graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imported_modules(name, path, set(mods)) for name, path in mods.items()}


def test_find_cycle_finds_one():
    # The checker itself, on graphs with and without a cycle (so a pass below means something).
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"a"}}) == ["a", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_import_graph_is_read():
    graph = import_graph()
    print("\n" + "\n".join(f"{m} -> {', '.join(sorted(d))}" for m, d in sorted(graph.items())))
    # Spot checks that relative imports of each form are resolved.
    assert "minisbert.tokenizer" in graph["minisbert.model"]  # from .tokenizer import ...
    assert "minisbert.tokenizer.base" in graph["minisbert.tokenizer.bert"]  # from .base import
    assert "minisbert.errors" in graph["minisbert.tokenizer.base"]  # from ..errors import
    assert "minisbert.tokenizer.xlmr" in graph["minisbert.tokenizer"]


def test_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    """Every module `start` imports, directly or through others."""
    seen, todo = set(), [start]
    while todo:
        for nxt in graph.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def test_reachable_follows_imports():
    assert reachable({"a": {"b"}, "b": {"c"}, "c": set(), "d": {"a"}}, "a") == {"b", "c"}


def test_textbook_needs_nothing_from_the_fast_encoder():
    # The plain maths must not lean on the speed code: encoder.py may import textbook.py, never
    # the other way round, directly or through another module.
    graph = import_graph()
    needs = reachable(graph, "minisbert.textbook")
    print(f"\ntextbook.py imports {sorted(needs)}")
    assert "minisbert.encoder" not in needs
    assert "minisbert.textbook" in graph["minisbert.encoder"]  # the direction that is allowed


def test_import_loads_only_the_standard_library_and_numpy():
    # A fresh interpreter: the test process has long imported torch and the rest. What the
    # package's import loads, with the optional front ends and the command line (which imports
    # the server, the index and the rest lazily), beyond what the interpreter had at start.
    code = ("import sys\n"
            "before = set(sys.modules)\n"
            "import minisbert, minisbert.cli, minisbert.tokenizer.xlmr, minisbert.tokenizer.japanese\n"
            "print(' '.join(sorted({m.split('.')[0] for m in set(sys.modules) - before})))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    loaded = out.stdout.split()
    others = [m for m in loaded
              if m not in ("numpy", "minisbert") and m not in sys.stdlib_module_names]
    print(f"\nimport minisbert loads {len(loaded)} top-level modules")
    assert "numpy" in loaded and "minisbert" in loaded  # the check sees what was imported
    assert others == [], f"import minisbert also loads {others}; only NumPy may be needed"


def test_every_subpackage_is_packaged():
    tomllib = pytest.importorskip("tomllib", reason="tomllib is in Python 3.11 and later")
    with open(ROOT / "pyproject.toml", "rb") as f:
        listed = set(tomllib.load(f)["tool"]["setuptools"]["packages"])
    packages = {module_name(p) for p in PACKAGE.rglob("__init__.py")}
    assert packages == listed, f"pyproject.toml lists {sorted(listed)}, the tree has {sorted(packages)}"
