"""Bodies OPA posts: gzip (decompressed with a bound, so a gzip bomb stops early; exactly one
gzip member, nothing after it) and JSON (plain values only: no NaN or Infinity literals).

:func:`parse_events` reads a decision-log upload lazily, one top-level element at a time, so
an upload of a million tiny non-objects (``[[],[],...]``) stops at its first element or at
the event bound instead of building every object first. Inside an event, numbers Python
cannot hold (``1e400``, integers of more than 4300 digits) are kept as their text, so a
value OPA legitimately logged is never refused.
"""

from __future__ import annotations

import json
import math
import re
import sys
import zlib
from typing import Any

from server.errors import InvalidInputError

GZIP_MAGIC = b"\x1f\x8b"
#: Python refuses ``int()`` of longer digit strings (CVE-2020-10735 guard).
_MAX_INT_DIGITS = sys.get_int_max_str_digits() or 4300
_SPACE = re.compile(r"[ \t\n\r]*")
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')
#: Containers nested deeper than this are cut before parsing (Python's parser recurses).
MAX_PARSE_DEPTH = 200
DEEP_MARKER = f'{{"aion.truncated":"nested deeper than {MAX_PARSE_DEPTH} levels"}}'


def gunzip(body: bytes, limit: int, what: str) -> bytes:
    """The decompressed body; 400 unless it is exactly one complete gzip member of at most
    ``limit`` bytes decompressed (a second member or trailing bytes are refused)."""
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
    if inflate.unused_data:
        raise InvalidInputError(f"{what}: data after the end of the gzip stream")
    return out


def _constant(name: str) -> Any:
    raise ValueError(f"`{name}` is not JSON")


def _float(text: str) -> float | str:
    value = float(text)
    return value if math.isfinite(value) else text


def _int(text: str) -> int | str:
    digits = len(text.lstrip("-"))
    return int(text) if digits <= _MAX_INT_DIGITS else text


_EVENT_DECODER = json.JSONDecoder(parse_float=_float, parse_int=_int, parse_constant=_constant)


def parse_json(raw: bytes, what: str) -> Any:
    """A JSON document; 400 when it is not one (or nests deeper than Python can follow)."""
    try:
        return json.loads(raw, parse_constant=_constant)
    except (ValueError, RecursionError) as exc:
        raise InvalidInputError(f"{what}: the body is not a JSON document") from exc


def cut_deep(text: str, depth: int = MAX_PARSE_DEPTH) -> str:
    """``text`` (JSON) with every container opened deeper than ``depth`` replaced by a
    marker object, so the parser does not recurse past Python's limit."""
    parts: list[str] = []
    level, start, kept = 0, -1, 0
    for token in _TOKEN.finditer(text):
        char = token.group()
        if char in "[{":
            level += 1
            if level == depth + 1 and start < 0:
                start = token.start()
        elif char in "]}":
            level -= 1
            if level == depth and start >= 0:
                parts += [text[kept:start], DEEP_MARKER]
                kept, start = token.end(), -1
    return "".join([*parts, text[kept:]])


def parse_events(raw: bytes, limit: int, what: str) -> list[dict[str, Any]]:
    """A JSON array of at most ``limit`` objects, read one element at a time; 400 otherwise."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInputError(f"{what}: the body is not UTF-8 JSON") from exc
    try:
        return _events(text, limit, what)
    except RecursionError:
        return _events(cut_deep(text), limit, what)


def _events(text: str, limit: int, what: str) -> list[dict[str, Any]]:
    pos = _SPACE.match(text, 0).end()  # type: ignore[union-attr]
    if not text.startswith("[", pos):
        raise InvalidInputError(f"{what}: the body is a JSON array of decision events")
    pos = _SPACE.match(text, pos + 1).end()  # type: ignore[union-attr]
    events: list[dict[str, Any]] = []
    if text.startswith("]", pos):
        pos += 1
    else:
        while True:
            if len(events) >= limit:
                raise InvalidInputError(f"{what}: at most {limit} events per upload")
            try:
                value, pos = _EVENT_DECODER.raw_decode(text, pos)
            except ValueError as exc:
                raise InvalidInputError(f"{what}: the body is not a JSON document") from exc
            if not isinstance(value, dict):
                raise InvalidInputError(f"{what} event {len(events)}: each event is a JSON object")
            events.append(value)
            pos = _SPACE.match(text, pos).end()  # type: ignore[union-attr]
            if text.startswith(",", pos):
                pos = _SPACE.match(text, pos + 1).end()  # type: ignore[union-attr]
                continue
            if text.startswith("]", pos):
                pos += 1
                break
            raise InvalidInputError(f"{what}: the body is not a JSON document")
    if _SPACE.match(text, pos).end() != len(text):  # type: ignore[union-attr]
        raise InvalidInputError(f"{what}: the body is not a JSON document")
    return events


def decode_json_body(body: bytes, content_encoding: str, limit: int, what: str) -> Any:
    """A JSON body sent plain or gzipped (``Content-Encoding: gzip`` or the gzip magic)."""
    if "gzip" in content_encoding.lower() or body.startswith(GZIP_MAGIC):
        body = gunzip(body, limit, what)
    return parse_json(body, what)
