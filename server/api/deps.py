"""Request-scoped dependencies: the services and the authenticated, rate-limited caller."""

from __future__ import annotations

from litestar import Request
from litestar.datastructures import State

from server.auth import Caller, hash_api_key, utcnow
from server.db.tables import ApiKey
from server.errors import UnauthorizedError
from server.state import Services


def services(state: State) -> Services:
    """The process's services."""
    found: Services = state["services"]
    return found


async def api_key_caller(key: str) -> Caller:
    """The service caller of an API key, or 401."""
    live = (ApiKey.key_hash == hash_api_key(key)) & ApiKey.revoked.eq(False)
    row = await ApiKey.select().where(live).output(load_json=True).first()
    if row is None:
        raise UnauthorizedError("unknown or revoked API key")
    return Caller(row["subject"], row["tenant"], frozenset(row["roles"]), "service")


async def caller(request: Request[object, object, State], state: State) -> Caller:
    """The caller of this request (401 without a valid credential), after its tenant's rate limit."""
    svc = services(state)
    header = request.headers.get("authorization", "")
    api_key = request.headers.get("x-api-key", "")
    if api_key:
        who = await api_key_caller(api_key)
    elif header.lower().startswith("bearer "):
        who = svc.tokens.verify(header[7:].strip(), utcnow())
    else:
        raise UnauthorizedError(
            "missing credential: send `Authorization: Bearer <token>` or `X-API-Key`"
        )
    limits = await svc.tenants.limits(who.tenant)
    await svc.limiter.check(
        who.tenant, limits.get("rate_limit_per_minute"), limits.get("rate_limit_burst")
    )
    return who
