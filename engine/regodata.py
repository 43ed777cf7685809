"""Data API queries over a compiled Rego policy set: which documents live under ``data``.

OPA's Data API answers ``data.<path>`` for a rule, a package or plain data.
regorus evaluates a single rule reference faithfully but drops rule definitions
when asked for a whole package object, so a package is assembled here: the
bundles' data at the path, then each package's document rules (functions are
not part of a package's document), one query per rule.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
import regorus

from engine.errors import EngineError
from engine.opaquery import rego_ref
from engine.regoast import rule_names


class RegoQueryError(EngineError):
    """A data query regorus could not evaluate: a rule conflict, a builtin error."""

    code = "rego_eval_error"


def subtree(doc: dict[str, Any], keys: Sequence[str]) -> dict[str, Any]:
    """The object at ``keys`` below ``doc``, made (or replacing a non-object) on the way."""
    for key in keys:
        inner = doc.get(key)
        if not isinstance(inner, dict):
            inner = doc[key] = {}
        doc = inner
    return doc


@dataclass(frozen=True)
class DataTree:
    """What lives under ``data``: each package's document rules (functions excluded) and the
    bundles' merged data. Answers which query a data path needs."""

    rules: Mapping[tuple[str, ...], frozenset[str]]
    data: Mapping[str, Any]

    def below_rule(self, path: tuple[str, ...]) -> bool:
        """Whether ``path`` names a rule of some package, or lies inside one's value."""
        return any(
            len(path) > len(package)
            and path[: len(package)] == package
            and path[len(package)] in names
            for package, names in self.rules.items()
        )

    def packages_under(self, path: tuple[str, ...]) -> list[tuple[str, ...]]:
        """Packages at ``path`` or below it."""
        return sorted(p for p in self.rules if p[: len(path)] == path)

    def data_at(self, path: tuple[str, ...]) -> tuple[bool, Any]:
        """(found, value) of the bundles' data at ``path``."""
        node: Any = self.data
        for key in path:
            if not isinstance(node, Mapping) or key not in node:
                return False, None
            node = node[key]
        return True, node


def document_rules(module: dict[str, Any]) -> set[str]:
    """Names of a module's rules that are part of its package's document (not functions)."""
    names: set[str] = set()
    for rule in module.get("ast", {}).get("rules", []):
        spec = rule.get("Spec") if isinstance(rule, dict) else None
        head = spec.get("head") if isinstance(spec, dict) else None
        if isinstance(head, dict) and "Func" in head:
            continue
        names |= rule_names({"ast": {"rules": [rule]}})
    return names


def query_value(text: str) -> tuple[bool, Any]:
    """(defined, value) from regorus' answer to a one-reference query."""
    answer = msgspec.json.decode(text)
    results = answer.get("result") if isinstance(answer, dict) else None
    if not results:
        return False, None
    return True, results[0]["expressions"][0]["value"]


_UNDEFINED_JSON = '"<undefined>"'


def rule_value(engine: regorus.Engine, ref: str) -> tuple[bool, Any]:
    """(defined, value) of a rule reference, or of a reference into a rule's value.

    ``eval_rule`` (a third to a half cheaper than a query) when ``ref`` names a
    rule; a query otherwise (a path into a rule's value, a rule with a
    reference head), which regorus answers faithfully for one reference.
    """
    try:
        text = engine.eval_rule_as_json(ref)
    except RuntimeError as exc:
        if "not a valid rule path" not in str(exc):
            raise
        return query_value(engine.eval_query_as_json(ref))
    if text == _UNDEFINED_JSON and engine.eval_rule(ref) is None:
        return False, None
    return True, msgspec.json.decode(text)


def assemble(tree: DataTree, engine: regorus.Engine, path: tuple[str, ...]) -> tuple[bool, Any]:
    """The document at ``path`` (a package or a prefix of packages): its data, then each
    package's rules, one query per rule."""
    found, value = tree.data_at(path)
    packages = tree.packages_under(path)
    if not packages:
        return found, copy.deepcopy(value)
    doc: dict[str, Any] = copy.deepcopy(value) if isinstance(value, dict) else {}
    for package in packages:
        inner = subtree(doc, package[len(path) :])
        for rule in sorted(tree.rules[package]):
            defined, result = rule_value(engine, rego_ref((*package, rule)))
            if defined:
                inner[rule] = result
    return True, doc
