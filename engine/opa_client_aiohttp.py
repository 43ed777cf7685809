"""The real :class:`~engine.opa_remote.OpaQuerier`: an OPA sidecar over HTTP.

Built on ``opa-python-client``'s ``AsyncOpaClient`` (aiohttp). Kept out of
``engine/__init__``: only the composition root imports it, so ``import
engine`` loads no HTTP stack. Retries are off: a failed query fails the
decision closed at once, instead of retrying past the decision's time limit.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from opa_client.opa_async import AsyncOpaClient

from engine.opa_querier import OpaAnswer, OpaBadAnswer, OpaUnreachable, answer_from_body


def parse_opa_url(url: str) -> tuple[str, int, bool]:
    """(host, port, tls) of ``http(s)://host[:port]``; :class:`ValueError` for anything else.

    The client always talks to ``<root>/v1/...``, so a URL with a path is refused
    rather than silently ignored.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"OPA URL `{url}` must look like http://host:port or https://host:port")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise ValueError(f"OPA URL `{url}` must name only scheme, host and port")
    tls = parts.scheme == "https"
    return parts.hostname, parts.port or (443 if tls else 80), tls


class AiohttpOpaQuerier:
    """Queries one OPA sidecar; the HTTP session opens on first use, on the running loop."""

    def __init__(self, url: str, *, token: str = "", timeout_s: float = 0.1) -> None:
        self.url = url
        self._host, self._port, self._tls = parse_opa_url(url)
        self._token = token
        self._timeout_s = timeout_s
        self._client: AsyncOpaClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._opening: tuple[asyncio.AbstractEventLoop, asyncio.Lock] | None = None

    async def _opened(self) -> AsyncOpaClient:
        loop = asyncio.get_running_loop()
        if self._client is not None and self._loop is loop:
            return self._client
        if self._opening is None or self._opening[0] is not loop:
            self._opening = (loop, asyncio.Lock())
        async with self._opening[1]:  # concurrent first queries open one session, not several
            return await self._open(loop)

    async def _open(self, loop: asyncio.AbstractEventLoop) -> AsyncOpaClient:
        if self._client is not None and self._loop is loop:
            return self._client
        if self._client is not None:
            # Opened on another event loop (a test's, or a finished one): its session
            # cannot be used here. Closing it may fail with its loop gone; a new one opens anyway.
            with contextlib.suppress(Exception):
                await self._client.close_connection()
        client = AsyncOpaClient(
            host=self._host,
            port=self._port,
            ssl=self._tls,
            token=self._token or None,
            retries=0,
            timeout=self._timeout_s,
        )
        self._client = None
        await client.__aenter__()
        self._client, self._loop = client, loop  # published only once its session is open
        return client

    async def query(self, path: str, input: dict[str, Any], *, timeout_s: float) -> OpaAnswer:
        """``POST /v1/data/<path>?provenance=true&strict-builtin-errors=true``, within ``timeout_s``.

        Strict builtin errors: a builtin given the wrong type (``count(5)``) is an
        error in OPA, as in the embedded engine, so it denies in both instead of
        quietly leaving a deny rule unfired in OPA.
        """
        client = await self._opened()
        try:
            async with asyncio.timeout(timeout_s):
                body = await client.query_rule(
                    input,
                    package_path=path,
                    query_params={"provenance": "true", "strict-builtin-errors": "true"},
                )
        except aiohttp.ContentTypeError as exc:
            raise OpaBadAnswer(f"not JSON ({exc.message})") from exc
        except aiohttp.ClientResponseError as exc:
            return OpaAnswer(exc.status, detail=exc.message)
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise TimeoutError(str(exc)) from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise OpaUnreachable(f"{type(exc).__name__}: {exc}") from exc
        except ValueError as exc:
            raise OpaBadAnswer(f"not JSON ({exc})") from exc
        return answer_from_body(200, body)

    async def aclose(self) -> None:
        """Close the HTTP session; a later query opens a new one."""
        client, self._client, self._loop = self._client, None, None
        if client is not None:
            await client.close_connection()
