"""A sidecar's bundle as OPA's bundle service API serves it.

``GET /bundles/{name}`` answers the stored signed archive of the tenant's active revision
of ``name`` (the tenant's own, else the global one) with a strong ``ETag`` (the archive's
sha256). A matching ``If-None-Match`` is 304 without a body. When OPA asks for long polling
(``Prefer: wait=N``, sent when its bundle config sets ``long_polling_timeout_seconds``) and
already has the current revision, the answer waits until another revision is activated or
the wait is over (then 304).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
import time
from collections import OrderedDict
from dataclasses import dataclass

from server.db.tables import Bundle
from server.errors import NotFoundError
from server.opa.sidecars import SidecarAuth
from server.policies import PolicyService

CONTENT_TYPE = "application/vnd.openpolicyagent.bundles"
#: Longest a long-poll request is held, whatever OPA asks, and how often it looks.
MAX_WAIT_SECONDS = 60.0
POLL_SECONDS = 0.5
_CACHED_ARCHIVES = 64
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


class BundleServer:
    """Finds and caches the archives sidecars download (rows never change once stored)."""

    def __init__(self, policies: PolicyService) -> None:
        self._policies = policies
        self._archives: OrderedDict[str, tuple[bytes, str]] = OrderedDict()

    async def _archive(self, row_id: str) -> tuple[bytes, str]:
        found = self._archives.get(row_id)
        if found is None:
            row = await Bundle.select(Bundle.archive).where(Bundle.id == row_id).first()
            if row is None:
                raise NotFoundError("the bundle revision vanished; retry")
            archive = base64.b64decode(row["archive"])
            found = (archive, f'"{hashlib.sha256(archive).hexdigest()}"')
            self._archives[row_id] = found
            if len(self._archives) > _CACHED_ARCHIVES:
                self._archives.popitem(last=False)
        return found

    async def current(self, sidecar: SidecarAuth, name: str) -> Served:
        """The active revision of ``name`` for this sidecar; 404 unknown or not allowed."""
        if sidecar.may_fetch(name):
            for row in await self._policies.active_rows(sidecar.tenant):
                if row["name"] == name:
                    archive, etag = await self._archive(row["id"])
                    return Served(name, row["revision"], etag, archive)
        raise NotFoundError(f"no active bundle `{name}` for this sidecar")

    async def fetch(
        self, sidecar: SidecarAuth, name: str, if_none_match: str, wait: float
    ) -> tuple[Served, bool]:
        """The current revision, and whether to send it (False: OPA has it already, 304).

        With ``wait`` (long polling), an unchanged revision is looked for again every
        ``POLL_SECONDS`` until it changes or ``wait`` seconds are over.
        """
        deadline = time.monotonic() + wait
        while True:
            served = await self.current(sidecar, name)
            if not if_none_match or not etag_matches(if_none_match, served.etag):
                return served, True
            if time.monotonic() + POLL_SECONDS > deadline:
                return served, False
            await asyncio.sleep(POLL_SECONDS)
