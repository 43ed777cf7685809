"""OPA's Data API at the root of the app: ``POST /v1/data/{path}`` and ``GET /v1/data/{path}``.

Existing OPA clients (``opa-python-client``, anything speaking OPA's REST API)
point at the server's root and query the caller's tenant's active policy
set. Authentication as for ``POST /api/v1/decide`` (the ``decide``
permission). Answers are OPA's: ``{"result": ..., "decision_id": ...}``, no
``result`` when undefined. Query parameters: ``metrics=true`` adds
``metrics.timer_server_handler_ns`` and ``timer_rego_query_eval_ns``; others
(``pretty``, ``explain``, ``instrument``, ``provenance``, ...) are ignored.
Kept out of the OpenAPI document: docs/opa-data-api.md describes it.
"""

from __future__ import annotations

import time
from typing import Any

from litestar import Request, Router, get, post
from litestar.datastructures import State
from litestar.response import Response
from litestar.status_codes import HTTP_200_OK

from server.api.agents import trace_id
from server.api.deps import services
from server.auth import Caller
from server.dataapi import (
    DataAnswer,
    DataQuery,
    answer_query,
    input_from_body,
    input_from_query,
    parse_path,
)


def _truthy(value: str | None) -> bool:
    return value is not None and value.lower() in ("", "true", "1")


def _respond(answer: DataAnswer, started: int, request: Request[Any, Any, Any]) -> Response[Any]:
    body: dict[str, Any] = {}
    if answer.defined:
        body["result"] = answer.result
    body["decision_id"] = answer.decision_id
    if _truthy(request.query_params.get("metrics")):
        body["metrics"] = {
            "timer_rego_query_eval_ns": answer.eval_ns,
            "timer_server_handler_ns": time.perf_counter_ns() - started,
        }
    return Response(body, status_code=HTTP_200_OK)


async def _query(
    state: State, caller: Caller, request: Request[Any, Any, Any], query: DataQuery, started: int
) -> Response[Any]:
    answer = await answer_query(services(state), caller, query, trace_id(request))
    return _respond(answer, started, request)


@post(["/data", "/data/{path:path}"], status_code=HTTP_200_OK, include_in_schema=False)
async def post_data(
    state: State, caller: Caller, request: Request[Any, Any, Any], path: str = ""
) -> Response[Any]:
    """Evaluate the document at ``path`` for the body's ``input``."""
    started = time.perf_counter_ns()
    caller.require("decide")
    segments = parse_path(path)  # a bad path is refused before the body is read
    query = DataQuery(segments, input_from_body(await request.body()))
    return await _query(state, caller, request, query, started)


@get(["/data", "/data/{path:path}"], include_in_schema=False)
async def get_data(
    state: State, caller: Caller, request: Request[Any, Any, Any], path: str = ""
) -> Response[Any]:
    """Evaluate the document at ``path`` for the ``input`` query parameter (JSON)."""
    started = time.perf_counter_ns()
    caller.require("decide")
    query = DataQuery(parse_path(path), input_from_query(request.query_params.get("input")))
    return await _query(state, caller, request, query, started)


data_api = Router(path="/v1", route_handlers=[post_data, get_data], include_in_schema=False)
