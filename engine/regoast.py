"""Reading the regorus AST: rule names per package, and references to builtins.

The AST comes from ``regorus.Engine.get_ast_as_json`` as nested tagged
objects (``{"Var": {...}}``, ``{"RefDot": {...}}``); this module walks it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class BuiltinUse:
    """A reference to a dotted name (call, `with` target or value) at a location."""

    name: str
    file: str
    line: int
    col: int


def _dotted(node: Any) -> str | None:
    """``a.b.c`` for a chain of RefDot nodes ending in a Var, else None."""
    if not isinstance(node, dict) or len(node) != 1:
        return None
    ((tag, body),) = node.items()
    if tag == "Var" and isinstance(body, dict):
        value = body.get("value")
        return value if isinstance(value, str) else None
    if tag == "RefDot" and isinstance(body, dict):
        base = _dotted(body.get("refr"))
        field = body.get("field")
        if base is None or not isinstance(field, list) or len(field) != 2:
            return None
        return f"{base}.{field[1]}"
    return None


def _span(node: dict[str, Any]) -> tuple[int, int]:
    ((_, body),) = node.items()
    span = body.get("span", {}) if isinstance(body, dict) else {}
    return int(span.get("line", 0)), int(span.get("col", 0))


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def builtin_uses(modules: list[dict[str, Any]], names: frozenset[str]) -> list[BuiltinUse]:
    """Every place where one of ``names`` is referenced, in calls and under `with`."""
    found: list[BuiltinUse] = []
    for module in modules:
        file = module.get("source", {}).get("file", "?")
        for node in _walk(module.get("ast", {})):
            if len(node) == 1 and "RefDot" in node:
                name = _dotted(node)
                if name in names:
                    line, col = _span(node)
                    found.append(BuiltinUse(name, file, line, col))
    return found


def _head_name(head: Any) -> str | None:
    if not isinstance(head, dict) or len(head) != 1:
        return None
    ((_, body),) = head.items()
    node = body.get("refr") if isinstance(body, dict) else None
    while isinstance(node, dict) and len(node) == 1:
        ((tag, inner),) = node.items()
        if tag == "Var":
            value = inner.get("value")
            return value if isinstance(value, str) else None
        node = inner.get("refr") if isinstance(inner, dict) else None
    return None


def package_of(module: dict[str, Any]) -> str:
    """The package of one module as ``a.b.c`` (string segments only)."""
    refr = module.get("ast", {}).get("package", {}).get("refr")
    name = _dotted(refr)
    return name or ""


def rule_names(module: dict[str, Any]) -> set[str]:
    """The first segment of every rule head in one module."""
    names: set[str] = set()
    for rule in module.get("ast", {}).get("rules", []):
        if not isinstance(rule, dict) or len(rule) != 1:
            continue
        ((tag, body),) = rule.items()
        if tag == "Spec":
            name = _head_name(body.get("head"))
        elif tag == "Default":
            name = _head_name({"Default": {"refr": body.get("refr")}})
        else:
            name = None
        if name:
            names.add(name)
    return names


def coverable_lines(module: dict[str, Any]) -> set[int]:
    """Lines regorus reports coverage for: every statement of every rule body.

    A rule without a body counts by its own line. Used for files that no test
    reached at all, which regorus leaves out of its coverage report.
    """
    lines: set[int] = set()
    for rule in module.get("ast", {}).get("rules", []):
        found = {
            int(stmt["span"]["line"])
            for node in _walk(rule)
            for stmt in (node.get("stmts") or [] if isinstance(node.get("stmts"), list) else [])
            if isinstance(stmt, dict) and "span" in stmt
        }
        if not found and isinstance(rule, dict) and len(rule) == 1:
            ((_, body),) = rule.items()
            span = body.get("span", {}) if isinstance(body, dict) else {}
            if "line" in span:
                found = {int(span["line"])}
        lines |= found
    return lines
