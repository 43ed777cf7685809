"""A sidecar's bundle as OPA's bundle service API serves it.

``GET /bundles/{name}`` answers the stored signed archive of the tenant's active revision
of ``name`` (the tenant's own, else the global one) with a strong ``ETag`` (the archive's
sha256). A matching ``If-None-Match`` is 304 without a body. When OPA asks for long polling
(``Prefer: wait=N``, sent when its bundle config sets ``long_polling_timeout_seconds``) and
already has the current revision, the answer waits until another revision is activated or
the wait is over (then 304). While waiting only the revision's ETag is compared (kept per
bundle row, apart from the archive cache); the archive is loaded only to answer 200. The
sidecar's token is checked again on every look, so a token revoked mid-poll gets 401, not
a new bundle. At most ``MAX_POLLS_PER_SIDECAR`` requests of one sidecar wait at once; past
that the answer comes at once (304 when unchanged).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from server.db.tables import Bundle
from server.errors import NotFoundError, UnauthorizedError
from server.opa.sidecars import SidecarAuth, is_live
from server.policies import PolicyService

CONTENT_TYPE = "application/vnd.openpolicyagent.bundles"
#: Longest a long-poll request is held, whatever OPA asks, and how often it looks.
MAX_WAIT_SECONDS = 60.0
POLL_SECONDS = 0.5
MAX_POLLS_PER_SIDECAR = 4
_CACHED_ARCHIVES = 64
_CACHED_ETAGS = 4096
_WAIT = re.compile(r"(?:^|[;,\s])wait=(\d+)")


@dataclass(frozen=True, slots=True)
class Served:
    """One active revision as OPA downloads it."""

    name: str
    revision: str
    etag: str
    archive: bytes


def etag_matches(header: str, etag: str) -> bool:
    """Whether an ``If-None-Match`` header names ``etag`` (weak comparison, as HTTP says)."""
    for part in header.split(","):
        tag = part.strip().removeprefix("W/")
        if tag in ("*", etag):
            return True
    return False


def long_poll_wait(prefer: str) -> float:
    """Seconds OPA asks the request to be held (``Prefer: modes=...;wait=N``); 0: none."""
    found = _WAIT.search(prefer)
    return min(float(found.group(1)), MAX_WAIT_SECONDS) if found else 0.0


def _etag_of(archive: bytes) -> str:
    return f'"{hashlib.sha256(archive).hexdigest()}"'


class BundleServer:
    """Finds and caches the archives sidecars download (rows never change once stored)."""

    def __init__(self, policies: PolicyService) -> None:
        self._policies = policies
        self._archives: OrderedDict[str, bytes] = OrderedDict()
        self._etags: OrderedDict[str, str] = OrderedDict()
        self._polls: dict[str, int] = {}

    async def _archive(self, row_id: str) -> bytes:
        found = self._archives.get(row_id)
        if found is None:
            row = await Bundle.select(Bundle.archive).where(Bundle.id == row_id).first()
            if row is None:
                raise NotFoundError("the bundle revision vanished; retry")
            found = base64.b64decode(row["archive"])
            self._remember(self._etags, row_id, _etag_of(found), _CACHED_ETAGS)
        self._remember(self._archives, row_id, found, _CACHED_ARCHIVES)
        return found

    @staticmethod
    def _remember(cache: OrderedDict[str, Any], key: str, value: Any, size: int) -> None:
        cache[key] = value
        cache.move_to_end(key)
        if len(cache) > size:
            cache.popitem(last=False)

    async def _etag(self, row_id: str) -> str:
        """The ETag of a bundle row, from the ETag map (the archive is read only once)."""
        found = self._etags.get(row_id)
        if found is None:
            found = _etag_of(await self._archive(row_id))
        self._remember(self._etags, row_id, found, _CACHED_ETAGS)
        return found

    async def _row(self, sidecar: SidecarAuth, name: str) -> dict[str, Any]:
        if sidecar.may_fetch(name):
            for row in await self._policies.active_rows(sidecar.tenant):
                if row["name"] == name:
                    return dict(row)
        raise NotFoundError(f"no active bundle `{name}` for this sidecar")

    async def current(self, sidecar: SidecarAuth, name: str) -> Served:
        """The active revision of ``name`` for this sidecar; 404 unknown or not allowed."""
        row = await self._row(sidecar, name)
        archive = await self._archive(row["id"])
        return Served(name, row["revision"], await self._etag(row["id"]), archive)

    async def fetch(
        self, sidecar: SidecarAuth, name: str, if_none_match: str, wait: float
    ) -> tuple[Served, bool]:
        """The current revision, and whether to send it (False: OPA has it already, 304).

        With ``wait`` (long polling), an unchanged revision is looked for again every
        ``POLL_SECONDS`` until it changes or ``wait`` seconds are over; a revoked token
        is 401 at the next look. Unchanged, ``Served.archive`` is empty.
        """
        if self._polls.get(sidecar.id, 0) >= MAX_POLLS_PER_SIDECAR:
            wait = 0.0
        deadline = time.monotonic() + wait
        self._polls[sidecar.id] = self._polls.get(sidecar.id, 0) + 1
        try:
            while True:
                row = await self._row(sidecar, name)
                etag = await self._etag(row["id"])
                if not if_none_match or not etag_matches(if_none_match, etag):
                    return await self.current(sidecar, name), True
                if time.monotonic() + POLL_SECONDS > deadline:
                    return Served(name, row["revision"], etag, b""), False
                await asyncio.sleep(POLL_SECONDS)
                if not await is_live(sidecar):
                    raise UnauthorizedError("unknown or revoked sidecar token")
        finally:
            left = self._polls[sidecar.id] - 1
            if left:
                self._polls[sidecar.id] = left
            else:
                del self._polls[sidecar.id]
