"""The layers, enforced on the import graph: every ``import`` in ortel's source (lazy ones inside
functions and ``TYPE_CHECKING`` ones included) points to its own layer or one below, no two
modules import each other (directly or around a cycle), and docs/architecture.md lists the
layers as they are."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = (ROOT / "instrumentation", ROOT / "exporter")
# Bottom first: a package may import its own layer and the ones before it.
LAYERS = (
    "ortel.core",
    "ortel.collectors",
    "ortel.instrumentation",
    "ortel.analysis",
    "ortel.profiling",
    "ortel.exporter",
)
# What the core may use beyond the standard library.
CORE_THIRD_PARTY = {"numpy", "prometheus_client", "click"}
# Module cycles not yet broken. Listed so that a new one fails, and so that this list can only
# shrink: a cycle listed here that no longer exists fails too.
KNOWN_CYCLES: set[frozenset[str]] = set()


def modules() -> dict[str, Path]:
    out = {}
    for base in SOURCES:
        for path in base.rglob("*.py"):
            parts = list(path.relative_to(base).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


MODULES = modules()


def imports(name: str, path: Path) -> Iterator[str]:
    """Every module ``name`` imports, as written (absolute), anywhere in the file."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            yield mod
            # ``from pkg import module`` imports that module too.
            yield from (f"{mod}.{a.name}" for a in node.names if f"{mod}.{a.name}" in MODULES)


GRAPH = {
    name: {m for m in imports(name, path) if m in MODULES and m != name}
    for name, path in MODULES.items()
}


def layer(module: str) -> int:
    for i, prefix in reversed(list(enumerate(LAYERS))):
        if module == prefix or module.startswith(prefix + "."):
            return i
    raise AssertionError(f"{module} is in no layer: add its package to LAYERS")


def test_every_module_is_in_a_layer():
    for name in MODULES:
        if name != "ortel":
            layer(name)


def test_imports_point_to_the_same_layer_or_below():
    upward = sorted(f"{a} -> {b}" for a, deps in GRAPH.items() for b in deps if layer(b) > layer(a))
    assert upward == []


def test_the_core_uses_only_the_standard_library_and_its_few_dependencies():
    import sys

    stdlib = set(sys.stdlib_module_names)
    for name, path in MODULES.items():
        if not name.startswith("ortel.core"):
            continue
        outside = {
            m.split(".")[0]
            for m in imports(name, path)
            if not m.startswith("ortel.core") and m.split(".")[0] not in stdlib
        }
        # "ortel" alone is the namespace; anything ortel.* outside the core is a layer breach.
        assert outside <= CORE_THIRD_PARTY, f"{name} imports {sorted(outside)}"
        assert not {m for m in imports(name, path) if m.startswith("ortel.")} - {
            m for m in imports(name, path) if m.startswith("ortel.core")
        }


def cycles() -> set[frozenset[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: set[frozenset[str]] = set()
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.add(frozenset(comp))

    for v in sorted(GRAPH):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles_beyond_the_known_ones():
    found = cycles()
    assert found - KNOWN_CYCLES == set(), "new import cycle"
    assert KNOWN_CYCLES - found == set(), "a known cycle is gone: remove it from KNOWN_CYCLES"


def test_the_checker_sees_lazy_imports():
    # recorder.py imports opstate only inside a method; the graph must still have the edge.
    assert "ortel.core.opstate" in GRAPH["ortel.instrumentation.recorder"]


def test_the_architecture_doc_lists_the_layers_as_they_are():
    doc = (ROOT / "docs" / "architecture.md").read_text()
    section = doc.split("## Layers", 1)[1].split("\n## ", 1)[0]
    listed = re.findall(r"^\| `(ortel\.[a-z_]+)` \|", section, flags=re.M)
    assert tuple(reversed(listed)) == LAYERS  # the doc lists the top first


@pytest.mark.parametrize("prefix", LAYERS)
def test_each_layer_exists(prefix):
    assert any(m == prefix or m.startswith(prefix + ".") for m in MODULES)
