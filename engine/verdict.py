"""What one engine answers for one request, before combination."""

from __future__ import annotations

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
