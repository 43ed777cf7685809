"""The registry: the tenant's trust roots and models registered on verified evidence."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, delete, get, post
from litestar.datastructures import State
from litestar.openapi import ResponseSpec
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED

from server.api.agents import trace_id
from server.api.deps import services
from server.auth import Caller
from server.registration import (
    MAX_JSON_BODY_BYTES,
    ArtifactRegister,
    ArtifactRegistry,
    ModelRegister,
    RegistryService,
    TrustRootIn,
)


def _registry(state: State) -> RegistryService:
    svc = services(state)
    return RegistryService(svc.gate, svc.data_dir)


def _artifacts(state: State) -> ArtifactRegistry:
    return ArtifactRegistry(_registry(state))


_REJECTED = {
    422: ResponseSpec(
        data_container=dict[str, Any],
        description=(
            "the evidence was refused: `{code: attestation_rejected, message, reason}` "
            "with the registry's reason code; nothing stored"
        ),
        generate_examples=False,
    )
}


class TrustRootController(Controller):
    """`/trust-roots`: public keys the tenant trusts for supply-chain evidence."""

    path = "/trust-roots"
    tags = ["registry"]

    @get("/", summary="List the tenant's trust roots (revoked ones included)")
    async def list_trust_roots(self, state: State, caller: Caller) -> dict[str, Any]:
        caller.require("trust_roots.read")
        return await _registry(state).trust_roots(caller)

    @post("/", summary="Trust a public key for one purpose", status_code=HTTP_201_CREATED)
    async def add_trust_root(
        self, state: State, caller: Caller, data: TrustRootIn
    ) -> dict[str, Any]:
        caller.require("trust_roots.write")
        return await _registry(state).add_trust_root(caller, data)

    @delete(
        "/{key_id:str}",
        summary="Revoke a trust root (kept, marked revoked)",
        status_code=HTTP_200_OK,
    )
    async def revoke_trust_root(self, state: State, caller: Caller, key_id: str) -> dict[str, Any]:
        caller.require("trust_roots.write")
        return await _registry(state).revoke_trust_root(caller, key_id)


class ModelController(Controller):
    """`/models`: registration is verified, then decided (`model.register`), then stored."""

    path = "/models"
    tags = ["registry"]

    @get("/", summary="List the tenant's models")
    async def list_models(self, state: State, caller: Caller) -> dict[str, Any]:
        caller.require("models.read")
        return await _registry(state).models(caller)

    @post(
        "/",
        summary="Register a model on verified evidence (gated: model.register)",
        status_code=HTTP_201_CREATED,
        request_max_body_size=MAX_JSON_BODY_BYTES,
        responses=_REJECTED,
    )
    async def register_model(
        self, state: State, caller: Caller, data: ModelRegister, request: Request[Any, Any, Any]
    ) -> dict[str, Any]:
        caller.require("models.register")
        return await _registry(state).register_model(caller, data, trace_id(request))

    @get("/{model_id:str}", summary="One model")
    async def get_model(self, state: State, caller: Caller, model_id: str) -> dict[str, Any]:
        caller.require("models.read")
        return await _registry(state).model(caller, model_id)


class AgentTemplateController(Controller):
    """`/agent-templates`: verified, then decided (`artifact.register`), then stored."""

    path = "/agent-templates"
    tags = ["registry"]

    @get("/", summary="List the tenant's registered agent templates")
    async def list_templates(self, state: State, caller: Caller) -> dict[str, Any]:
        caller.require("agent_templates.read")
        return await _artifacts(state).templates(caller)

    @post(
        "/",
        summary="Register an agent template on verified evidence (gated: artifact.register)",
        status_code=HTTP_201_CREATED,
        request_max_body_size=MAX_JSON_BODY_BYTES,
        responses=_REJECTED,
    )
    async def register_template(
        self,
        state: State,
        caller: Caller,
        data: ArtifactRegister,
        request: Request[Any, Any, Any],
    ) -> dict[str, Any]:
        caller.require("artifacts.register")
        return await _artifacts(state).register_template(caller, data, trace_id(request))

    @get("/{template_id:str}", summary="One agent template (by id or name)")
    async def get_template(self, state: State, caller: Caller, template_id: str) -> dict[str, Any]:
        caller.require("agent_templates.read")
        return await _artifacts(state).template(caller, template_id)


class ToolRegistryController(Controller):
    """`POST /tools` and `GET /tools/{name}`: tools admitted on evidence
    (`artifact.register`); `GET /tools` (the list) is the tools API's."""

    path = "/tools"
    tags = ["registry"]

    @post(
        "/",
        summary="Register a tool on verified evidence (gated: artifact.register)",
        status_code=HTTP_201_CREATED,
        request_max_body_size=MAX_JSON_BODY_BYTES,
        responses=_REJECTED,
    )
    async def register_tool(
        self,
        state: State,
        caller: Caller,
        data: ArtifactRegister,
        request: Request[Any, Any, Any],
    ) -> dict[str, Any]:
        caller.require("artifacts.register")
        return await _artifacts(state).register_tool(caller, data, trace_id(request))

    @get("/{tool_name:str}", summary="One tool, with its registration evidence")
    async def get_tool(self, state: State, caller: Caller, tool_name: str) -> dict[str, Any]:
        caller.require("tools.read")
        return await _artifacts(state).tool(caller, tool_name)
