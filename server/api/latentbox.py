"""LatentBox tool discovery (feature flag ``AION_LATENTBOX_ENABLED``)."""

from __future__ import annotations

from typing import Any

from litestar import Controller, get
from litestar.datastructures import State

from server.api.deps import services
from server.auth import Caller
from server.errors import InvalidInputError, NotFoundError
from server.latentbox import LatentBox

_CATALOG = LatentBox()


def _enabled(state: State) -> LatentBox:
    if not services(state).settings.latentbox_enabled:
        raise NotFoundError(
            "LatentBox discovery is not enabled on this server (AION_LATENTBOX_ENABLED)"
        )
    return _CATALOG


class LatentBoxController(Controller):
    """`/latentbox/tools`."""

    path = "/latentbox/tools"
    tags = ["latentbox"]

    @get("/", summary="LatentBox tools")
    async def list_tools(self, state: State, caller: Caller) -> dict[str, Any]:
        caller.require("tools.read")
        return {"items": _enabled(state).tools}

    @get("/search", summary="LatentBox tools ranked for a scenario and capability")
    async def search(
        self,
        state: State,
        caller: Caller,
        scenario: str | None = None,
        capability: str | None = None,
    ) -> dict[str, Any]:
        caller.require("tools.read")
        catalog = _enabled(state)
        if not scenario and not capability:
            raise InvalidInputError("give `scenario`, `capability` or both")
        return {"items": catalog.search(scenario, capability)}
