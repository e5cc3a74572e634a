"""The OpenTelemetry semantic conventions as the installed ``opentelemetry-semantic-conventions``
package states them: metric names with their instrument and unit, attribute names, and which are
deprecated. Read from the package's source (each name is a ``Final`` constant followed by a
docstring), so the catalogue is checked against the conventions themselves, not a copy."""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path


@dataclass(frozen=True)
class SemconvMetric:
    name: str
    instrument: str
    unit: str
    deprecated: bool


def _deprecated(doc: str) -> bool:
    # "Moved to the GenAI conventions repository" and "in favor of stable ..." keep the name.
    doc = doc.strip()
    return doc.startswith("Deprecated") and "Moved to" not in doc and "favor of stable" not in doc


def _parse(folder: Path) -> tuple[dict[str, str], dict[str, tuple[str, str]]]:
    """``({value: docstring}`` of every ``NAME: Final = "value"`` constant, ``{value: (create
    method, unit)}`` of every ``create_*`` helper) over folder's modules."""
    docs: dict[str, str] = {}
    creates: dict[str, tuple[str, str]] = {}
    for path in sorted(folder.glob("*.py")):
        body = ast.parse(path.read_text()).body
        names: dict[str, str] = {}
        for stmt, nxt in zip(body, body[1:] + [None]):
            if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.value, ast.Constant):
                if not isinstance(stmt.value.value, str) or not isinstance(stmt.target, ast.Name):
                    continue
                names[stmt.target.id] = stmt.value.value
                doc = ""
                if isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant):
                    doc = str(nxt.value.value)
                docs.setdefault(stmt.value.value, doc)
        for node in ast.walk(ast.Module(body=body, type_ignores=[])):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            if not node.func.attr.startswith("create_"):
                continue
            kw = {k.arg: k.value for k in node.keywords}
            name, unit = kw.get("name"), kw.get("unit")
            if isinstance(name, ast.Name) and isinstance(unit, ast.Constant):
                creates[names.get(name.id, name.id)] = (node.func.attr, str(unit.value))
    return docs, creates


def _root() -> Path:
    import opentelemetry.semconv as semconv

    return Path(semconv.__file__).parent


_INSTRUMENTS = {
    "create_counter": "counter",
    "create_observable_counter": "counter",
    "create_up_down_counter": "updowncounter",
    "create_observable_up_down_counter": "updowncounter",
    "create_gauge": "gauge",
    "create_observable_gauge": "gauge",
    "create_histogram": "histogram",
}


@cache
def metrics() -> dict[str, SemconvMetric]:
    root = _root()
    out: dict[str, SemconvMetric] = {}
    for folder in (root / "_incubating" / "metrics", root / "metrics"):
        docs, creates = _parse(folder)
        for name, (method, unit) in creates.items():
            out.setdefault(
                name,
                SemconvMetric(name, _INSTRUMENTS[method], unit, _deprecated(docs.get(name, ""))),
            )
    return out


@cache
def attributes() -> dict[str, bool]:
    """``{attribute name: deprecated}``."""
    root = _root()
    out: dict[str, bool] = {}
    for folder in (root / "_incubating" / "attributes", root / "attributes"):
        for name, doc in _parse(folder)[0].items():
            if re.fullmatch(r"[a-z][a-z0-9_.]*", name) and "." in name:
                out.setdefault(name, _deprecated(doc))
    return out
