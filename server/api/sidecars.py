"""OPA sidecar registrations: `/sidecars` (tokens, allowlists, what each OPA reported)."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Controller, delete, get, post
from litestar.datastructures import State
from litestar.status_codes import HTTP_201_CREATED, HTTP_204_NO_CONTENT

from server.api.deps import services
from server.auth import Caller
from server.opa.keys import sidecar_keys
from server.opa.sidecars import SidecarService
from server.schemas import Body


class SidecarIn(Body):
    """`POST /sidecars`: a name, and optionally the only bundles the sidecar may download."""

    name: str
    bundles: list[str] = msgspec.field(default_factory=list)


def _sidecars(state: State) -> SidecarService:
    return SidecarService(services(state).policies)


class SidecarController(Controller):
    """`/sidecars`: OPA sidecars pulling the tenant's bundles and reporting back."""

    tags = ["sidecars"]

    @post(
        "/sidecars",
        summary="Register an OPA sidecar; its bearer token is shown once",
        status_code=HTTP_201_CREATED,
    )
    async def register(self, state: State, caller: Caller, data: SidecarIn) -> dict[str, Any]:
        caller.require("sidecars.write")
        return await _sidecars(state).register(caller, data.name, data.bundles)

    @get("/sidecars", summary="Registered sidecars and what each OPA instance last reported")
    async def list_sidecars(self, state: State, caller: Caller) -> dict[str, Any]:
        caller.require("sidecars.read")
        return await _sidecars(state).list(caller)

    @get(
        "/sidecars/keys",
        summary="Public keys and active bundles for a sidecar's OPA configuration",
    )
    async def keys(self, state: State, caller: Caller) -> dict[str, Any]:
        caller.require("sidecars.read")
        return await sidecar_keys(caller.tenant, services(state).policies)

    @get("/sidecars/{sidecar_id:str}", summary="One sidecar and its OPA instances")
    async def get_sidecar(self, state: State, caller: Caller, sidecar_id: str) -> dict[str, Any]:
        caller.require("sidecars.read")
        return await _sidecars(state).get(caller, sidecar_id)

    @delete(
        "/sidecars/{sidecar_id:str}",
        summary="Revoke a sidecar: its token is refused at once",
        status_code=HTTP_204_NO_CONTENT,
    )
    async def revoke(self, state: State, caller: Caller, sidecar_id: str) -> None:
        caller.require("sidecars.write")
        await _sidecars(state).revoke(caller, sidecar_id)
