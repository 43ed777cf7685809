"""LatentBox tool discovery (behind ``AION_LATENTBOX_ENABLED``): list and rank tools.

Ranking: a tool that serves the scenario scores 2, one that has the capability
scores 1; tools that match neither are left out; ties keep catalog order.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


class LatentBox:
    """The tool catalog in ``tools.yaml``."""

    def __init__(self, source: Path = Path(__file__).parent / "tools.yaml") -> None:
        self.tools: list[dict[str, Any]] = yaml.safe_load(source.read_text())["tools"]

    def search(self, scenario: str | None, capability: str | None) -> list[dict[str, Any]]:
        """Tools ranked for a scenario and/or capability, best first, with their score."""
        scored = []
        for position, tool in enumerate(self.tools):
            score = 2 * (scenario in tool["scenarios"]) + (capability in tool["capabilities"])
            if score:
                scored.append((-score, position, {**tool, "score": score}))
        return [tool for *_, tool in sorted(scored, key=lambda item: (item[0], item[1]))]
