"""Helpers of tests/server/test_decisionlog.py: records, the two backends, and tampering.

Each backend offers the same tampering operations, done the way an attacker
with database access would: raw SQL on the SQLite file (no piccolo, no log
code), direct mutation of the in-memory twin's state.
"""

from __future__ import annotations

import copy
import json
import sqlite3
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager, closing
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from server.db.engine import bind, engine_for
from server.db.tables import ALL_TABLES
from server.decisionlog import (
    DecisionLog,
    MemoryDecisionLog,
    PiccoloDecisionLog,
    StoredDecision,
    chain_hash,
)

TENANT = "acme"
OTHER = "globex"
T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def make_record(
    n: int,
    *,
    tenant: str = TENANT,
    action: str = "agent.deploy",
    outcome: str = "allow",
    principal: str = "usr_alice",
    resource_id: str | None = None,
) -> dict[str, Any]:
    """A decision record shaped like the gate's, at ``T0 + n minutes``."""
    return {
        "id": f"dec_{tenant}_{n}",
        "time": (T0 + timedelta(minutes=n)).isoformat(),
        "principal": {"id": principal, "tenant": tenant, "roles": ["operator"], "kind": "user"},
        "action": action,
        "resource": {"type": "agent", "id": resource_id or f"agt_{n}", "tenant": tenant},
        "input": {"context": {"api_key": "***"}, "note": "naïve ✓"},
        "result": {
            "allowed": outcome == "allow",
            "outcome": outcome,
            "mode": "enforce",
            "reasons": [] if outcome == "allow" else [{"policy": "p1", "message": "no"}],
            "warnings": [],
            "obligations": [],
            "errors": [],
        },
        "revisions": {"aion": "7"},
        "timings": {"total_us": 41.5},
        "trace_id": f"trace-{n}",
    }


def forge_allow(record: dict[str, Any]) -> None:
    """Turn a recorded deny into an allow (the edit an attacker wants)."""
    record["result"]["allowed"] = True
    record["result"]["outcome"] = "allow"


class MemoryBackend:
    """The in-memory twin; the caller's transaction is ``log.transaction()``."""

    name = "memory"

    def __init__(self) -> None:
        self.mem = MemoryDecisionLog()
        self.log: DecisionLog = self.mem

    def transaction(self) -> AbstractAsyncContextManager[Any]:
        return self.mem.transaction()

    def close(self) -> None:
        pass

    def _index(self, tenant: str, seq: int) -> int:
        return next(i for i, r in enumerate(self.mem._rows[tenant]) if r.seq == seq)

    def edit_record(self, tenant: str, seq: int, change: Callable[[dict[str, Any]], None]) -> None:
        i, rows = self._index(tenant, seq), self.mem._rows[tenant]
        record = copy.deepcopy(rows[i].record)
        change(record)
        rows[i] = replace(rows[i], record=record)

    def edit_column(self, tenant: str, seq: int, column: str, value: Any) -> None:
        i, rows = self._index(tenant, seq), self.mem._rows[tenant]
        rows[i] = replace(rows[i], **{column: value})

    def delete(self, tenant: str, *seqs: int) -> None:
        self.mem._rows[tenant] = [r for r in self.mem._rows[tenant] if r.seq not in seqs]

    def swap_seq(self, tenant: str, a: int, b: int) -> None:
        rows = self.mem._rows[tenant]
        i, j = self._index(tenant, a), self._index(tenant, b)
        rows[i], rows[j] = replace(rows[i], seq=b), replace(rows[j], seq=a)

    def set_head(self, tenant: str, **values: Any) -> None:
        for key, value in values.items():
            setattr(self.mem._heads[tenant], key, value)

    def rows(self, tenant: str) -> list[StoredDecision]:
        return sorted(self.mem._rows.get(tenant, []), key=lambda r: r.seq)

    def rehash_from(self, tenant: str, seq: int) -> None:
        """Recompute every hash from ``seq`` on and move the (unsigned) head: a careful forger."""
        rows = self.rows(tenant)
        prev = rows[seq - 2].hash if seq > 1 else "0" * 64
        for i in range(seq - 1, len(rows)):
            r = rows[i]
            rows[i] = replace(r, prev_hash=prev, hash=chain_hash(prev, tenant, r.seq, r.id, r.record))
            prev = rows[i].hash
        self.mem._rows[tenant] = rows
        self.set_head(tenant, seq=rows[-1].seq, hash=prev)


class SqliteBackend:
    """The real tables on a SQLite file made by the piccolo migration; the caller's
    transaction is ``engine.transaction()``, exactly as the gate opens it."""

    name = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.engine = engine_for(f"sqlite:///{path}", path.parent)
        self._previous = {table: table._meta.db for table in ALL_TABLES}
        bind(self.engine)
        self.piccolo = PiccoloDecisionLog(self.engine)
        self.log: DecisionLog = self.piccolo

    def transaction(self) -> AbstractAsyncContextManager[Any]:
        return self.engine.transaction()

    def close(self) -> None:
        for table, db in self._previous.items():
            table._meta.db = db

    def sql(self, statement: str, *params: Any) -> list[tuple[Any, ...]]:
        with closing(sqlite3.connect(self.path)) as db, db:
            return db.execute(statement, params).fetchall()

    def edit_record(self, tenant: str, seq: int, change: Callable[[dict[str, Any]], None]) -> None:
        where = "WHERE tenant = ? AND seq = ?"
        ((text,),) = self.sql(f"SELECT record FROM decisions {where}", tenant, seq)
        record = json.loads(text)
        change(record)
        self.sql(f"UPDATE decisions SET record = ? {where}", json.dumps(record), tenant, seq)

    def edit_column(self, tenant: str, seq: int, column: str, value: Any) -> None:
        where = "WHERE tenant = ? AND seq = ?"
        self.sql(f"UPDATE decisions SET {column} = ? {where}", value, tenant, seq)

    def delete(self, tenant: str, *seqs: int) -> None:
        for seq in seqs:
            self.sql("DELETE FROM decisions WHERE tenant = ? AND seq = ?", tenant, seq)

    def swap_seq(self, tenant: str, a: int, b: int) -> None:
        self.sql(
            "UPDATE decisions SET seq = CASE seq WHEN ? THEN ? ELSE ? END "
            "WHERE tenant = ? AND seq IN (?, ?)",
            a, b, a, tenant, a, b,
        )  # fmt: skip

    def set_head(self, tenant: str, **values: Any) -> None:
        for column, value in values.items():
            self.sql(f"UPDATE chain_heads SET {column} = ? WHERE tenant = ?", value, tenant)

    def rehash_from(self, tenant: str, seq: int) -> None:
        """Recompute every hash from ``seq`` on and move the (unsigned) head: a careful forger."""
        rows = self.sql(
            "SELECT seq, id, record, hash FROM decisions WHERE tenant = ? ORDER BY seq", tenant
        )
        prev = rows[seq - 2][3] if seq > 1 else "0" * 64
        for s, rid, record, _ in rows[seq - 1 :]:
            new = chain_hash(prev, tenant, s, rid, json.loads(record))
            self.sql(
                "UPDATE decisions SET prev_hash = ?, hash = ? WHERE tenant = ? AND seq = ?",
                prev, new, tenant, s,
            )  # fmt: skip
            prev = new
        self.set_head(tenant, seq=rows[-1][0], hash=prev)


Backend = MemoryBackend | SqliteBackend
