"""Secrets never reach a response, a log line or a decision record."""

from __future__ import annotations

import re
from typing import Any

MASK = "***"
_SECRET_KEY = re.compile(
    r"(secret|token|password|passwd|api[_-]?key|private[_-]?key|credential"
    # HTTP credentials, as Envoy- and gateway-style OPA inputs carry them in headers.
    r"|authorization|cookie|session|bearer|jwt)",
    re.I,
)


def mask(value: Any, secret_fields: frozenset[str] = frozenset()) -> Any:
    """``value`` with every secret-looking or declared-secret field replaced by ``***``."""
    if isinstance(value, dict):
        return {
            k: MASK
            if (k in secret_fields or _SECRET_KEY.search(str(k))) and v not in (None, "")
            else mask(v, secret_fields)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [mask(v, secret_fields) for v in value]
    return value
