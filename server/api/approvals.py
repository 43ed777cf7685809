"""Approvals of parked requests."""

from __future__ import annotations

from typing import Any, Literal

from litestar import Controller, Request, get, post
from litestar.datastructures import State
from litestar.status_codes import HTTP_200_OK

from server.api.agents import trace_id
from server.api.deps import services
from server.approvals import ApprovalService
from server.auth import Caller
from server.bindings import BindingService
from server.lifecycle import AgentLifecycle
from server.registration import RegistryService
from server.schemas import ApprovalIn


def _approvals(state: State) -> ApprovalService:
    svc = services(state)
    agents = svc.agents
    return ApprovalService(
        agents,
        AgentLifecycle(svc.gate, agents),
        BindingService(svc.gate, agents),
        RegistryService(svc.gate, svc.data_dir),
    )


class ApprovalController(Controller):
    """`/approvals`: admin and security users decide parked requests."""

    path = "/approvals"
    tags = ["approvals"]

    @get("/", summary="Approvals of the tenant")
    async def list_approvals(
        self,
        state: State,
        caller: Caller,
        status: Literal["pending", "approved", "rejected", "failed"] | None = None,
    ) -> dict[str, Any]:
        caller.require("approvals.write")
        return await _approvals(state).list(caller, status)

    @post(
        "/{approval_id:str}", summary="Approve or reject a parked request", status_code=HTTP_200_OK
    )
    async def decide(
        self,
        state: State,
        caller: Caller,
        approval_id: str,
        data: ApprovalIn,
        request: Request[Any, Any, Any],
    ) -> dict[str, Any]:
        caller.require("approvals.write")
        return await _approvals(state).decide(
            caller, approval_id, data.decision == "approve", trace_id(request)
        )
