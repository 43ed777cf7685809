"""OPA's Data API vocabulary, pure: data paths and what a query's result decided.

Shared by the Data API we answer (``POST /v1/data/{path}``), the decision logs
we ingest from OPA sidecars and the remote evaluator. A data path is a plain
reference: slash-separated segments, each a Rego identifier. Anything else
(brackets, dots, quotes, spaces, operators: the query injection of
CVE-2025-46569) is refused, never spliced into a query.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from engine.bundle.manifest import path_within
from engine.errors import InvalidInput

_SEGMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
MAX_PATH_SEGMENTS = 32
MAX_PATH_CHARS = 512

#: Rego keywords: never a package or rule name, and not a reference segment either.
KEYWORDS = frozenset(
    [
        "as",
        "contains",
        "default",
        "else",
        "every",
        "false",
        "if",
        "import",
        "in",
        "not",
        "null",
        "package",
        "some",
        "true",
        "with",
    ]
)

#: Rule names whose value is a set of denial messages (empty: allowed).
DENY_RULES = frozenset({"deny", "violation", "violations"})


def parse_data_path(path: str) -> tuple[str, ...]:
    """The segments of ``path`` (``aion/agent/deploy/deny``); :class:`InvalidInput` unless plain.

    One leading and one trailing slash are tolerated, as OPA does. An empty
    path (the whole data document) is refused: a client names what it asks.
    """
    if len(path) > MAX_PATH_CHARS:
        raise InvalidInput(f"a data path has at most {MAX_PATH_CHARS} characters")
    trimmed = path.removeprefix("/").removesuffix("/")
    if not trimmed:
        raise InvalidInput("a data path names a package or rule, for example `aion/agent/deploy`")
    segments = tuple(trimmed.split("/"))
    if len(segments) > MAX_PATH_SEGMENTS:
        raise InvalidInput(f"a data path has at most {MAX_PATH_SEGMENTS} segments")
    for segment in segments:
        if not _SEGMENT.fullmatch(segment) or segment in KEYWORDS:
            shown = segment if len(segment) <= 40 else segment[:40] + "…"
            raise InvalidInput(
                f"data path segment `{shown}` is not a plain reference: each segment is a Rego "
                "identifier (letters, digits, `_`; not starting with a digit; not a keyword)"
            )
    return segments


def path_in_roots(segments: Sequence[str], roots: Iterable[str]) -> bool:
    """Whether the path lies inside one of ``roots`` (an empty root owns everything)."""
    joined = "/".join(segments)
    return any(path_within(joined, root) for root in roots)


def rego_ref(segments: Sequence[str]) -> str:
    """``data.a.b.c`` for validated segments."""
    return ".".join(("data", *segments))


@dataclass(frozen=True, slots=True)
class Interpreted:
    """What a Data API result means for the decision log."""

    allowed: bool
    outcome: str
    """``allow`` or ``deny`` when the result is a decision; ``recorded`` when it is data
    that decides nothing (a lookup), which is logged but neither allows nor denies."""


def _denials(value: Any) -> bool | None:
    if isinstance(value, list | tuple | set | frozenset):
        return len(value) == 0
    return None


def interpret_result(segments: Sequence[str], result: Any, *, defined: bool) -> Interpreted:
    """Read an allow/deny out of a query result, the conventions OPA users follow.

    - undefined (no ``result``): deny, fail closed;
    - a boolean (``allow``): that boolean;
    - a set under a ``deny``/``violation`` rule: allowed when empty;
    - an object (a package): ``deny``/``violation`` sets must be empty, and an ``allow``
      or ``allowed`` boolean, when present, must be true; our own decision shape
      (``{"allowed": ...}``) reads the same way;
    - anything else decides nothing: ``recorded``.
    """
    if not defined:
        return Interpreted(False, "deny")
    if isinstance(result, bool):
        return Interpreted(result, "allow" if result else "deny")
    if segments and segments[-1] in DENY_RULES:
        empty = _denials(result)
        if empty is not None:
            return Interpreted(empty, "allow" if empty else "deny")
    if isinstance(result, dict):
        verdicts: list[bool] = []
        for name in DENY_RULES:
            if name in result:
                empty = _denials(result[name])
                verdicts.append(bool(empty))
        for name in ("allow", "allowed"):
            if isinstance(result.get(name), bool):
                verdicts.append(result[name])
        if verdicts:
            allowed = all(verdicts)
            return Interpreted(allowed, "allow" if allowed else "deny")
    return Interpreted(False, "recorded")
