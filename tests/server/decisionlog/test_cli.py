"""`aion decisions verify` and `aion decisions export-head` on real databases."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from server.db.tables import ALL_TABLES
from tests.server.conftest_decisionlog import (
    TENANT,
    SqliteBackend,
    SqliteFile,
    copy_db,
    fill_and_close,
    forge_allow,
    migrate,
    run_cli,
    write_keys,
)

pytestmark = pytest.mark.anyio
REPO = Path(__file__).resolve().parents[3]


# ---------------------------------------------------------------- CLI


@pytest.fixture
def cli_db(
    migrated_db: Path, key: Ed25519PrivateKey, tmp_path: Path
) -> Iterator[Callable[..., list[Any]]]:
    """Five decisions in ``tmp_path/aion.db``; the argv of a command on them."""
    copy_db(migrated_db, tmp_path / "aion.db")
    write_keys(key, tmp_path)
    bound = {table: table._meta._db for table in ALL_TABLES}  # the CLI binds the tables
    asyncio.run(fill_and_close(SqliteBackend(tmp_path / "aion.db"), 5, outcome="deny"))
    yield lambda *a: ["decisions", *a, "--tenant", TENANT, "--data-dir", tmp_path]
    for table, db in bound.items():
        table._meta._db = db


def test_cli_verify_intact_and_tampered(
    capsys: pytest.CaptureFixture[str],
    cli_db: Callable[..., list[Any]],
    tmp_path: Path,
) -> None:
    code, out, _ = run_cli(capsys, *cli_db("export-head", "--private-key", tmp_path / "head.pem"))
    head = json.loads(out)
    assert code == 0 and (head["tenant"], head["seq"]) == (TENANT, 5) and head["signature"]
    code, out, _ = run_cli(capsys, *cli_db("verify", "--public-key", tmp_path / "head.pub"))
    assert (code, out) == (0, f"tenant {TENANT}: 5 decisions intact (signed head at seq 5)\n")
    code, again, _ = run_cli(capsys, *cli_db("export-head"))
    assert (code, json.loads(again)) == (0, head)
    SqliteFile(tmp_path / "aion.db").edit_record(TENANT, 2, forge_allow)
    code, out, _ = run_cli(capsys, *cli_db("verify", "--public-key", tmp_path / "head.pub"))
    assert code == 1
    assert out.startswith(
        f"tenant {TENANT}: TAMPERED at seq 2 (dec_{TENANT}_2): hash does not match"
    )


def test_cli_usage_errors_exit_2(
    capsys: pytest.CaptureFixture[str], cli_db: Callable[..., list[Any]], tmp_path: Path
) -> None:
    (tmp_path / "junk.pem").write_text("not a key")
    missing, empty = tmp_path / "nowhere", tmp_path / "empty"
    empty.mkdir()
    (empty / "aion.db").touch()
    verify = ["decisions", "verify", "--tenant", TENANT, "--data-dir"]
    cases = [
        (cli_db("verify"), "--public-key"),
        (cli_db("verify", "--public-key", tmp_path / "junk.pem"), "not a PEM public key"),
        (cli_db("verify", "--public-key", tmp_path / "head.pem"), "not a PEM public key"),
        (cli_db("verify", "--public-key", tmp_path / "absent.pub"), "cannot read public key"),
        (cli_db("export-head", "--private-key", tmp_path / "head.pub"), "private key"),
        ([*verify, missing, "--public-key", tmp_path / "head.pub"], "no database"),
        ([*verify, empty, "--public-key", tmp_path / "head.pub"], "cannot read the decision"),
        ([*cli_db("export-head"), "--database-url", "postgresql://x/y"], "not allowed with"),
    ]
    for argv, words in cases:
        code, _, err = run_cli(capsys, *argv)
        assert (code, words in err) == (2, True), (argv, err)
    assert not missing.exists()


def test_cli_export_head_without_a_signed_head_fails(
    capsys: pytest.CaptureFixture[str], cli_db: Callable[..., list[Any]]
) -> None:
    code, out, err = run_cli(capsys, *cli_db("export-head"))
    assert (code, out) == (1, "") and "no signed head" in err


async def test_the_database_refuses_a_duplicated_seq_outright(tmp_path: Path) -> None:
    """Without DDL rights, a duplicated or swapped sequence number is refused by the unique index."""
    db = sqlite3.connect(migrate(tmp_path))
    row = (
        "INSERT INTO decisions (id, tenant, seq, created_at, action, principal_id, resource_type, "
        "resource_id, allowed, outcome, record, prev_hash, hash) VALUES (?, 't', 1, '2026-01-01', 'a', 'p', "
        "'r', 'i', 1, 'allow', '{}', '', '')"
    )
    db.execute(row, ("d1",))
    with pytest.raises(sqlite3.IntegrityError):
        db.execute(row, ("d2",))
