"""What one engine answers for one request, before combination, and how a Rego
deny/warn value (in process or from OPA) becomes its reasons."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from engine.model import EvalError, Reason


@dataclass(slots=True)
class EngineVerdict:
    """One engine's raw answer. ``allowed`` is meaningful only when it participated."""

    engine: str
    participated: bool
    denies: list[Reason] = field(default_factory=list)
    warns: list[Reason] = field(default_factory=list)
    obligations: list[dict[str, Any]] = field(default_factory=list)
    errors: list[EvalError] = field(default_factory=list)
    permitted: bool = True
    duration_us: float = 0.0

    @property
    def allowed(self) -> bool:
        """Allowed when it permitted, nothing denied and nothing went wrong."""
        return self.participated and self.permitted and not self.denies and not self.errors


def clean_engine_message(text: str) -> str:
    """An engine error without its native stack trace, on as few lines as it needs."""
    head = text.split("Stack backtrace:", 1)[0]
    return " ".join(line.strip() for line in head.strip().splitlines() if line.strip())


def reasons_of(value: Any, engine: str, policy: str, bundle: str) -> list[Reason]:
    """Reasons from a deny/warn value: a set or list of strings or objects, or `true`."""
    if value is None or value is False:
        return []
    if value is True:
        return [Reason(engine, policy, f"denied by `{policy}`", bundle)]
    items = sorted(value, key=str) if isinstance(value, set | frozenset) else value
    if not isinstance(items, list):
        items = [items]
    out: list[Reason] = []
    for item in items:
        if isinstance(item, dict):
            details = {k: v for k, v in item.items() if k not in ("msg", "message", "id")}
            message = str(item.get("msg", item.get("message", json.dumps(item, default=str))))
            rule = str(item.get("id", policy))
            out.append(Reason(engine, rule, message, bundle, jsonable(details)))
        else:
            out.append(Reason(engine, policy, str(item), bundle))
    return out


def jsonable(value: Any) -> Any:
    """``value`` with sets as sorted lists and keys as strings (JSON-ready, deterministic)."""
    if isinstance(value, set | frozenset):
        return sorted((jsonable(v) for v in value), key=str)
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [jsonable(v) for v in value]
    return value
