"""OPA's service API at the server's root, for sidecars: ``GET /bundles/{name}``,
``POST /logs``, ``POST /status``.

An OPA configured with this server's base URL as a service (and a sidecar token as its
bearer credential) downloads its tenant's signed bundles here, uploads its decision log
and reports its status. Not in the OpenAPI schema: OPA, not an API client, speaks it
(docs/opa.md documents it).
"""

from __future__ import annotations

import asyncio
from typing import Any

from litestar import Controller, Request, Response, get, post
from litestar.datastructures import State
from litestar.status_codes import HTTP_204_NO_CONTENT, HTTP_304_NOT_MODIFIED

from server.api.deps import services
from server.logs import bind_tenant
from server.opa.ingest import ingest
from server.opa.serve import CONTENT_TYPE, BundleServer, long_poll_wait
from server.opa.sidecars import SidecarAuth, SidecarService
from server.opa.status import read_status

_STATE_KEY = "opa_bundle_server"
_SLOTS_KEY = "opa_ingest_slots"
#: Uploads (decision logs, status) decoded at once per process, each in a worker thread;
#: more wait their turn (OPA's upload is a background task: a short wait costs it nothing).
INGEST_SLOTS = 2


async def _sidecar(request: Request[Any, Any, Any], state: State) -> SidecarAuth:
    """The sidecar of this request (401 otherwise), after its tenant's rate limit."""
    svc = services(state)
    sidecar = await SidecarService(svc.policies).authenticate(
        request.headers.get("authorization", "")
    )
    bind_tenant(sidecar.tenant)
    limits = await svc.tenants.limits(sidecar.tenant)
    await svc.limiter.check(
        sidecar.tenant, limits.get("rate_limit_per_minute"), limits.get("rate_limit_burst")
    )
    return sidecar


def _bundle_server(state: State) -> BundleServer:
    """The app's bundle server (it caches archives), made on first use."""
    found = state.get(_STATE_KEY)
    if not isinstance(found, BundleServer):
        found = BundleServer(services(state).policies)
        state[_STATE_KEY] = found
    return found


def _slots(state: State) -> asyncio.Semaphore:
    """The app's bound on uploads decoded at once, made on first use."""
    found = state.get(_SLOTS_KEY)
    if not isinstance(found, asyncio.Semaphore):
        found = asyncio.Semaphore(INGEST_SLOTS)
        state[_SLOTS_KEY] = found
    return found


class OpaServiceController(Controller):
    """The bundle, decision-log and status endpoints OPA's plugins call."""

    include_in_schema = False

    @get("/bundles/{name:str}")
    async def bundle(
        self, state: State, request: Request[Any, Any, Any], name: str
    ) -> Response[bytes]:
        """The active signed revision of ``name`` (also as ``{name}.tar.gz``); 304 if unchanged."""
        sidecar = await _sidecar(request, state)
        name = name.removesuffix(".tar.gz")
        served, changed = await _bundle_server(state).fetch(
            sidecar,
            name,
            request.headers.get("if-none-match", ""),
            long_poll_wait(request.headers.get("prefer", "")),
        )
        if not changed:
            return Response(b"", status_code=HTTP_304_NOT_MODIFIED, headers={"ETag": served.etag})
        return Response(
            served.archive,
            media_type=CONTENT_TYPE,
            headers={"ETag": served.etag, "Cache-Control": "no-cache"},
        )

    @post("/logs", status_code=HTTP_204_NO_CONTENT)
    async def logs(self, state: State, request: Request[Any, Any, Any]) -> None:
        """A decision-log upload (a gzipped JSON array of events): all stored or none (400)."""
        sidecar = await _sidecar(request, state)
        svc = services(state)
        await ingest(svc.log, svc.gate, sidecar, await request.body(), _slots(state))

    @post("/status", status_code=HTTP_204_NO_CONTENT)
    async def status(self, state: State, request: Request[Any, Any, Any]) -> None:
        """A status report: the instance's active revisions, errors and plugin states."""
        sidecar = await _sidecar(request, state)
        body, encoding = await request.body(), request.headers.get("content-encoding", "")
        async with _slots(state):
            instance, version, report = await asyncio.to_thread(read_status, body, encoding)
        await SidecarService(services(state).policies).record_status(
            sidecar, instance, version, report
        )
