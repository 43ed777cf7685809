"""Helpers of tests/server/test_decisionlog.py: records, the backends, and tampering.

Backends: the in-memory twin, the real tables on SQLite, and (when
``AION_TEST_DATABASE_URL`` names a PostgreSQL server, as ``make test`` does)
the real tables on PostgreSQL. Each offers the same tampering operations, done
the way an attacker with database access would: raw SQL on a connection of its
own (no piccolo, no log code), or direct mutation of the twin's state.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import os
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager, closing
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlparse, urlunparse

import asyncpg
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from server.cli import decisions_cmd
from server.cli.common import EXIT_USAGE, UsageError
from server.db.engine import bind, engine_for
from server.db.tables import ALL_TABLES
from server.decisionlog import (
    DecisionLog,
    MemoryDecisionLog,
    PiccoloDecisionLog,
    StoredDecision,
    VerifyResult,
    chain_hash,
)

REPO = Path(__file__).resolve().parents[2]
T = TypeVar("T")
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

    async def aclose(self) -> None:
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

    def duplicate(self, tenant: str, seq: int, new_id: str) -> None:
        rows = self.mem._rows[tenant]
        rows.append(replace(rows[self._index(tenant, seq)], id=new_id))

    def rows(self, tenant: str) -> list[StoredDecision]:
        return sorted(self.mem._rows.get(tenant, []), key=lambda r: r.seq)

    def rehash_from(self, tenant: str, seq: int, upto: int | None = None) -> None:
        """Recompute the hashes from ``seq`` (to ``upto`` or the end, then the head too)."""
        rows = self.rows(tenant)
        prev = rows[seq - 2].hash if seq > 1 else "0" * 64
        for i in range(seq - 1, upto or len(rows)):
            r = rows[i]
            rows[i] = replace(
                r, prev_hash=prev, hash=chain_hash(prev, tenant, r.seq, r.id, r.record)
            )
            prev = rows[i].hash
        self.mem._rows[tenant] = rows
        if upto is None:
            self.set_head(tenant, seq=rows[-1].seq, hash=prev)


def copy_db(source: Path, target: Path) -> None:
    """Copy a SQLite database with the backup API (its WAL included)."""
    with closing(sqlite3.connect(source)) as src, closing(sqlite3.connect(target)) as dst:
        src.backup(dst)


class RawSql:
    """Tampering by raw SQL on a connection of its own: no piccolo, no log code."""

    def sql(self, statement: str, *params: Any) -> list[tuple[Any, ...]]:
        raise NotImplementedError

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
        # An attacker with DDL rights drops the unique (tenant, seq) index first.
        self.sql("DROP INDEX IF EXISTS decisions_tenant_seq")
        where = "WHERE tenant = ? AND seq IN (?, ?)"
        self.sql(f"UPDATE decisions SET seq = ? - seq {where}", a + b, tenant, a, b)

    def duplicate(self, tenant: str, seq: int, new_id: str) -> None:
        self.sql(
            "DROP INDEX IF EXISTS decisions_tenant_seq"
        )  # as an attacker with DDL rights would
        rest = "tenant, seq, created_at, action, principal_id, resource_type, resource_id, "
        rest += "allowed, outcome, record, prev_hash, hash"
        copy = f"SELECT ?, {rest} FROM decisions WHERE tenant = ? AND seq = ?"
        self.sql(f"INSERT INTO decisions (id, {rest}) {copy}", new_id, tenant, seq)

    def set_head(self, tenant: str, **values: Any) -> None:
        for column, value in values.items():
            self.sql(f"UPDATE chain_heads SET {column} = ? WHERE tenant = ?", value, tenant)

    def rehash_from(self, tenant: str, seq: int, upto: int | None = None) -> None:
        """Recompute the hashes from ``seq`` (to ``upto`` or the end, then the head too)."""
        rows = self.sql(
            "SELECT seq, id, record, hash FROM decisions WHERE tenant = ? ORDER BY seq", tenant
        )
        prev = rows[seq - 2][3] if seq > 1 else "0" * 64
        for s, rid, record, _ in rows[seq - 1 : upto]:
            new = chain_hash(prev, tenant, s, rid, json.loads(record))
            self.sql(
                "UPDATE decisions SET prev_hash = ?, hash = ? WHERE tenant = ? AND seq = ?",
                prev, new, tenant, s,
            )  # fmt: skip
            prev = new
        if upto is None:
            self.set_head(tenant, seq=rows[-1][0], hash=prev)


class SqliteFile(RawSql):
    """Raw SQL on the SQLite file."""

    name = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = path

    def sql(self, statement: str, *params: Any) -> list[tuple[Any, ...]]:
        with closing(sqlite3.connect(self.path)) as db, db:
            return db.execute(statement, params).fetchall()


def on_own_loop(work: Coroutine[Any, Any, T]) -> T:
    """Run ``work`` to the end on a fresh event loop in another thread (from sync code)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, work).result()


async def pg(url: str, statement: str, *params: Any) -> list[tuple[Any, ...]]:
    connection = await asyncpg.connect(url)
    try:
        return [tuple(row) for row in await connection.fetch(statement, *params)]
    finally:
        await connection.close()


class PostgresDb(RawSql):
    """Raw SQL on a PostgreSQL database (``?`` placeholders become ``$n``)."""

    name = "postgres"

    def __init__(self, url: str) -> None:
        self.url = url

    def sql(self, statement: str, *params: Any) -> list[tuple[Any, ...]]:
        parts = statement.split("?")
        numbered = parts[0] + "".join(f"${i}{part}" for i, part in enumerate(parts[1:], 1))
        return on_own_loop(pg(self.url, numbered, *params))


class _Bound:
    """The log on the real tables, bound to an engine for the test; the caller's
    transaction is ``engine.transaction()``, as a caller without the log's helper opens it."""

    def __init__(self, database_url: str, data_dir: Path) -> None:
        self.engine = engine_for(database_url, data_dir)
        self._previous = {table: table._meta._db for table in ALL_TABLES}
        bind(self.engine)
        self.piccolo = PiccoloDecisionLog(self.engine)
        self.log: DecisionLog = self.piccolo

    def transaction(self) -> AbstractAsyncContextManager[Any]:
        return self.engine.transaction()

    async def aclose(self) -> None:
        """Close the engine's kept connections (on this loop) and restore the bindings."""
        close = getattr(self.engine, "close", None)
        if close is not None:
            await close()
        for table, db in self._previous.items():
            table._meta._db = db


class SqliteBackend(_Bound, SqliteFile):
    """The real tables on a copy of the migrated SQLite database."""

    def __init__(self, path: Path) -> None:
        SqliteFile.__init__(self, path)
        _Bound.__init__(self, f"sqlite:///{path}", path.parent)


class PostgresBackend(_Bound, PostgresDb):
    """The real tables on a PostgreSQL database made from the migrated template."""

    def __init__(self, url: str) -> None:
        PostgresDb.__init__(self, url)
        _Bound.__init__(self, url, Path("."))


Backend = MemoryBackend | SqliteBackend | PostgresBackend
PG_URL = os.environ.get("AION_TEST_DATABASE_URL", "")


def database_url(name: str) -> str:
    """``AION_TEST_DATABASE_URL`` pointing at database ``name``."""
    return urlunparse(urlparse(PG_URL)._replace(path=f"/{name}"))


def create_database(template: str | None = None) -> str:
    """A new PostgreSQL database (a copy of ``template`` if given); its URL."""
    name = f"aion_dl_{uuid.uuid4().hex[:12]}"
    copy_of = f' TEMPLATE "{template}"' if template else ""
    on_own_loop(pg(PG_URL, f'CREATE DATABASE "{name}"{copy_of}'))
    return database_url(name)


def drop_database(url: str) -> None:
    name = urlparse(url).path.lstrip("/")
    on_own_loop(pg(PG_URL, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def migrate(data_dir: Path, database_url: str = "") -> Path:
    """Run the real piccolo migrations (SQLite in ``data_dir`` unless a URL is given)."""
    env = {k: v for k, v in os.environ.items() if k != "AION_DATABASE_URL"}
    env |= {"PICCOLO_CONF": "server.db.piccolo_conf", "AION_DATA_DIR": str(data_dir)}
    if database_url:
        env["AION_DATABASE_URL"] = database_url
    piccolo = Path(sys.executable).with_name("piccolo")
    cmd = [str(piccolo), "migrations", "forwards", "aion"]
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return data_dir / "aion.db"


async def fill(b: Backend, count: int, tenant: str = TENANT, **kw: Any) -> list[StoredDecision]:
    out = []
    for n in range(1, count + 1):
        async with b.transaction():
            out.append(await b.log.append(tenant, make_record(n, tenant=tenant, **kw)))
    return out


async def fill_and_close(b: Backend, count: int, **kw: Any) -> None:
    """``fill``, then close the backend (for sync callers that run their own loop)."""
    try:
        await fill(b, count, **kw)
    finally:
        await b.aclose()


def forge(b: Backend, seq: int) -> None:
    """Rewrite a deny as an allow, record and indexed columns alike."""
    b.edit_record(TENANT, seq, forge_allow)
    b.edit_column(TENANT, seq, "outcome", "allow")
    b.edit_column(TENANT, seq, "allowed", True)


def bad(result: VerifyResult, seq: int | None, decision_id: str | None, words: str) -> None:
    assert not result.ok, result
    assert (result.first_bad_seq, result.first_bad_id) == (seq, decision_id), result
    assert words in (result.problem or ""), result


def write_keys(key: Ed25519PrivateKey, where: Path) -> None:
    """``head.pem`` (private) and ``head.pub`` (public), as the CLI takes them."""
    pem = serialization.Encoding.PEM
    public = key.public_key().public_bytes(pem, serialization.PublicFormat.SubjectPublicKeyInfo)
    (where / "head.pub").write_bytes(public)
    private = serialization.PrivateFormat.PKCS8
    (where / "head.pem").write_bytes(key.private_bytes(pem, private, serialization.NoEncryption()))


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str, str]:
    """Parse and dispatch like `aion` does (main.py maps UsageError to exit 2)."""
    parser = argparse.ArgumentParser(prog="aion")
    decisions_cmd.register(parser.add_subparsers(dest="command", required=True))
    try:
        args = parser.parse_args([str(a) for a in argv])
        code: int = args.handler(args)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        code = EXIT_USAGE
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err
