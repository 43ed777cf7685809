"""The port to an OPA sidecar's Data API, and its in-memory twin.

:class:`OpaQuerier` is what :class:`~engine.opa_remote.RemoteRegoEvaluator`
calls; :mod:`engine.opa_client_aiohttp` is the real implementation (HTTP, not
imported by ``import engine``) and :class:`InMemoryOpa` the twin for tests.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol


class OpaUnreachable(Exception):
    """The sidecar could not be reached (refused, reset, name not resolved ...)."""


class OpaBadAnswer(Exception):
    """The sidecar answered 200 with a body that is not a JSON object."""


@dataclass(frozen=True, slots=True)
class OpaAnswer:
    """One answer of OPA's Data API (``POST /v1/data/<path>``)."""

    status: int
    """HTTP status; only 200 carries a result."""
    defined: bool = False
    """Whether the body had a ``result`` (OPA omits it for an undefined document)."""
    result: Any = None
    revisions: dict[str, str] | None = None
    """Bundle name → revision from ``provenance.bundles``; None without provenance."""
    detail: str = ""
    """What a failed answer said (a snippet of its body), for the error message."""


class OpaQuerier(Protocol):
    """The port to an OPA sidecar's Data API."""

    async def query(self, path: str, input: dict[str, Any], *, timeout_s: float) -> OpaAnswer:
        """``POST /v1/data/<path>?provenance=true`` with ``{"input": input}``.

        Raises :class:`OpaUnreachable`, :class:`TimeoutError` or
        :class:`OpaBadAnswer`; every other status comes back as an answer.
        """
        ...

    async def aclose(self) -> None:
        """Release connections (the querier may be used again afterwards)."""
        ...


def answer_from_body(status: int, body: Any) -> OpaAnswer:
    """An :class:`OpaAnswer` from a decoded Data API body; :class:`OpaBadAnswer` if malformed."""
    if status != 200:
        return OpaAnswer(status, detail=str(body)[:300])
    if not isinstance(body, dict):
        raise OpaBadAnswer(f"the body is a {type(body).__name__}, not a JSON object")
    revisions: dict[str, str] | None = None
    provenance = body.get("provenance")
    if isinstance(provenance, dict):
        bundles = provenance.get("bundles")
        revisions = {}
        if isinstance(bundles, dict):
            for name, info in bundles.items():
                if isinstance(info, dict):
                    revisions[str(name)] = str(info.get("revision", ""))
    return OpaAnswer(200, "result" in body, body.get("result"), revisions)


Responder = Callable[[str, dict[str, Any]], OpaAnswer | BaseException | Any]


@dataclass
class InMemoryOpa:
    """An in-memory sidecar: answers from ``documents`` (path → result) or ``responder``.

    A path missing from ``documents`` is undefined. ``responder(path, input)``
    wins when set and may return an :class:`OpaAnswer`, an exception to raise
    or a plain result. ``revisions`` is what ``provenance.bundles`` reports.
    ``hang`` never answers (the caller's timeout must fire). Every query is
    appended to ``queries``.
    """

    documents: dict[str, Any] = field(default_factory=dict)
    revisions: dict[str, str] | None = field(default_factory=dict)
    responder: Responder | None = None
    hang: bool = False
    queries: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    closed: int = 0

    async def query(self, path: str, input: dict[str, Any], *, timeout_s: float) -> OpaAnswer:
        """Answer like OPA would, or fail the way it was told to."""
        self.queries.append((path, input))
        if self.hang:
            await asyncio.Event().wait()
        if self.responder is not None:
            given = self.responder(path, input)
            if isinstance(given, BaseException):
                raise given
            if isinstance(given, OpaAnswer):
                return given
            return OpaAnswer(200, True, given, self.revisions)
        if path in self.documents:
            return OpaAnswer(200, True, self.documents[path], self.revisions)
        return OpaAnswer(200, False, None, self.revisions)

    async def aclose(self) -> None:
        """Count the closes (nothing to release)."""
        self.closed += 1
