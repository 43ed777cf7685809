"""Bodies OPA posts: gzip (decompressed with a bound, so a gzip bomb stops early) and JSON
(plain values only: no NaN or Infinity, bounded nesting)."""

from __future__ import annotations

import json
import zlib
from typing import Any

from server.errors import InvalidInputError

GZIP_MAGIC = b"\x1f\x8b"


def gunzip(body: bytes, limit: int, what: str) -> bytes:
    """The decompressed body; 400 unless it is one complete gzip stream of at most ``limit``."""
    if not body.startswith(GZIP_MAGIC):
        raise InvalidInputError(f"{what}: the body is not gzip")
    inflate = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = inflate.decompress(body, limit + 1)
    except zlib.error as exc:
        raise InvalidInputError(f"{what}: the body is not valid gzip ({exc})") from exc
    if len(out) > limit:
        raise InvalidInputError(f"{what}: more than {limit} bytes once decompressed")
    if not inflate.eof:
        raise InvalidInputError(f"{what}: the gzip stream is truncated")
    return out


def _constant(name: str) -> Any:
    raise ValueError(f"`{name}` is not JSON")


def parse_json(raw: bytes, what: str) -> Any:
    """A JSON document; 400 when it is not one (or nests deeper than Python can follow)."""
    try:
        return json.loads(raw, parse_constant=_constant)
    except (ValueError, RecursionError) as exc:
        raise InvalidInputError(f"{what}: the body is not a JSON document") from exc


def decode_json_body(body: bytes, content_encoding: str, limit: int, what: str) -> Any:
    """A JSON body sent plain or gzipped (``Content-Encoding: gzip`` or the gzip magic)."""
    if "gzip" in content_encoding.lower() or body.startswith(GZIP_MAGIC):
        body = gunzip(body, limit, what)
    return parse_json(body, what)
