"""``Idempotency-Key`` on every POST: a replay returns the first response.

The key is scoped to the caller (tenant and subject, taken from the
credential, as everywhere). The first request claims the key before it runs; a second request
with the same key and the same body gets the stored response (with
``Idempotent-Replayed: true``); the same key with a different body, or while
the first is still running, is 409 ``conflict``. 5xx and 429 responses are not
kept, so a retry after them runs again.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from litestar.types import ASGIApp, Receive, Scope, Send

from server.api.deps import api_key_caller
from server.auth import utcnow
from server.db.tables import IdempotencyKey
from server.errors import AppError
from server.state import Services

MAX_KEY = 200
#: Bundle uploads may be larger than other bodies (the route sets the same limit).
UPLOAD_LIMIT = 16 * 1024 * 1024


CONFLICT = {"code": "conflict", "message": "a request with this Idempotency-Key is in progress"}


async def _scope(services: Services, headers: dict[bytes, bytes]) -> tuple[str, str] | None:
    """(tenant, subject) of the credential, by the handlers' rules (None: let them answer 401)."""
    try:
        api_key = headers.get(b"x-api-key", b"").decode()
        if api_key:
            who = await api_key_caller(api_key)
            return who.tenant, who.subject
        auth = headers.get(b"authorization", b"").decode()
        if auth.lower().startswith("bearer "):
            who = services.tokens.verify(auth[7:].strip(), utcnow())
            return who.tenant, who.subject
    except AppError:
        return None
    return None


async def _reply(
    send: Send, status: int, body: dict[str, Any] | bytes, replayed: bool = False
) -> None:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode())]
    if replayed:
        headers.append((b"idempotent-replayed", b"true"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": raw, "more_body": False})


async def _read(receive: Receive, limit: int) -> tuple[list[Any], bytes] | None:
    """The whole body, or None as soon as it grows past ``limit`` (nothing more is read)."""
    messages: list[Any] = []
    body = b""
    while True:
        message: Any = await receive()
        messages.append(message)
        body += message.get("body", b"")
        if len(body) > limit:
            return None
        if not message.get("more_body"):
            return messages, body


class _Recorder:
    """Passes the response through and keeps its status and body."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self.status = 0
        self.chunks: list[bytes] = []

    async def __call__(self, message: Any) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
        elif message["type"] == "http.response.body":
            self.chunks.append(message.get("body", b""))
        await self._send(message)


class IdempotencyMiddleware:
    """ASGI middleware; one per app."""

    def __init__(self, app: ASGIApp, services: Services) -> None:
        self._app = app
        self._services = services

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = dict(scope.get("headers", [])) if str(scope["type"]) == "http" else {}
        key = headers.get(b"idempotency-key", b"").decode()
        who = (
            await _scope(self._services, headers) if key and scope.get("method") == "POST" else None
        )
        if who is None:
            await self._app(scope, receive, send)
            return
        tenant, subject = who
        if len(key) > MAX_KEY:
            await _reply(
                send, 400, {"code": "invalid_input", "message": "Idempotency-Key is too long"}
            )
            return
        limit = (
            UPLOAD_LIMIT
            if scope["path"].rstrip("/").endswith("/bundles")
            else self._services.settings.max_body_bytes
        )
        read = await _read(receive, limit)
        if read is None:
            await _reply(
                send,
                413,
                {
                    "code": "payload_too_large",
                    "message": f"request body is larger than {limit} bytes",
                },
            )
            return
        messages, body = read
        digest = hashlib.sha256(scope["path"].encode() + b"\0" + body).hexdigest()
        # One caller's key: another user of the tenant replaying it would skip their own role checks.
        row_id = f"{tenant}:" + hashlib.sha256(f"{subject}\0{key}".encode()).hexdigest()
        if await self._replayed(send, row_id, digest) or not await self._claim(
            send, row_id, tenant, digest
        ):
            return
        replay = iter(messages)

        async def replay_receive() -> Any:
            return next(replay, {"type": "http.disconnect"})

        recorder = _Recorder(send)
        try:
            await self._app(scope, replay_receive, recorder)
        finally:
            await self._keep(row_id, recorder)

    async def _replayed(self, send: Send, row_id: str, digest: str) -> bool:
        found = await IdempotencyKey.select().where(IdempotencyKey.id == row_id).first()
        if found is None:
            return False
        if found["body_hash"] != digest:
            await _reply(
                send,
                409,
                {"code": "conflict", "message": "Idempotency-Key was used with another request"},
            )
        elif found["status"] == 0:
            await _reply(send, 409, CONFLICT)
        else:
            await _reply(send, found["status"], found["response"].encode(), replayed=True)
        return True

    async def _claim(self, send: Send, row_id: str, tenant: str, digest: str) -> bool:
        try:
            await IdempotencyKey.insert(
                IdempotencyKey(
                    id=row_id,
                    tenant=tenant,
                    body_hash=digest,
                    status=0,
                    response="",
                    created_at=utcnow(),
                )
            )
        except Exception:  # the primary key is taken: another request claimed the key first
            await _reply(send, 409, CONFLICT)
            return False
        return True

    async def _keep(self, row_id: str, recorder: _Recorder) -> None:
        if recorder.status and recorder.status < 500 and recorder.status != 429:
            await IdempotencyKey.update(
                {
                    IdempotencyKey.status: recorder.status,
                    IdempotencyKey.response: b"".join(recorder.chunks).decode(),
                }
            ).where(IdempotencyKey.id == row_id)
        else:
            await IdempotencyKey.delete().where(IdempotencyKey.id == row_id)


def idempotency_middleware(services: Services) -> Any:
    """The middleware factory for the app's ``middleware`` list."""

    def factory(app: ASGIApp) -> ASGIApp:
        return IdempotencyMiddleware(app, services)

    return factory
