"""Parsing the timestamps found in evidence (never reading the clock)."""

from __future__ import annotations

from datetime import UTC, datetime

from registry.errors import Reason, RegistryError, Rejected


def parse_utc(value: object) -> datetime:
    """An ISO 8601 timestamp as an aware UTC datetime (``Z`` accepted)."""
    if not isinstance(value, str):
        raise Rejected(Reason.MALFORMED_EVIDENCE, f"timestamp `{value}` is not a string")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise Rejected(Reason.MALFORMED_EVIDENCE, f"timestamp `{value}` is malformed") from exc
    if parsed.tzinfo is None:
        raise Rejected(Reason.MALFORMED_EVIDENCE, f"timestamp `{value}` has no time zone")
    return parsed.astimezone(UTC)


def check_now(now: datetime) -> datetime:
    """``now`` as passed by the caller; a naive datetime is a programming mistake."""
    if now.tzinfo is None:
        raise RegistryError("`now` must be timezone-aware")
    return now
