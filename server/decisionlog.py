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
import contextlib
import json
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from piccolo.columns import Column
from piccolo.columns.combination import And, Or, Where
from piccolo.engine.base import Engine
from piccolo.engine.sqlite import SQLiteEngine, TransactionType

from server.db.tables import ChainHead, Decision
from server.decisionchain import (
    _FILTERS,
    GENESIS,
    ChainChecker,
    DecisionLogError,
    DecisionPage,
    HeadExport,
    InvalidCursorError,
    StoredDecision,
    VerifyResult,
    _columns,
    _Head,
    _make_row,
    _normalize,
    _Query,
    _utc,
    canonical_json,
    chain_hash,
    decode_cursor,
    encode_cursor,
    head_message,
)


class DecisionLog(Protocol):
    """What the gate, the API and the CLI use."""

    def transaction(self) -> AbstractAsyncContextManager[Any]: ...
    async def append(self, tenant: str, record: dict[str, Any]) -> StoredDecision: ...
    async def append_many(
        self, tenant: str, records: Sequence[dict[str, Any]]
    ) -> list[StoredDecision]: ...
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

    async def append_many(
        self, tenant: str, records: Sequence[dict[str, Any]]
    ) -> list[StoredDecision]:
        """Append ``records`` in order, all or none."""
        async with self.transaction():
            return [await self.append(tenant, record) for record in records]

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

    async def _bump(self, tenant: str, count: int) -> tuple[int, str]:
        """Take the next ``count`` seqs under the tenant's head lock: (first seq, hash before it)."""
        got: list[dict[str, Any]] = []
        for attempt in range(2):
            bump = ChainHead.update({ChainHead.seq: ChainHead.seq + count})
            bump = bump.where(ChainHead.tenant == tenant)
            got = await bump.returning(ChainHead.seq, ChainHead.hash).run()
            if got or attempt:
                break
            first = ChainHead.insert(ChainHead(tenant=tenant, seq=0, hash=GENESIS))
            await first.on_conflict(action="DO NOTHING").run()
        return int(got[0]["seq"]) - count + 1, str(got[0]["hash"] or GENESIS)

    async def append(self, tenant: str, record: dict[str, Any]) -> StoredDecision:
        """Append ``record`` as the tenant's next row, in the caller's open transaction."""
        return (await self.append_many(tenant, [record]))[0]

    async def append_many(
        self, tenant: str, records: Sequence[dict[str, Any]]
    ) -> list[StoredDecision]:
        """Append ``records`` as the tenant's next rows, in the caller's open transaction.

        Three statements however many records: take the seqs, insert the rows
        (their hashes chained here), move the head's hash.
        """
        if not self._bound().transaction_exists():
            raise DecisionLogError("append must run inside the caller's transaction")
        if not records:
            return []
        normalized = [_normalize(record) for record in records]
        for record in normalized:
            _columns(record)  # refuse a bad record before taking the head lock
        seq, prev = await self._bump(tenant, len(normalized))
        rows: list[StoredDecision] = []
        for offset, record in enumerate(normalized):
            rows.append(_make_row(tenant, seq + offset, prev, record))
            prev = rows[-1].hash
        values = [
            Decision(**{**row.__dict__, "record": canonical_json(row.record).decode()})
            for row in rows
        ]
        await Decision.insert(*values).run()
        await ChainHead.update({ChainHead.hash: prev}).where(ChainHead.tenant == tenant).run()
        return rows

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


__all__ = [
    "GENESIS",
    "ChainChecker",
    "DecisionLog",
    "DecisionLogError",
    "DecisionPage",
    "HeadExport",
    "InvalidCursorError",
    "MemoryDecisionLog",
    "PiccoloDecisionLog",
    "StoredDecision",
    "VerifyResult",
    "canonical_json",
    "chain_hash",
    "decode_cursor",
    "encode_cursor",
    "head_message",
]
