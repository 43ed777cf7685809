"""The agent catalog."""

from __future__ import annotations

from typing import Any

from litestar import Controller, get
from litestar.datastructures import State

from server.api.deps import services
from server.auth import Caller


class CatalogController(Controller):
    """Templates to create agents from."""

    path = "/agent-catalog"
    tags = ["catalog"]

    @get("/", summary="List catalog templates")
    async def list_templates(self, state: State, caller: Caller) -> dict[str, Any]:
        caller.require("agents.read")
        return {"items": services(state).catalog.list()}

    @get("/{template_id:str}", summary="One catalog template with its config_schema")
    async def get_template(self, state: State, caller: Caller, template_id: str) -> dict[str, Any]:
        caller.require("agents.read")
        return services(state).catalog.get(template_id).doc
