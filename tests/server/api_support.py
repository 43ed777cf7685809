"""Shared pieces of the API server tests: tenants, templates, the endpoint catalogue, helpers.

The endpoint catalogue is the single list the security matrices iterate:
each entry says which roles may call it (FIXTURES.md, "Roles and profiles";
for tools, bundles and keys the server's own permission table), whether it is
gated by a policy decision, and whether it takes a body. A route missing from
it is still covered by the "no credential" sweep over every route.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
from litestar import Litestar
from litestar.exceptions import LitestarDeprecationWarning

from server.app import create_app
from server.db.engine import bind
from server.state import Services

TENANT = "default"
OTHER = "globex"
ROLES = ("platform-admin", "admin", "security", "operator", "developer", "viewer", "auditor")

RESEARCH = {
    "template_id": "autogpt-research",
    "name": "Research Copilot",
    "config": {"search_provider": "tavily", "llm_profile": "openai", "max_budget": 5},
}
CRM_SECRET = "crm-SECRET-9f3a1c77e2"  # must never come back from the API
CRM = {
    "template_id": "crewai-crm",
    "name": "CRM Crew",
    "config": {"crm_type": "hubspot", "crm_api_key": CRM_SECRET, "llm_profile": "openai"},
}
DIRECT = {
    "name": "Direct Agent",
    "model": "model://gpt-4o",
    "policy_ids": [],
    "tool_ids": ["web_search"],
    "config": {"temperature": 0.2},
}

READ = frozenset({"admin", "security", "operator", "developer", "viewer"})
WRITE = frozenset({"admin", "operator", "developer"})
DEPLOY = frozenset({"admin", "operator"})
DISABLE = frozenset({"admin", "operator", "security"})
AUDIT = frozenset({"admin", "security", "auditor"})
DECIDE = frozenset({"admin", "security", "operator", "developer"})
BIND = frozenset({"admin", "operator", "developer", "security"})
ATTACH = frozenset({"admin", "security"})
BUNDLES = frozenset({"admin", "security", "operator", "developer", "viewer", "auditor"})
SIDECARS = frozenset({"admin", "security", "operator", "auditor"})

DECIDE_BODY = {
    "action": "agent.create",
    "resource": {"type": "agent", "id": "agt_adhoc", "attributes": {"name": "x"}},
    "context": {},
}


@dataclass(frozen=True)
class Endpoint:
    """One API operation, with what the matrices need to call it."""

    name: str
    method: str
    path: str
    allowed: frozenset[str]
    body: dict[str, Any] | None = None
    gated: bool = False
    target: str = ""  # "agent" or "decision": the path names another object
    mutates: bool = field(default=False)

    def url(self, **ids: str) -> str:
        return "/api/v1" + self.path.format(**ids)


ENDPOINTS = (
    Endpoint("catalog.list", "GET", "/agent-catalog", READ),
    Endpoint("catalog.get", "GET", "/agent-catalog/autogpt-research", READ),
    Endpoint("agents.list", "GET", "/agents", READ),
    Endpoint("agents.create", "POST", "/agents", WRITE, RESEARCH, gated=True, mutates=True),
    Endpoint("agents.get", "GET", "/agents/{agent_id}", READ, target="agent"),
    Endpoint(
        "agents.update",
        "PATCH",
        "/agents/{agent_id}",
        WRITE,
        {"name": "Renamed"},
        gated=True,
        target="agent",
        mutates=True,
    ),
    Endpoint(
        "agents.deploy",
        "POST",
        "/agents/{agent_id}/deploy",
        DEPLOY,
        gated=True,
        target="agent",
        mutates=True,
    ),
    Endpoint(
        "agents.disable",
        "POST",
        "/agents/{agent_id}/disable",
        DISABLE,
        {"reason": "test"},
        gated=True,
        target="agent",
        mutates=True,
    ),
    Endpoint("tools.list", "GET", "/tools", READ),
    Endpoint(
        "tools.bind",
        "POST",
        "/agents/{agent_id}/tools",
        BIND,
        {"tool_id": "browser"},
        gated=True,
        target="agent",
        mutates=True,
    ),
    Endpoint(
        "tools.unbind",
        "DELETE",
        "/agents/{agent_id}/tools/web_search",
        BIND,
        gated=True,
        target="agent",
        mutates=True,
    ),
    Endpoint(
        "agents.policy_mode",
        "PUT",
        "/agents/{agent_id}/policies/deploy-gates",
        ATTACH,
        {"mode": "warn"},
        gated=True,
        target="agent",
        mutates=True,
    ),
    Endpoint("bundles.list", "GET", "/bundles", BUNDLES),
    Endpoint("bundles.get", "GET", "/bundles/deploy-gates", BUNDLES),
    Endpoint("keys.list", "GET", "/keys", BUNDLES),
    Endpoint("decide", "POST", "/decide", DECIDE, DECIDE_BODY, gated=True),
    Endpoint("decide.batch", "POST", "/decide/batch", DECIDE, {"requests": [DECIDE_BODY]}, True),
    Endpoint(
        "tasks.submit",
        "POST",
        "/agents/{agent_id}/tasks",
        WRITE,
        {"input": {"q": "summarize this"}, "intent": "summarize"},
        gated=True,
        target="agent",
        mutates=True,
    ),
    Endpoint("tasks.list", "GET", "/tasks", READ),
    Endpoint("decisions.list", "GET", "/decisions", AUDIT),
    Endpoint("decisions.get", "GET", "/decisions/{decision_id}", AUDIT, target="decision"),
    Endpoint("sidecars.list", "GET", "/sidecars", SIDECARS),
    Endpoint("sidecars.keys", "GET", "/sidecars/keys", SIDECARS),
    Endpoint("sidecars.create", "POST", "/sidecars", ATTACH, {"name": "edge-1"}, mutates=True),
)
BY_NAME = {e.name: e for e in ENDPOINTS}
TARGETED = tuple(e for e in ENDPOINTS if e.target)
WITH_BODY = tuple(e for e in ENDPOINTS if e.body is not None)
GATED = tuple(e for e in ENDPOINTS if e.gated)


async def call(
    client: httpx.AsyncClient,
    endpoint: Endpoint,
    headers: dict[str, str],
    *,
    body: Any = None,
    **ids: str,
) -> httpx.Response:
    """Call ``endpoint`` with its default body (or ``body``) and the given ids."""
    payload = endpoint.body if body is None else body
    return await client.request(
        endpoint.method,
        endpoint.url(**ids),
        headers=headers,
        content=None if payload is None else json.dumps(payload),
    )


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The response is the error ``code`` with status ``status`` in the `{code, message}` shape."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == code, body
    assert isinstance(body["message"], str) and body["message"], body
    return dict(body)


def make_app(services: Services) -> Litestar:
    """The app over ``services``, with the tables bound to their database."""
    bind(services.db)
    with warnings.catch_warnings():
        # Litestar 2.25 deprecates the parameter styles the handlers use (inferred
        # `caller` dependency and path/query parameters; they keep working until
        # Litestar 3). Reported; not a reason to fail every API test at app creation.
        warnings.simplefilter("ignore", LitestarDeprecationWarning)
        return create_app(services)


def client_of(app: Litestar) -> httpx.AsyncClient:
    """An HTTP client calling ``app`` in process, on the caller's event loop."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


@asynccontextmanager
async def serve(services: Services) -> AsyncIterator[httpx.AsyncClient]:
    """A client of a new app over ``services``, lifespan (start-up hooks) included."""
    app = make_app(services)
    async with app.lifespan(), client_of(app) as client:
        yield client
