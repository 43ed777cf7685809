"""Credentials → callers: bearer JWTs and hashed API keys; roles → permissions.

The tenant always comes from the credential, never from a header or a body.
Tokens are checked for signature (with the configured algorithm only; ``none``
is never accepted), issuer, audience, expiry and not-before.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import jwt

from engine import Principal
from server.errors import ForbiddenError, UnauthorizedError
from server.settings import Settings

ROLES = ("platform-admin", "admin", "security", "operator", "developer", "viewer", "auditor")
API_KEY_PREFIX = "aion_"
#: Verified tokens remembered (per process) and for how long at most; see ``TokenService.verify``.
VERIFIED_CACHE_SIZE = 4096
VERIFIED_CACHE_SECONDS = 60.0

#: Which roles may use which part of the API (FIXTURES.md, "Roles and profiles").
#: Policies decide the governed actions on top of this.
PERMISSIONS: dict[str, frozenset[str]] = {
    "agents.read": frozenset({"admin", "security", "operator", "developer", "viewer"}),
    "agents.write": frozenset({"admin", "operator", "developer"}),
    "agents.deploy": frozenset({"admin", "operator"}),
    "agents.disable": frozenset({"admin", "operator", "security"}),
    "tools.read": frozenset({"admin", "security", "operator", "developer", "viewer"}),
    "tools.bind": frozenset({"admin", "operator", "developer", "security"}),
    "bundles.read": frozenset({"admin", "security", "operator", "developer", "viewer", "auditor"}),
    "bundles.write": frozenset({"admin", "security"}),
    "policies.attach": frozenset({"admin", "security"}),
    "decisions.read": frozenset({"admin", "security", "auditor"}),
    "decide": frozenset({"admin", "security", "operator", "developer"}),
    "approvals.write": frozenset({"admin", "security"}),
    "tenants.write": frozenset({"platform-admin"}),
    # Tasks: operators run agents' work, developers test their agents; services (running
    # workloads, CI) submit without a role, as the `task.submit` policy allows.
    "tasks.submit": frozenset({"admin", "operator", "developer"}),
    "tasks.read": frozenset({"admin", "security", "operator", "developer", "viewer"}),
    "tasks.cancel": frozenset({"admin", "operator", "developer", "security"}),
    # The event stream: task lifecycle for every reader; decisions only with `decisions.read`.
    "events.read": frozenset({"admin", "security", "operator", "developer", "viewer", "auditor"}),
    # The registry: trust roots are the tenant's security configuration; registering a
    # model admits it for every agent (the `model.register` policy decides on top).
    "trust_roots.read": frozenset({"admin", "security", "auditor"}),
    "trust_roots.write": frozenset({"admin", "security"}),
    "models.read": frozenset({"admin", "security", "operator", "developer", "viewer", "auditor"}),
    "models.register": frozenset({"admin", "security"}),
    # Agent templates and tools admitted on evidence (`artifact.register` decides on top).
    "agent_templates.read": frozenset(
        {"admin", "security", "operator", "developer", "viewer", "auditor"}
    ),
    "artifacts.register": frozenset({"admin", "security"}),
    # OPA sidecars: registering one hands out a credential that downloads the tenant's
    # policies and writes its decision log; reading shows their state, never a token.
    "sidecars.read": frozenset({"admin", "security", "operator", "auditor"}),
    "sidecars.write": frozenset({"admin", "security"}),
}


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling: subject, tenant, roles, and whether a user or a service."""

    subject: str
    tenant: str
    roles: frozenset[str]
    kind: str = "user"

    def principal(self) -> Principal:
        """The caller as a decision-request principal."""
        kind: Literal["user", "service"] = "service" if self.kind == "service" else "user"
        return Principal(id=self.subject, tenant=self.tenant, roles=sorted(self.roles), kind=kind)

    def require(self, permission: str) -> None:
        """Raise 403 unless one of the caller's roles grants ``permission``."""
        allowed = PERMISSIONS[permission]
        if self.kind == "service" and permission == "decide":
            return
        if not self.roles & allowed:
            raise ForbiddenError(f"none of the roles {sorted(self.roles)} may use `{permission}`")


def _clean_roles(raw: Any) -> frozenset[str]:
    if not isinstance(raw, list) or not all(isinstance(r, str) for r in raw):
        raise UnauthorizedError("token `roles` must be a list of strings")
    unknown = sorted(set(raw) - set(ROLES))
    if unknown:
        raise UnauthorizedError(f"token names unknown roles {unknown}")
    return frozenset(raw)


class TokenService:
    """Issues and verifies bearer tokens for one server."""

    def __init__(self, settings: Settings, secret: bytes) -> None:
        self._settings = settings
        self._secret = secret
        self._jwks = jwt.PyJWKClient(settings.jwks_url) if settings.jwks_url else None
        # token -> (caller, not before, expiry, remembered until): a token's signature
        # and claims never change, so a verified one is not verified again until then.
        self._verified: OrderedDict[str, tuple[Caller, float, float, float]] = OrderedDict()

    def _key(self, token: str) -> Any:
        if self._jwks is not None:
            try:
                return self._jwks.get_signing_key_from_jwt(token).key
            except jwt.PyJWTError as exc:
                raise UnauthorizedError(f"no signing key for this token: {exc}") from exc
        if self._settings.jwt_algorithm == "HS256":
            return self._secret
        return self._settings.jwt_public_key

    def verify(self, token: str, now: datetime) -> Caller:
        """A caller from a bearer token, or 401.

        A token verified in the last ``VERIFIED_CACHE_SECONDS`` is not verified
        again (signature checks were a tenth of a decision's time); its time
        window is still checked on every use, and the bound keeps a key
        removed from a JWKS endpoint from being honoured for longer than that.
        """
        at = now.timestamp()
        known = self._verified.get(token)
        if known is not None:
            caller, not_before, expiry, until = known
            if time.monotonic() < until and not_before <= at < expiry:
                return caller
            del self._verified[token]
        caller, not_before, expiry = self._verify(token, now)
        self._verified[token] = (
            caller,
            not_before,
            expiry,
            time.monotonic() + VERIFIED_CACHE_SECONDS,
        )
        if len(self._verified) > VERIFIED_CACHE_SIZE:
            self._verified.popitem(last=False)
        return caller

    def _verify(self, token: str, now: datetime) -> tuple[Caller, float, float]:
        try:
            claims = jwt.decode(
                token,
                self._key(token),
                algorithms=[self._settings.jwt_algorithm],
                audience=self._settings.jwt_audience,
                issuer=self._settings.jwt_issuer,
                # The time claims are checked below against `now`, the server's one clock.
                options={
                    "require": ["exp", "sub", "iss", "aud"],
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                },
            )
        except jwt.PyJWTError as exc:
            raise UnauthorizedError(f"invalid token: {exc}") from exc
        at = now.timestamp()
        exp, nbf, iat = (claims.get(k) for k in ("exp", "nbf", "iat"))  # `exp` is required
        for name, value in (("exp", exp), ("nbf", nbf), ("iat", iat)):
            if value is not None and (
                not isinstance(value, int | float) or isinstance(value, bool)
            ):
                raise UnauthorizedError(f"invalid token: `{name}` must be a number")
        if exp is None or at >= exp:
            raise UnauthorizedError("invalid token: expired")
        if nbf is not None and nbf > at:
            raise UnauthorizedError("invalid token: not valid yet (nbf)")
        if iat is not None and iat > at + 5:
            raise UnauthorizedError("invalid token: issued in the future")
        tenant = claims.get("tenant")
        if not isinstance(tenant, str) or not tenant:
            raise UnauthorizedError("token has no `tenant` claim")
        kind = claims.get("kind", "user")
        if kind not in ("user", "service"):
            raise UnauthorizedError("token `kind` must be `user` or `service`")
        caller = Caller(str(claims["sub"]), tenant, _clean_roles(claims.get("roles", [])), kind)
        not_before = max(nbf or 0, (iat or 0) - 5)  # the nbf and iat checks, as a window
        return caller, float(not_before), float(exp or 0)

    def issue(
        self,
        *,
        tenant: str,
        subject: str,
        roles: list[str],
        now: datetime,
        ttl: int = 3600,
        kind: str = "user",
    ) -> str:
        """A signed HS256 token for the embedded identity provider."""
        _clean_roles(roles)
        claims = {
            "sub": subject,
            "tenant": tenant,
            "roles": roles,
            "kind": kind,
            "iss": self._settings.jwt_issuer,
            "aud": self._settings.jwt_audience,
            "iat": int(now.timestamp()),
            "nbf": int(now.timestamp()),
            "exp": int((now + timedelta(seconds=ttl)).timestamp()),
        }
        return jwt.encode(claims, self._secret, algorithm="HS256")


def hash_api_key(key: str) -> str:
    """How API keys are stored: their sha256, never the key."""
    return hashlib.sha256(key.encode()).hexdigest()


def new_api_key() -> str:
    """A fresh random API key (shown once)."""
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


def utcnow() -> datetime:
    """The current time; the server's one clock."""
    return datetime.now(UTC)
