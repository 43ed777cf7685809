"""Bundles and keys."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get, post
from litestar.datastructures import State
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED

from engine import compile_bundles
from server.api.agents import trace_id
from server.api.deps import services
from server.auth import Caller
from server.bundles import BundleService
from server.errors import InvalidInputError
from server.idempotency import UPLOAD_LIMIT
from server.impact import replay
from server.schemas import ImpactIn, KeyIn, RevisionIn


def _bundles(state: State) -> BundleService:
    svc = services(state)
    return BundleService(svc.gate, svc.policies)


class BundleController(Controller):
    """`/bundles` and `/keys`."""

    tags = ["bundles"]

    @post("/keys", summary="Trust a public key for bundle signatures", status_code=HTTP_201_CREATED)
    async def add_key(self, state: State, caller: Caller, data: KeyIn) -> dict[str, Any]:
        caller.require("bundles.write")
        return await _bundles(state).add_key(caller, data.key_id, data.algorithm, data.public_key)

    @get("/keys", summary="The tenant's trusted keys")
    async def list_keys(self, state: State, caller: Caller) -> dict[str, Any]:
        caller.require("bundles.read")
        return await _bundles(state).keys(caller)

    @post(
        "/bundles",
        summary="Upload a signed bundle (.tar.gz body)",
        status_code=HTTP_201_CREATED,
        request_max_body_size=UPLOAD_LIMIT,
    )
    async def upload(
        self, state: State, caller: Caller, request: Request[Any, Any, Any]
    ) -> dict[str, Any]:
        caller.require("bundles.write")
        body = await request.body()
        if not body:
            raise InvalidInputError("send the signed bundle archive as the request body")
        return await _bundles(state).upload(caller, body)

    @get("/bundles", summary="Stored bundle revisions")
    async def list_bundles(self, state: State, caller: Caller) -> dict[str, Any]:
        caller.require("bundles.read")
        return await _bundles(state).list_all(caller)

    @get("/bundles/{name:str}", summary="The revisions of one bundle")
    async def get_bundle(self, state: State, caller: Caller, name: str) -> dict[str, Any]:
        caller.require("bundles.read")
        return await _bundles(state).get(caller, name)

    @post(
        "/bundles/{name:str}/activate",
        summary="Activate a stored revision (gated: bundle.activate)",
        status_code=HTTP_200_OK,
    )
    async def activate(
        self,
        state: State,
        caller: Caller,
        name: str,
        data: RevisionIn,
        request: Request[Any, Any, Any],
    ) -> dict[str, Any]:
        caller.require("bundles.write")
        return await _bundles(state).activate(caller, name, data.revision, trace_id(request))

    @post(
        "/bundles/{name:str}/shadow",
        summary="Evaluate a revision beside the active one, without effect",
        status_code=HTTP_200_OK,
    )
    async def shadow(
        self,
        state: State,
        caller: Caller,
        name: str,
        data: RevisionIn,
        request: Request[Any, Any, Any],
    ) -> dict[str, Any]:
        caller.require("bundles.write")
        return await _bundles(state).activate(
            caller, name, data.revision, trace_id(request), shadow=True
        )

    @post(
        "/bundles/{name:str}/impact",
        summary="Decisions that would flip if a revision were activated",
        status_code=HTTP_200_OK,
    )
    async def impact(
        self, state: State, caller: Caller, name: str, data: ImpactIn
    ) -> dict[str, Any]:
        caller.require("bundles.write")
        if not 1 <= data.limit <= 10_000:
            raise InvalidInputError("`limit` is 1 to 10000")
        candidate = compile_bundles(await _bundles(state).candidate(caller, name, data.revision))
        svc = services(state)
        return await replay(
            svc.log, caller, candidate, data.limit, svc.settings.decision_time_limit_ms * 1000
        )
