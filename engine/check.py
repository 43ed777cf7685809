"""Conftest-style checks: ``deny``/``violation``/``warn`` rules against documents.

A document (an agent spec, a deployment manifest) is the ``input``. Rules
named ``deny``, ``deny_*``, ``violation`` or ``violation_*`` fail it; ``warn``
and ``warn_*`` warn. Messages are strings or objects with ``msg``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import regorus

from engine.bundle.bundle import Bundle
from engine.policyset import merge_data
from engine.rego import DEFAULT_REGO_OPTIONS, RegoOptions, eval_json, new_engine
from engine.regoast import package_of, rule_names
from engine.verdict import clean_engine_message


@dataclass
class CheckResult:
    """What the rules of one namespace said about one document."""

    filename: str
    namespace: str
    successes: int = 0
    failures: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    exceptions: list[str] = field(default_factory=list)


def _kind(rule: str) -> str | None:
    for prefix, kind in (("deny", "failure"), ("violation", "failure"), ("warn", "warning")):
        if rule == prefix or rule.startswith(prefix + "_"):
            return kind
    return None


def _messages(value: Any) -> list[str]:
    if value is None or value is False:
        return []
    if value is True:
        return ["rule evaluated to true"]
    items = sorted(value, key=str) if isinstance(value, set | frozenset) else value
    if not isinstance(items, list):
        items = [items]
    return [
        str(i.get("msg", json.dumps(i, default=str))) if isinstance(i, dict) else str(i)
        for i in items
    ]


class Checker:
    """Rules of some bundles, compiled once, checked against many documents."""

    def __init__(
        self, bundles: Sequence[Bundle], options: RegoOptions = DEFAULT_REGO_OPTIONS
    ) -> None:
        data: dict[str, Any] = {}
        for b in bundles:
            merge_data(data, b.data, b.name)
        engine, ast = new_engine([m for b in bundles for m in b.rego], data, options)
        self._engine: regorus.Engine = engine
        self.rules: dict[str, list[tuple[str, str]]] = {}
        for module in ast:
            package = package_of(module)
            for rule in sorted(rule_names(module)):
                kind = _kind(rule)
                if kind:
                    self.rules.setdefault(package, []).append((rule, kind))

    def check(self, filename: str, document: Any, namespaces: Sequence[str]) -> list[CheckResult]:
        """Evaluate every rule of ``namespaces`` against ``document``."""
        self._engine.set_input(document)
        results = []
        for namespace in namespaces:
            result = CheckResult(filename, namespace)
            for rule, kind in self.rules.get(namespace, []):
                try:
                    messages = _messages(eval_json(self._engine, f"data.{namespace}.{rule}"))
                except (RuntimeError, ValueError, TypeError) as exc:
                    result.exceptions.append(clean_engine_message(str(exc)))
                    continue
                target = result.failures if kind == "failure" else result.warnings
                target += messages
                result.successes += 0 if messages else 1
            results.append(result)
        return results
