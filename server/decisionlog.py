"""The decision log: append-only, hash-chained per tenant, with a signed head.

Row ``seq`` (1, 2, ... per tenant) stores ``hash = sha256(prev_hash ||
canonical_json({"id", "record", "seq", "tenant"}))``; ``prev_hash`` is the hash
of ``seq - 1`` (64 zeros for seq 1); canonical JSON has sorted keys, no
whitespace, ASCII escapes. The tenant's ``ChainHead`` row holds the last (seq,
hash) and appends serialize on it. ``sign_head`` signs (tenant, seq, hash) with
Ed25519 so truncation is detected and the head can be anchored elsewhere.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import json
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol, TypedDict

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from piccolo.columns import Column
from piccolo.columns.combination import And, Or, Where
from piccolo.engine.base import Engine
from piccolo.engine.sqlite import SQLiteEngine, TransactionType

from server.db.tables import ChainHead, Decision

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


class DecisionLog(Protocol):
    """What the gate, the API and the CLI use."""

    def transaction(self) -> AbstractAsyncContextManager[Any]: ...
    async def append(self, tenant: str, record: dict[str, Any]) -> StoredDecision: ...
    async def get(self, tenant: str, decision_id: str) -> StoredDecision | None: ...
    async def list(
        self,
        tenant: str,
        *,
        action: str | None = None,
        outcome: str | None = None,
        resource_id: str | None = None,
        principal_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        cursor: str | None = None,
        limit: int = 50,
        newest_first: bool = True,
    ) -> DecisionPage: ...
    async def verify(
        self, tenant: str, public_key: Ed25519PublicKey | None, *, require_signed_head: bool = False
    ) -> VerifyResult: ...
    async def sign_head(self, tenant: str, key: Ed25519PrivateKey) -> HeadExport: ...
    async def export_head(self, tenant: str) -> HeadExport: ...


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


class _LogBase:
    """What both implementations share: paging, verification, head export."""

    async def _select(self, tenant: str, query: _Query) -> Sequence[StoredDecision]:
        raise NotImplementedError

    async def _head(self, tenant: str) -> _Head | None:
        raise NotImplementedError

    def _pages(self, tenant: str) -> AsyncIterator[Sequence[StoredDecision]]:
        raise NotImplementedError

    async def _store_signature(self, tenant: str, signed: HeadExport) -> None:
        raise NotImplementedError

    async def list(
        self,
        tenant: str,
        *,
        action: str | None = None,
        outcome: str | None = None,
        resource_id: str | None = None,
        principal_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        cursor: str | None = None,
        limit: int = 50,
        newest_first: bool = True,
    ) -> DecisionPage:
        """A page of the tenant's decisions matching every given filter (newest first)."""
        if not 1 <= limit <= 1000:
            raise ValueError("limit must be between 1 and 1000")
        given = zip(_FILTERS, (action, outcome, resource_id, principal_id), strict=True)
        after = decode_cursor(cursor) if cursor is not None else None
        filters = {k: v for k, v in given if v is not None}
        query = _Query(filters, _utc(since), _utc(until), after, limit, newest_first)
        rows = await self._select(tenant, query)
        more = encode_cursor(rows[limit - 1].seq) if len(rows) > limit else None
        return DecisionPage(tuple(rows[:limit]), more)

    async def verify(
        self, tenant: str, public_key: Ed25519PublicKey | None, *, require_signed_head: bool = False
    ) -> VerifyResult:
        """Walk the tenant's chain (see :class:`ChainChecker`); no key: signature unchecked."""
        checker = ChainChecker(tenant, await self._head(tenant))  # head first: appends only add
        async for page in self._pages(tenant):
            if any(checker.feed(row) is not None for row in page):
                break
        return checker.finish(public_key, require_signed_head)

    async def sign_head(self, tenant: str, key: Ed25519PrivateKey) -> HeadExport:
        """Sign the tenant's current (seq, hash); the stored signed head never moves back."""
        head = await self._head(tenant) or _Head()
        if head.seq == 0:
            raise DecisionLogError(f"tenant `{tenant}` has no decisions to sign")
        sig = base64.b64encode(key.sign(head_message(tenant, head.seq, head.hash))).decode()
        signed = HeadExport(tenant=tenant, seq=head.seq, hash=head.hash, signature=sig)
        await self._store_signature(tenant, signed)
        return signed

    async def export_head(self, tenant: str) -> HeadExport:
        """The last signed head (seq 0 and empty strings when never signed)."""
        head = await self._head(tenant)
        if head is None or not head.signature:
            return HeadExport(tenant=tenant, seq=0, hash="", signature="")
        return HeadExport(
            tenant=tenant, seq=head.signed_seq, hash=head.signed_hash, signature=head.signature
        )


@dataclass
class _MemoryTxn:
    saved: dict[str, tuple[int, _Head]] = field(default_factory=dict)


class MemoryDecisionLog(_LogBase):
    """In-memory twin: same semantics; ``transaction()`` serializes appends and rolls back."""

    def __init__(self) -> None:
        self._rows: dict[str, list[StoredDecision]] = {}
        self._heads: dict[str, _Head] = {}
        self._lock = asyncio.Lock()
        self._txn: ContextVar[_MemoryTxn | None] = ContextVar(f"memlog{id(self)}", default=None)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        """Join the running transaction or open one; an exception undoes its appends."""
        if self._txn.get() is not None:
            yield
            return
        async with self._lock:
            txn = _MemoryTxn()
            token = self._txn.set(txn)
            try:
                yield
            except BaseException:
                for tenant, (count, head) in txn.saved.items():
                    del self._rows[tenant][count:]
                    self._heads[tenant] = head
                raise
            finally:
                self._txn.reset(token)

    async def append(self, tenant: str, record: dict[str, Any]) -> StoredDecision:
        """Append ``record`` as the tenant's next row (in the running transaction, if any)."""
        record = _normalize(record)
        async with self.transaction():
            txn, rows = self._txn.get(), self._rows.setdefault(tenant, [])
            head = self._heads.setdefault(tenant, _Head())
            if txn is not None and tenant not in txn.saved:
                txn.saved[tenant] = (len(rows), replace(head))
            if any(r.id == record["id"] for rs in self._rows.values() for r in rs):
                raise DecisionLogError(f"decision `{record['id']}` already exists")
            row = _make_row(tenant, head.seq + 1, head.hash, record)
            rows.append(row)
            head.seq, head.hash = row.seq, row.hash
            return row

    async def get(self, tenant: str, decision_id: str) -> StoredDecision | None:
        """The tenant's decision ``decision_id``; None for a missing or another tenant's one."""
        return next((r for r in self._rows.get(tenant, []) if r.id == decision_id), None)

    async def _select(self, tenant: str, query: _Query) -> Sequence[StoredDecision]:
        after, desc = query.after, query.newest_first
        rows = sorted(self._rows.get(tenant, []), key=lambda r: r.seq, reverse=desc)
        return [
            r
            for r in rows
            if all(getattr(r, k) == v for k, v in query.filters.items())
            and (query.since is None or r.created_at >= query.since)
            and (query.until is None or r.created_at < query.until)
            and (after is None or (r.seq < after if desc else r.seq > after))
        ][: query.limit + 1]

    async def _head(self, tenant: str) -> _Head | None:
        head = self._heads.get(tenant)
        return replace(head) if head else None

    async def _pages(self, tenant: str) -> AsyncIterator[Sequence[StoredDecision]]:
        yield sorted(self._rows.get(tenant, []), key=lambda r: (r.seq, r.id))

    async def _store_signature(self, tenant: str, signed: HeadExport) -> None:
        head = self._heads[tenant]
        if signed["seq"] >= head.signed_seq:
            head.signed_seq, head.signed_hash = signed["seq"], signed["hash"]
            head.signature = signed["signature"]


def _from_db(row: dict[str, Any]) -> StoredDecision:
    record = row["record"]
    values = {**row, "record": json.loads(record) if isinstance(record, str | bytes) else record}
    return StoredDecision(**{**values, "allowed": bool(values["allowed"])})


class PiccoloDecisionLog(_LogBase):
    """The log in the ``decisions`` and ``chain_heads`` tables, on SQLite or PostgreSQL.

    ``append`` runs inside the caller's ``engine.transaction()`` (it refuses to
    run outside one and never opens its own), so the row commits or rolls back
    with the change it allows. Its first statement bumps the tenant's
    ``chain_heads`` row (``UPDATE ... SET seq = seq + 1 RETURNING``): a row lock
    on PostgreSQL, the database write lock on SQLite, held to commit, so
    concurrent appends of a tenant serialize and seqs stay contiguous. On
    SQLite a transaction that reads before appending should be IMMEDIATE (see
    :meth:`transaction`) to avoid a lock-upgrade ``database is locked``.
    """

    page_size = 500

    def __init__(self, engine: Engine[Any]) -> None:
        self.engine = engine

    def _bound(self) -> Engine[Any]:
        if Decision._meta.db is not self.engine or ChainHead._meta.db is not self.engine:
            raise DecisionLogError("tables not bound to this log's engine (server.db.engine.bind)")
        return self.engine

    def transaction(self) -> AbstractAsyncContextManager[Any]:
        """A write transaction (IMMEDIATE on SQLite); joins the running one if any."""
        engine = self._bound()
        if isinstance(engine, SQLiteEngine):
            txn: AbstractAsyncContextManager[Any] = engine.transaction(TransactionType.immediate)
        else:
            txn = engine.transaction()
        return txn

    async def _bump(self, tenant: str) -> tuple[int, str]:
        """Take the next seq (and the hash before it) under the tenant's head lock."""
        got: list[dict[str, Any]] = []
        for attempt in range(2):
            bump = ChainHead.update({ChainHead.seq: ChainHead.seq + 1})
            bump = bump.where(ChainHead.tenant == tenant)
            got = await bump.returning(ChainHead.seq, ChainHead.hash).run()
            if got or attempt:
                break
            first = ChainHead.insert(ChainHead(tenant=tenant, seq=0, hash=GENESIS))
            await first.on_conflict(action="DO NOTHING").run()
        return int(got[0]["seq"]), str(got[0]["hash"] or GENESIS)

    async def append(self, tenant: str, record: dict[str, Any]) -> StoredDecision:
        """Append ``record`` as the tenant's next row, in the caller's open transaction."""
        if not self._bound().transaction_exists():
            raise DecisionLogError("append must run inside the caller's transaction")
        record = _normalize(record)
        _columns(record)  # refuse a bad record before taking the head lock
        seq, prev = await self._bump(tenant)
        row = _make_row(tenant, seq, prev, record)
        values = {**row.__dict__, "record": canonical_json(record).decode()}
        await Decision.insert(Decision(**values)).run()
        await ChainHead.update({ChainHead.hash: row.hash}).where(ChainHead.tenant == tenant).run()
        return row

    async def get(self, tenant: str, decision_id: str) -> StoredDecision | None:
        """The tenant's decision ``decision_id``; None for a missing or another tenant's one."""
        self._bound()
        where = (Decision.tenant == tenant) & (Decision.id == decision_id)
        row = await Decision.select().where(where).first().run()
        return _from_db(row) if row else None

    async def _select(self, tenant: str, query: _Query) -> Sequence[StoredDecision]:
        self._bound()
        where: list[Where | And | Or] = [Decision.tenant == tenant]
        where += [getattr(Decision, k) == v for k, v in query.filters.items()]
        if query.since is not None:
            where.append(Decision.created_at >= query.since)
        if query.until is not None:
            where.append(Decision.created_at < query.until)
        if query.after is not None:
            seq = Decision.seq
            where.append(seq < query.after if query.newest_first else seq > query.after)
        select = Decision.select().where(*where).limit(query.limit + 1)
        select = select.order_by(Decision.seq, ascending=not query.newest_first)
        return [_from_db(r) for r in await select.run()]

    async def _head(self, tenant: str) -> _Head | None:
        self._bound()
        row = await ChainHead.select().where(ChainHead.tenant == tenant).first().run()
        if row is None:
            return None
        fields = ("seq", "signed_seq", "signed_hash", "signature")
        return _Head(hash=row["hash"] or GENESIS, **{k: row[k] for k in fields})

    async def _pages(self, tenant: str) -> AsyncIterator[Sequence[StoredDecision]]:
        seq, rid = 0, ""
        while True:
            after = (Decision.seq > seq) | ((Decision.seq == seq) & (Decision.id > rid))
            query = Decision.select().where((Decision.tenant == tenant) & after)
            rows = await query.order_by(Decision.seq, Decision.id).limit(self.page_size).run()
            if not rows:
                return
            yield [_from_db(r) for r in rows]
            seq, rid = rows[-1]["seq"], rows[-1]["id"]

    async def _store_signature(self, tenant: str, signed: HeadExport) -> None:
        values: dict[Column | str, Any] = {ChainHead.signature: signed["signature"]}
        values |= {ChainHead.signed_seq: signed["seq"], ChainHead.signed_hash: signed["hash"]}
        newer = (ChainHead.tenant == tenant) & (ChainHead.signed_seq <= signed["seq"])
        await ChainHead.update(values).where(newer).run()
