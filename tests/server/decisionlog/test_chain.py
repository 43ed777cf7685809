"""The decision log: hash chain, tamper detection, listing and transactions.

Shared behaviour runs on every backend: the real tables in a SQLite file made by
the piccolo migrations, the in-memory twin, and, when ``AION_TEST_DATABASE_URL``
names a PostgreSQL server (``make test`` starts one), the real tables there.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import json
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from server.db.tables import Decision
from server.decisionlog import (
    GENESIS,
    DecisionLogError,
    InvalidCursorError,
    PiccoloDecisionLog,
    StoredDecision,
    head_message,
)
from tests.server.conftest_decisionlog import (
    OTHER,
    T0,
    TENANT,
    Backend,
    SqliteBackend,
    bad,
    fill,
    forge,
    forge_allow,
    make_record,
)

pytestmark = pytest.mark.anyio
REPO = Path(__file__).resolve().parents[3]


# ---------------------------------------------------------------- chain


async def test_append_numbers_and_links_rows(backend: Backend, key: Ed25519PrivateKey) -> None:
    rows = await fill(backend, 5)
    assert [r.seq for r in rows] == [1, 2, 3, 4, 5]
    assert rows[0].prev_hash == GENESIS
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(rows))
    assert len({r.hash for r in rows}) == 5
    result = await backend.log.verify(TENANT, key.public_key())
    assert (result.ok, result.checked, result.last_seq) == (True, 5, 5)


async def test_hash_is_sha256_of_prev_hash_and_canonical_json(backend: Backend) -> None:
    (first, second) = await fill(backend, 2)
    for row, prev in ((first, "0" * 64), (second, first.hash)):
        body = {"id": row.id, "record": make_record(row.seq), "seq": row.seq, "tenant": TENANT}
        text = json.dumps(body, sort_keys=True, separators=(",", ":"))
        assert row.hash == hashlib.sha256((prev + text).encode()).hexdigest()


async def test_stored_row_reads_back_with_its_columns(backend: Backend) -> None:
    async with backend.transaction():
        made = await backend.log.append(TENANT, make_record(1, outcome="deny", resource_id="agt_x"))
    got = await backend.log.get(TENANT, made.id)
    assert got == made
    assert (got.action, got.outcome, got.allowed) == ("agent.deploy", "deny", False)
    assert (got.principal_id, got.resource_type, got.resource_id) == ("usr_alice", "agent", "agt_x")
    assert got.created_at == T0.replace(minute=1)
    assert got.record["input"]["note"] == "naïve ✓"


async def test_tenants_have_separate_chains_and_never_see_each_other(backend: Backend) -> None:
    mine = await fill(backend, 3)
    theirs = await fill(backend, 2, tenant=OTHER)
    assert [r.seq for r in theirs] == [1, 2]
    assert await backend.log.get(OTHER, mine[0].id) is None
    assert await backend.log.get(TENANT, theirs[0].id) is None
    assert await backend.log.get(TENANT, "dec_missing") is None
    assert {r.tenant for r in (await backend.log.list(TENANT)).items} == {TENANT}
    assert (await backend.log.verify(OTHER, None)).checked == 2


async def test_a_bad_record_is_refused_and_consumes_nothing(backend: Backend) -> None:
    broken = make_record(1)
    del broken["result"]["outcome"]
    for record in (broken, make_record(1) | {"time": T0}, make_record(1) | {"x": float("nan")}):
        with pytest.raises(DecisionLogError):
            async with backend.transaction():
                await backend.log.append(TENANT, record)
    assert (await fill(backend, 1))[0].seq == 1


async def test_missing_id_and_time_are_filled_in(backend: Backend) -> None:
    record = {k: v for k, v in make_record(1).items() if k not in ("id", "time")}
    async with backend.transaction():
        row = await backend.log.append(TENANT, record)
    assert row.id.startswith("dec_") and row.record["id"] == row.id
    assert await backend.log.get(TENANT, row.id) == row


# ---------------------------------------------------------------- tampering


async def test_edited_record_is_named(backend: Backend, key: Ed25519PrivateKey) -> None:
    rows = await fill(backend, 5, outcome="deny")
    backend.edit_record(TENANT, 3, lambda record: record["result"].update(reasons=[]))
    bad(await backend.log.verify(TENANT, key.public_key()), 3, rows[2].id, "hash does not match")
    backend.edit_record(TENANT, 2, forge_allow)  # an earlier edit is the one named
    bad(await backend.log.verify(TENANT, key.public_key()), 2, rows[1].id, "edited row")


async def test_edited_indexed_column_is_named(backend: Backend) -> None:
    rows = await fill(backend, 5, outcome="deny")
    backend.edit_column(TENANT, 4, "outcome", "allow")
    bad(await backend.log.verify(TENANT, None), 4, rows[3].id, "columns disagree")


async def test_rehashed_edit_breaks_the_link_of_the_next_row(backend: Backend) -> None:
    rows = await fill(backend, 5, outcome="deny")
    forge(backend, 2)
    # row 2 is self-consistent again, but row 3 still points at its old hash
    backend.rehash_from(TENANT, 2, upto=2)
    bad(await backend.log.verify(TENANT, None), 3, rows[2].id, "does not link")


async def test_deleted_middle_row_is_named(backend: Backend) -> None:
    rows = await fill(backend, 5)
    backend.delete(TENANT, 3)
    result = await backend.log.verify(TENANT, None)
    bad(result, 3, None, "seq 3 is missing")
    assert rows[3].id in (result.problem or "") and result.checked == 2


async def test_duplicated_row_is_named(backend: Backend) -> None:
    await fill(backend, 5)
    backend.duplicate(TENANT, 3, "dec_acme_3_copy")  # sorts after the original
    bad(await backend.log.verify(TENANT, None), 3, "dec_acme_3_copy", "seq 3 appears twice")


async def test_swapped_rows_are_named(backend: Backend) -> None:
    rows = await fill(backend, 5)
    backend.swap_seq(TENANT, 3, 4)
    bad(await backend.log.verify(TENANT, None), 3, rows[3].id, "reordered")


async def test_truncation_is_detected(backend: Backend, key: Ed25519PrivateKey) -> None:
    rows = await fill(backend, 6)
    await backend.log.sign_head(TENANT, key)
    backend.delete(TENANT, 5, 6)
    bad(await backend.log.verify(TENANT, key.public_key()), 5, None, "head is at seq 6")
    backend.set_head(TENANT, seq=4, hash=rows[3].hash)  # the unsigned head is rewound too
    bad(await backend.log.verify(TENANT, key.public_key()), 5, None, "signed head is at seq 6")


async def test_rewritten_chain_is_caught_by_the_signed_head(
    backend: Backend, key: Ed25519PrivateKey
) -> None:
    rows = await fill(backend, 6, outcome="deny")
    await backend.log.sign_head(TENANT, key)
    forge(backend, 2)
    backend.rehash_from(TENANT, 2)  # every hash and the unsigned head are consistent again
    bad(await backend.log.verify(TENANT, key.public_key()), 6, rows[5].id, "signed head hash")


async def test_forged_head_signature_is_detected(backend: Backend, key: Ed25519PrivateKey) -> None:
    rows = await fill(backend, 4)
    await backend.log.sign_head(TENANT, key)
    forged = Ed25519PrivateKey.generate().sign(head_message(TENANT, 4, rows[3].hash))
    backend.set_head(TENANT, signature=base64.b64encode(forged).decode())
    bad(await backend.log.verify(TENANT, key.public_key()), 4, rows[3].id, "signature is invalid")
    backend.set_head(TENANT, signature="not base64!")
    bad(await backend.log.verify(TENANT, key.public_key()), 4, rows[3].id, "signature is invalid")
    genuine = base64.b64encode(key.sign(head_message(TENANT, 4, rows[3].hash))).decode()
    backend.set_head(TENANT, signature=genuine)  # the right signature again ...
    assert (await backend.log.verify(TENANT, key.public_key())).ok
    stranger = Ed25519PrivateKey.generate().public_key()  # ... checked with the wrong key
    bad(await backend.log.verify(TENANT, stranger), 4, rows[3].id, "signature is invalid")
    backend.set_head(TENANT, signed_seq=2, signed_hash=rows[1].hash)  # moved under the signature
    bad(await backend.log.verify(TENANT, key.public_key()), 2, rows[1].id, "signature is invalid")


async def test_unsigned_head_passes_unless_a_signature_is_required(backend: Backend) -> None:
    await fill(backend, 2)
    assert (await backend.log.verify(TENANT, None)).ok
    bad(await backend.log.verify(TENANT, None, require_signed_head=True), None, None, "not signed")


async def test_sign_and_export_head(backend: Backend, key: Ed25519PrivateKey) -> None:
    empty = await backend.log.export_head(TENANT)
    assert (empty["tenant"], empty["seq"], empty["hash"], empty["signature"]) == (TENANT, 0, "", "")
    with pytest.raises(DecisionLogError):
        await backend.log.sign_head(TENANT, key)
    rows = await fill(backend, 3)
    signed = await backend.log.sign_head(TENANT, key)
    assert await backend.log.export_head(TENANT) == signed
    assert (signed["seq"], signed["hash"]) == (3, rows[2].hash)
    key.public_key().verify(
        base64.b64decode(signed["signature"]), head_message(TENANT, 3, rows[2].hash)
    )
    await fill(backend, 1, tenant=OTHER)
    result = await backend.log.verify(TENANT, key.public_key())
    assert (result.ok, result.signed_seq) == (True, 3)


# ---------------------------------------------------------------- listing


async def test_list_filters(backend: Backend) -> None:
    log = backend.log
    for n in range(1, 9):
        kw: dict[str, Any] = {
            "outcome": "deny" if n % 2 else "allow",
            "resource_id": f"agt_{n % 3}",
        }
        kw |= {"action": "tool.bind" if n > 6 else "agent.deploy", "principal": f"usr_{n % 2}"}
        async with backend.transaction():
            await log.append(TENANT, make_record(n, **kw))

    def seqs(page: Any) -> list[int]:
        return [r.seq for r in page.items]

    assert seqs(await log.list(TENANT)) == [8, 7, 6, 5, 4, 3, 2, 1]
    assert seqs(await log.list(TENANT, outcome="deny")) == [7, 5, 3, 1]
    assert seqs(await log.list(TENANT, action="tool.bind")) == [8, 7]
    assert seqs(await log.list(TENANT, resource_id="agt_1")) == [7, 4, 1]
    assert seqs(await log.list(TENANT, principal_id="usr_0", outcome="allow")) == [8, 6, 4, 2]
    window = await log.list(TENANT, since=T0.replace(minute=3), until=T0.replace(minute=6))
    assert seqs(window) == [5, 4, 3]
    naive = await log.list(TENANT, since=T0.replace(minute=7, tzinfo=None))
    assert seqs(naive) == [8, 7]
    assert seqs(await log.list(TENANT, outcome="pending_approval")) == []
    assert seqs(await log.list(OTHER)) == []


async def test_cursor_pagination(backend: Backend) -> None:
    await fill(backend, 7)
    for newest_first, expected in ((True, [7, 6, 5, 4, 3, 2, 1]), (False, [1, 2, 3, 4, 5, 6, 7])):
        seen: list[int] = []
        sizes: list[int] = []
        cursor = None
        for _ in range(5):  # bounded: a cursor that never ends fails instead of hanging
            page = await backend.log.list(TENANT, cursor=cursor, limit=3, newest_first=newest_first)
            seen += [r.seq for r in page.items]
            sizes.append(len(page.items))
            if page.next_cursor is None:
                break
            assert not page.next_cursor.isdigit()  # opaque, not a bare seq
            cursor = page.next_cursor
        assert (seen, sizes) == (expected, [3, 3, 1])
    exact = await backend.log.list(TENANT, limit=7)
    assert exact.next_cursor is None and len(exact.items) == 7


@pytest.mark.parametrize("cursor", ["", "bm9wZQ==", "%%%", "c2VxOi0x"])
async def test_bad_cursor_and_limit_are_refused(backend: Backend, cursor: str) -> None:
    with pytest.raises(InvalidCursorError):
        await backend.log.list(TENANT, cursor=cursor)
    with pytest.raises(ValueError, match="limit"):
        await backend.log.list(TENANT, limit=0)


# ---------------------------------------------------------------- transactions


async def test_rollback_leaves_no_row_and_no_seq(backend: Backend, key: Ed25519PrivateKey) -> None:
    await fill(backend, 2)
    taken: list[int] = []

    async def append_then_fail() -> None:
        async with backend.transaction():
            taken.append((await backend.log.append(TENANT, make_record(3))).seq)
            raise RuntimeError("change failed")

    with pytest.raises(RuntimeError, match="change failed"):
        await append_then_fail()
    assert taken == [3]
    assert await backend.log.get(TENANT, make_record(3)["id"]) is None
    assert [r.seq for r in (await backend.log.list(TENANT)).items] == [2, 1]
    async with backend.transaction():
        again = await backend.log.append(TENANT, make_record(4))
    assert again.seq == 3
    assert (await backend.log.verify(TENANT, key.public_key())).ok


async def test_concurrent_appends_get_contiguous_seqs(backend: Backend) -> None:
    async def one(n: int) -> StoredDecision:
        async with backend.transaction():
            return await backend.log.append(TENANT, make_record(n))

    rows = await asyncio.gather(*(one(n) for n in range(1, 21)))
    assert sorted(r.seq for r in rows) == list(range(1, 21))
    result = await backend.log.verify(TENANT, None)
    assert (result.ok, result.checked) == (True, 20)


async def test_piccolo_append_refuses_to_run_outside_a_transaction(sqlite: SqliteBackend) -> None:
    with pytest.raises(DecisionLogError, match="inside the caller's transaction"):
        await sqlite.log.append(TENANT, make_record(1))
    assert sqlite.sql("SELECT count(*) FROM decisions") == [(0,)]
    assert sqlite.sql("SELECT count(*) FROM chain_heads") == [(0,)]


async def test_piccolo_refuses_tables_bound_elsewhere(
    sqlite: SqliteBackend, tmp_path: Path
) -> None:
    other = PiccoloDecisionLog(type(sqlite.engine)(path=str(tmp_path / "other.db")))
    with pytest.raises(DecisionLogError, match="not bound"):
        await other.list(TENANT)


async def test_immediate_transactions_allow_reads_before_append(sqlite: SqliteBackend) -> None:
    async def one(n: int) -> StoredDecision:
        async with sqlite.piccolo.transaction():
            await Decision.count().where(Decision.tenant == TENANT).run()
            return await sqlite.log.append(TENANT, make_record(n))

    rows = await asyncio.gather(*(one(n) for n in range(1, 11)))
    assert sorted(r.seq for r in rows) == list(range(1, 11))
    assert (await sqlite.log.verify(TENANT, None)).ok


def test_the_schema_comes_from_the_piccolo_migration(migrated_db: Path) -> None:
    with closing(sqlite3.connect(migrated_db)) as db:
        applied = {
            row[0] for row in db.execute("SELECT name FROM migration WHERE app_name = 'aion'")
        }
        columns = {row[1] for row in db.execute("PRAGMA table_info(chain_heads)")}
    shipped = REPO / "server" / "db" / "migrations"
    ids = {f.stem for f in shipped.glob("aion_*.py")}
    assert applied and len(applied) == len(ids)
    assert {"tenant", "seq", "hash", "signed_seq", "signed_hash", "signature"} <= columns
