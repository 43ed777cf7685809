"""The decision chain itself: record shapes, canonical hashing, head signatures, cursors,
and the checker that walks a chain and names its first defect. Pure: no database here;
:mod:`server.decisionlog` stores chains.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypedDict

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

GENESIS = "0" * 64
_HEAD_TAG = b"aion-decision-head-v1\n"
_SIZES = {"id": 64, "action": 64, "principal_id": 200, "resource_type": 64, "resource_id": 200}
_SIZES["outcome"] = 32
_FILTERS = ("action", "outcome", "resource_id", "principal_id")


class DecisionLogError(Exception):
    """The log cannot do what was asked (misuse, bad record, nothing to sign)."""


class InvalidCursorError(ValueError):
    """A ``cursor`` this log did not hand out."""


@dataclass(frozen=True)
class StoredDecision:
    """One row of the log."""

    id: str
    tenant: str
    seq: int
    created_at: datetime
    action: str
    principal_id: str
    resource_type: str
    resource_id: str
    allowed: bool
    outcome: str
    record: dict[str, Any]
    prev_hash: str
    hash: str


@dataclass(frozen=True)
class DecisionPage:
    """A page of ``list``; pass ``next_cursor`` back for the next one (None: no more)."""

    items: tuple[StoredDecision, ...]
    next_cursor: str | None


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of ``verify``; ``first_bad_*`` and ``problem`` name the first defect."""

    ok: bool
    checked: int
    first_bad_seq: int | None = None
    first_bad_id: str | None = None
    problem: str | None = None
    last_seq: int = 0
    signed_seq: int = 0


class HeadExport(TypedDict):
    """A signed chain head, for anchoring outside the database."""

    tenant: str
    seq: int
    hash: str
    signature: str


@dataclass
class _Head:
    seq: int = 0
    hash: str = GENESIS
    signed_seq: int = 0
    signed_hash: str = ""
    signature: str = ""


@dataclass(frozen=True)
class _Query:
    filters: dict[str, str]
    since: datetime | None
    until: datetime | None
    after: int | None
    limit: int
    newest_first: bool


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no whitespace, ASCII only; NaN and non-JSON values are refused."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def chain_hash(prev: str, tenant: str, seq: int, decision_id: str, record: dict[str, Any]) -> str:
    """The hash of one row given its predecessor's."""
    body = canonical_json({"id": decision_id, "record": record, "seq": seq, "tenant": tenant})
    return hashlib.sha256(prev.encode("ascii") + body).hexdigest()


def head_message(tenant: str, seq: int, hash_: str) -> bytes:
    """The bytes a head signature covers."""
    return _HEAD_TAG + canonical_json({"hash": hash_, "seq": seq, "tenant": tenant})


def _normalize(record: dict[str, Any]) -> dict[str, Any]:
    try:
        out: dict[str, Any] = json.loads(canonical_json(record))
    except (TypeError, ValueError) as exc:
        raise DecisionLogError(f"decision record is not plain JSON ({exc})") from exc
    out.setdefault("id", f"dec_{uuid.uuid4().hex}")
    out.setdefault("time", datetime.now(UTC).isoformat())
    return out


def _columns(record: dict[str, Any]) -> dict[str, Any]:
    """The indexed columns, derived from the record (``verify`` re-derives and compares)."""
    try:
        result, principal, resource = record["result"], record["principal"], record["resource"]
        created = _utc(datetime.fromisoformat(str(record["time"])))
        cols: dict[str, Any] = {
            "id": record["id"],
            "action": record["action"],
            "principal_id": principal["id"],
            "resource_type": resource["type"],
            "resource_id": resource["id"],
            "outcome": result["outcome"],
            "allowed": result["allowed"],
            "created_at": created,
        }
    except (KeyError, TypeError, ValueError) as exc:
        raise DecisionLogError(f"decision record lacks a field or has a bad value ({exc})") from exc
    for name, size in _SIZES.items():
        if not isinstance(cols[name], str) or not 1 <= len(cols[name]) <= size:
            raise DecisionLogError(f"decision record: `{name}` must be 1..{size} characters")
    if not isinstance(cols["allowed"], bool):
        raise DecisionLogError("decision record: `result.allowed` must be a boolean")
    return cols


def _make_row(tenant: str, seq: int, prev: str, record: dict[str, Any]) -> StoredDecision:
    cols = _columns(record)
    digest = chain_hash(prev, tenant, seq, cols["id"], record)
    return StoredDecision(
        tenant=tenant, seq=seq, record=record, prev_hash=prev, hash=digest, **cols
    )


def encode_cursor(seq: int) -> str:
    """An opaque cursor for the row ``seq``."""
    return base64.urlsafe_b64encode(f"seq:{seq}".encode()).decode()


def decode_cursor(cursor: str) -> int:
    """The seq inside a cursor; :class:`InvalidCursorError` for anything else."""
    try:
        text = base64.urlsafe_b64decode(cursor.encode("ascii")).decode("ascii")
    except (ValueError, binascii.Error):
        text = ""
    if not (text.startswith("seq:") and text[4:].isdigit()):
        raise InvalidCursorError("invalid cursor")
    return int(text[4:])


def _utc(moment: datetime | None) -> datetime | None:
    return moment.replace(tzinfo=UTC) if moment is not None and moment.tzinfo is None else moment


class ChainChecker:
    """Walks one tenant's rows in (seq, id) order, then checks the head against them."""

    def __init__(self, tenant: str, head: _Head | None) -> None:
        self.tenant, self.head = tenant, head
        self.expected, self.prev = 1, GENESIS
        self.seen: dict[int, tuple[str, str]] = {}  # seq -> (id, hash), for the head seqs
        self.bad: VerifyResult | None = None

    def _fail(self, seq: int | None, decision_id: str | None, problem: str) -> VerifyResult:
        last, signed = self.expected - 1, self.head.signed_seq if self.head else 0
        self.bad = VerifyResult(False, last, seq, decision_id, problem, last, signed)
        return self.bad

    def feed(self, row: StoredDecision) -> VerifyResult | None:
        """Check the next row; the first defect is returned (and kept)."""
        seq, rid, expected = row.seq, row.id, self.expected
        if self.bad is not None:
            return self.bad
        if seq < expected:
            return self._fail(seq, rid, f"seq {seq} appears twice (duplicate or reordered row)")
        if seq > expected:
            problem = f"seq {expected} is missing (deleted row); next is seq {seq} ({rid})"
            return self._fail(expected, None, problem)
        if row.prev_hash != self.prev:
            problem = f"prev_hash does not link to seq {seq - 1} (reordered or inserted row)"
            return self._fail(seq, rid, problem)
        if chain_hash(row.prev_hash, self.tenant, seq, rid, row.record) != row.hash:
            return self._fail(seq, rid, "hash does not match the record (edited row)")
        try:
            derived = _columns(row.record)
        except DecisionLogError as exc:
            return self._fail(seq, rid, f"record no longer valid ({exc})")
        if any(getattr(row, k) != v for k, v in derived.items()):
            return self._fail(seq, rid, "indexed columns disagree with the record (edited row)")
        if self.head and seq in (self.head.seq, self.head.signed_seq):
            self.seen[seq] = (rid, row.hash)
        self.prev, self.expected = row.hash, expected + 1
        return None

    def finish(self, public_key: Ed25519PublicKey | None, require_signed: bool) -> VerifyResult:
        """The verdict once every row was fed."""
        last, head = self.expected - 1, self.head
        if self.bad is not None:
            return self.bad
        if head is None:
            return self._fail(None, None, "chain head missing") if last else VerifyResult(True, 0)
        if head.seq > last:
            problem = f"chain head is at seq {head.seq}, rows end at {last} (truncated)"
            return self._fail(last + 1, None, problem)
        if head.seq and self.seen.get(head.seq, ("", ""))[1] != head.hash:
            return self._fail(
                head.seq, self.seen.get(head.seq, (None, ""))[0], "chain head hash does not match"
            )
        if not head.signature:
            return self._fail(None, None, "head not signed") if require_signed else self._ok()
        signed_id = self.seen.get(head.signed_seq, (None, ""))[0]
        message = head_message(self.tenant, head.signed_seq, head.signed_hash)
        try:
            if public_key is not None:
                public_key.verify(base64.b64decode(head.signature, validate=True), message)
        except (InvalidSignature, ValueError):
            return self._fail(head.signed_seq, signed_id, "head signature is invalid")
        if head.signed_seq > last:
            problem = f"signed head is at seq {head.signed_seq}, rows end at {last} (truncated)"
            return self._fail(last + 1, None, problem)
        if self.seen.get(head.signed_seq, ("", ""))[1] != head.signed_hash:
            return self._fail(head.signed_seq, signed_id, "signed head hash does not match")
        return self._ok()

    def _ok(self) -> VerifyResult:
        last, signed = self.expected - 1, self.head.signed_seq if self.head else 0
        return VerifyResult(True, last, last_seq=last, signed_seq=signed)
