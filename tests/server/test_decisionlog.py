"""The decision log: hash chain, tamper detection, listing, transactions, and the CLI.

Shared behaviour runs on both backends: the real tables in a SQLite file made by
the piccolo migration, and the in-memory twin.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from server.cli import decisions_cmd
from server.cli.common import EXIT_USAGE, UsageError
from server.decisionlog import (
    GENESIS,
    DecisionLogError,
    InvalidCursorError,
    StoredDecision,
    VerifyResult,
    head_message,
)
from tests.server.conftest_decisionlog import (
    OTHER,
    T0,
    TENANT,
    Backend,
    MemoryBackend,
    SqliteBackend,
    forge_allow,
    make_record,
)

pytestmark = pytest.mark.anyio
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def migrated_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty database made by the real piccolo migration (copied for each test)."""
    data_dir = tmp_path_factory.mktemp("migrated")
    env = {k: v for k, v in os.environ.items() if k != "AION_DATABASE_URL"}
    env |= {"PICCOLO_CONF": "server.db.piccolo_conf", "AION_DATA_DIR": str(data_dir)}
    piccolo = Path(sys.executable).with_name("piccolo")
    cmd = [str(piccolo), "migrations", "forwards", "aion"]
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    return data_dir / "aion.db"


@pytest.fixture(params=["sqlite", "memory"])
def backend(request: pytest.FixtureRequest, tmp_path: Path, migrated_db: Path) -> Iterator[Backend]:
    made: Backend
    if request.param == "sqlite":
        shutil.copy(migrated_db, tmp_path / "aion.db")
        made = SqliteBackend(tmp_path / "aion.db")
    else:
        made = MemoryBackend()
    yield made
    made.close()


@pytest.fixture
def sqlite(tmp_path: Path, migrated_db: Path) -> Iterator[SqliteBackend]:
    shutil.copy(migrated_db, tmp_path / "aion.db")
    made = SqliteBackend(tmp_path / "aion.db")
    yield made
    made.close()


@pytest.fixture(scope="module")
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


async def fill(b: Backend, count: int, tenant: str = TENANT, **kw: Any) -> list[StoredDecision]:
    out = []
    for n in range(1, count + 1):
        async with b.transaction():
            out.append(await b.log.append(tenant, make_record(n, tenant=tenant, **kw)))
    return out


def bad(result: VerifyResult, seq: int | None, decision_id: str | None, words: str) -> None:
    assert not result.ok, result
    assert (result.first_bad_seq, result.first_bad_id) == (seq, decision_id), result
    assert words in (result.problem or ""), result


# ---------------------------------------------------------------- chain


async def test_append_numbers_and_links_rows(backend: Backend, key: Ed25519PrivateKey) -> None:
    rows = await fill(backend, 5)
    assert [r.seq for r in rows] == [1, 2, 3, 4, 5]
    assert rows[0].prev_hash == GENESIS
    assert all(b.prev_hash == a.hash for a, b in zip(rows, rows[1:], strict=False))
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
    assert (got.action, got.outcome, got.allowed, got.resource_id) == (
        "agent.deploy", "deny", False, "agt_x",
    )  # fmt: skip
    assert (got.principal_id, got.resource_type, got.created_at) == ("usr_alice", "agent", T0.replace(minute=1))
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
    backend.edit_record(TENANT, 3, forge_allow)
    bad(await backend.log.verify(TENANT, key.public_key()), 3, rows[2].id, "edited")


async def test_edited_indexed_column_is_named(backend: Backend) -> None:
    rows = await fill(backend, 5, outcome="deny")
    backend.edit_column(TENANT, 4, "outcome", "allow")
    bad(await backend.log.verify(TENANT, None), 4, rows[3].id, "columns disagree")


async def test_rehashed_edit_breaks_the_link_of_the_next_row(backend: Backend) -> None:
    rows = await fill(backend, 5, outcome="deny")
    backend.edit_record(TENANT, 2, forge_allow)
    backend.rehash_from(TENANT, 2)
    backend.rehash_from(TENANT, 4)  # the forger stopped short of row 3
    bad(await backend.log.verify(TENANT, None), 4, rows[3].id, "does not link")


async def test_deleted_middle_row_is_named(backend: Backend) -> None:
    rows = await fill(backend, 5)
    backend.delete(TENANT, 3)
    result = await backend.log.verify(TENANT, None)
    bad(result, 3, None, "seq 3 is missing")
    assert rows[3].id in (result.problem or "") and result.checked == 2


async def test_swapped_rows_are_named(backend: Backend) -> None:
    rows = await fill(backend, 5)
    backend.swap_seq(TENANT, 3, 4)
    bad(await backend.log.verify(TENANT, None), 3, rows[3].id, "reordered")


async def test_truncation_below_the_head_is_detected(backend: Backend) -> None:
    await fill(backend, 6)
    backend.delete(TENANT, 5, 6)
    bad(await backend.log.verify(TENANT, None), 5, None, "rows end at 4")


async def test_truncation_below_the_signed_head_is_detected(
    backend: Backend, key: Ed25519PrivateKey
) -> None:
    rows = await fill(backend, 6)
    await backend.log.sign_head(TENANT, key)
    backend.delete(TENANT, 5, 6)
    backend.set_head(TENANT, seq=4, hash=rows[3].hash)  # the unsigned head is rewound too
    bad(await backend.log.verify(TENANT, key.public_key()), 5, None, "truncated")


async def test_rewritten_chain_is_caught_by_the_signed_head(
    backend: Backend, key: Ed25519PrivateKey
) -> None:
    rows = await fill(backend, 6, outcome="deny")
    await backend.log.sign_head(TENANT, key)
    backend.edit_record(TENANT, 2, forge_allow)
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


async def test_moved_signed_seq_invalidates_the_signature(
    backend: Backend, key: Ed25519PrivateKey
) -> None:
    rows = await fill(backend, 4)
    await backend.log.sign_head(TENANT, key)
    backend.set_head(TENANT, signed_seq=2, signed_hash=rows[1].hash)
    bad(await backend.log.verify(TENANT, key.public_key()), 2, rows[1].id, "signature is invalid")
    assert (await backend.log.verify(TENANT, Ed25519PrivateKey.generate().public_key())).ok is False


async def test_unsigned_head_passes_unless_a_signature_is_required(backend: Backend) -> None:
    await fill(backend, 2)
    assert (await backend.log.verify(TENANT, None)).ok
    bad(await backend.log.verify(TENANT, None, require_signed_head=True), None, None, "not signed")


async def test_sign_and_export_head(backend: Backend, key: Ed25519PrivateKey) -> None:
    assert await backend.log.export_head(TENANT) == {"tenant": TENANT, "seq": 0, "hash": "", "signature": ""}
    with pytest.raises(DecisionLogError):
        await backend.log.sign_head(TENANT, key)
    rows = await fill(backend, 3)
    signed = await backend.log.sign_head(TENANT, key)
    assert await backend.log.export_head(TENANT) == signed
    assert (signed["seq"], signed["hash"]) == (3, rows[2].hash)
    key.public_key().verify(base64.b64decode(signed["signature"]), head_message(TENANT, 3, rows[2].hash))
    await fill(backend, 1, tenant=OTHER)
    result = await backend.log.verify(TENANT, key.public_key())
    assert (result.ok, result.signed_seq) == (True, 3)


# ---------------------------------------------------------------- listing


async def test_list_filters(backend: Backend) -> None:
    log = backend.log
    for n in range(1, 9):
        kw: dict[str, Any] = {"outcome": "deny" if n % 2 else "allow", "resource_id": f"agt_{n % 3}"}
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
        seen, cursor, pages = [], None, 0
        while True:
            page = await backend.log.list(TENANT, cursor=cursor, limit=3, newest_first=newest_first)
            seen += [r.seq for r in page.items]
            pages += 1
            if page.next_cursor is None:
                break
            assert isinstance(page.next_cursor, str) and "7" not in page.next_cursor
            cursor = page.next_cursor
        assert (seen, pages) == (expected, 3)
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
    with pytest.raises(RuntimeError, match="change failed"):
        async with backend.transaction():
            lost = await backend.log.append(TENANT, make_record(3))
            assert lost.seq == 3
            raise RuntimeError("change failed")
    assert await backend.log.get(TENANT, lost.id) is None
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


async def test_piccolo_refuses_tables_bound_elsewhere(sqlite: SqliteBackend, tmp_path: Path) -> None:
    from server.decisionlog import PiccoloDecisionLog

    other = PiccoloDecisionLog(type(sqlite.engine)(path=str(tmp_path / "other.db")))
    with pytest.raises(DecisionLogError, match="not bound"):
        await other.list(TENANT)


async def test_immediate_transactions_allow_reads_before_append(sqlite: SqliteBackend) -> None:
    from server.db.tables import Decision

    async def one(n: int) -> StoredDecision:
        async with sqlite.piccolo.transaction():
            await Decision.count().where(Decision.tenant == TENANT).run()
            return await sqlite.log.append(TENANT, make_record(n))

    rows = await asyncio.gather(*(one(n) for n in range(1, 11)))
    assert sorted(r.seq for r in rows) == list(range(1, 11))
    assert (await sqlite.log.verify(TENANT, None)).ok


def test_the_schema_comes_from_the_piccolo_migration(migrated_db: Path) -> None:
    with closing(sqlite3.connect(migrated_db)) as db:
        applied = db.execute("SELECT app_name FROM migration").fetchall()
        columns = {row[1] for row in db.execute("PRAGMA table_info(chain_heads)")}
    assert applied == [("aion",)]
    assert {"tenant", "seq", "hash", "signed_seq", "signed_hash", "signature"} <= columns


# ---------------------------------------------------------------- CLI


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


@pytest.fixture
def cli_db(sqlite: SqliteBackend, key: Ed25519PrivateKey, tmp_path: Path) -> Callable[..., Any]:
    pub, priv = tmp_path / "head.pub", tmp_path / "head.pem"
    pub.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    priv.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    asyncio.run(fill(sqlite, 5, outcome="deny"))
    return lambda *a: ["decisions", *a, "--tenant", TENANT, "--data-dir", tmp_path]


def test_cli_verify_intact_and_tampered(capsys: pytest.CaptureFixture[str], cli_db: Callable[..., Any], sqlite: SqliteBackend, tmp_path: Path) -> None:
    code, out, _ = run_cli(capsys, *cli_db("export-head", "--private-key", tmp_path / "head.pem"))
    head = json.loads(out)
    assert code == 0 and (head["tenant"], head["seq"]) == (TENANT, 5) and head["signature"]
    code, out, _ = run_cli(capsys, *cli_db("verify", "--public-key", tmp_path / "head.pub"))
    assert (code, out) == (0, f"tenant {TENANT}: 5 decisions intact (signed head at seq 5)\n")
    code, again, _ = run_cli(capsys, *cli_db("export-head"))
    assert (code, json.loads(again)) == (0, head)
    sqlite.edit_record(TENANT, 2, forge_allow)
    code, out, _ = run_cli(capsys, *cli_db("verify", "--public-key", tmp_path / "head.pub"))
    assert code == 1
    assert out.startswith(f"tenant {TENANT}: TAMPERED at seq 2 (dec_{TENANT}_2): hash does not match")


def test_cli_usage_errors_exit_2(capsys: pytest.CaptureFixture[str], cli_db: Callable[..., Any], tmp_path: Path) -> None:
    (tmp_path / "junk.pem").write_text("not a key")
    missing = tmp_path / "nowhere"
    cases = [
        (cli_db("verify"), "--public-key"),
        (cli_db("verify", "--public-key", tmp_path / "junk.pem"), "not a PEM public key"),
        (cli_db("verify", "--public-key", tmp_path / "head.pem"), "not a PEM public key"),
        (cli_db("verify", "--public-key", tmp_path / "absent.pub"), "cannot read public key"),
        (cli_db("export-head", "--private-key", tmp_path / "head.pub"), "private key"),
        (["decisions", "verify", "--tenant", TENANT, "--data-dir", missing, "--public-key", tmp_path / "head.pub"], "no database"),
        ([*cli_db("export-head"), "--database-url", "postgresql://x/y"], "not allowed with"),
    ]
    for argv, words in cases:
        code, _, err = run_cli(capsys, *argv)
        assert (code, words in err) == (2, True), (argv, err)
    assert not missing.exists()


def test_cli_export_head_without_a_signed_head_fails(capsys: pytest.CaptureFixture[str], cli_db: Callable[..., Any]) -> None:
    code, out, err = run_cli(capsys, *cli_db("export-head"))
    assert (code, out) == (1, "") and "no signed head" in err
