"""The operator commands of `aion` on an embedded data directory (SQLite), run as processes.

`aion tenants create`, `aion tokens issue`, `aion apikeys create`, `aion db
migrate` and `aion decisions verify`, each checked against what it claims:
the token verifies with the data directory's secret, the API key works against
an app built on that directory and is stored only as its sha256, migrating
twice changes nothing, and the decision log verifies until a row is edited.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from server.auth import TokenService, utcnow
from server.bootstrap import ensure_keys, install_shipped_bundles
from server.bootstrap import services as build_services
from server.errors import UnauthorizedError
from server.settings import Settings
from tests.server.api_support import client_of, make_app

AION = Path(sys.executable).parent / "aion"
TENANT = "acme"


def aion(*args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    """Run `aion ARGS --data-dir DATA_DIR` with no `AION_*` settings from the environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AION_")}
    return subprocess.run(
        [str(AION), *args, "--data-dir", str(data_dir)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def query(data_dir: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(data_dir / "aion.db")) as db:
        return list(db.execute(sql, params).fetchall())


def settings(data_dir: Path) -> Settings:
    return Settings(data_dir=data_dir, decision_time_limit_ms=2000.0)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data directory made by `aion tenants create acme` (migrations, keys, the tenant)."""
    where = tmp_path_factory.mktemp("cli-data")
    done = aion("tenants", "create", TENANT, data_dir=where)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"tenant `{TENANT}` created"
    return where


def test_tenants_create_is_idempotent(data_dir: Path) -> None:
    again = aion("tenants", "create", TENANT, data_dir=data_dir)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == f"tenant `{TENANT}` already exists"
    assert query(data_dir, "SELECT id FROM tenants WHERE id = ?", TENANT) == [(TENANT,)]
    assert query(data_dir, "SELECT count(*) FROM tools WHERE tenant = ?", TENANT)[0][0] > 0


def test_tokens_issue_prints_a_token_of_the_data_dirs_issuer(data_dir: Path) -> None:
    done = aion(
        "tokens", "issue", "--tenant", TENANT, "--subject", "olga",
        "--role", "operator", "--role", "viewer", "--ttl", "600",
        data_dir=data_dir,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    token = done.stdout.strip()
    tokens = TokenService(settings(data_dir), ensure_keys(data_dir).jwt_secret)
    caller = tokens.verify(token, utcnow())
    assert (caller.subject, caller.tenant, caller.kind) == ("olga", TENANT, "user")
    assert caller.roles == {"operator", "viewer"}
    with pytest.raises(UnauthorizedError):
        TokenService(settings(data_dir), b"0" * 64).verify(token, utcnow())


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--tenant", "nope", "--subject", "x", "--role", "admin"), "no tenant `nope`"),
        (("--tenant", TENANT, "--subject", "x", "--role", "root"), "invalid choice"),
    ],
    ids=["unknown-tenant", "unknown-role"],
)
def test_tokens_issue_refuses_with_exit_2(data_dir: Path, args: tuple[str, ...], says: str) -> None:
    done = aion("tokens", "issue", *args, data_dir=data_dir)
    assert done.returncode == 2
    assert done.stdout == ""
    assert says in done.stderr


def test_db_migrate_is_idempotent(data_dir: Path) -> None:
    schema = "SELECT type, name, sql FROM sqlite_master ORDER BY name"
    before = (query(data_dir, schema), query(data_dir, "SELECT count(*) FROM tenants"))
    done = aion("db", "migrate", data_dir=data_dir)  # `tenants create` migrated it already
    assert done.returncode == 0, done.stderr
    assert "up to date" in done.stdout
    assert (query(data_dir, schema), query(data_dir, "SELECT count(*) FROM tenants")) == before


@pytest.mark.anyio
async def test_apikeys_create_prints_a_working_key_stored_hashed(data_dir: Path) -> None:
    done = aion(
        "apikeys", "create", "--tenant", TENANT, "--subject", "ci-bot", "--role", "developer",
        data_dir=data_dir,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    key = done.stdout.strip()
    assert key.startswith("aion_")
    rows = query(data_dir, "SELECT * FROM api_keys WHERE subject = 'ci-bot'")
    assert len(rows) == 1
    assert hashlib.sha256(key.encode()).hexdigest() in rows[0]
    assert not any(key in str(value) for value in rows[0])
    for stored in data_dir.glob("aion.db*"):
        assert key.encode() not in stored.read_bytes()

    app = make_app(build_services(settings(data_dir), ensure_keys(data_dir)))
    async with app.lifespan(), client_of(app) as client:
        listed = await client.get("/api/v1/agents", headers={"X-API-Key": key})
        assert listed.status_code == 200, listed.text
        assert listed.json()["items"] == []
        wrong = await client.get("/api/v1/agents", headers={"X-API-Key": key + "x"})
        assert wrong.status_code == 401


@pytest.mark.anyio
async def test_decisions_verify_passes_until_a_row_is_edited(data_dir: Path) -> None:
    keys = ensure_keys(data_dir)
    svc = build_services(settings(data_dir), keys)
    await install_shipped_bundles(svc.settings, keys)
    admin = svc.tokens.issue(tenant=TENANT, subject="admin", roles=["admin"], now=utcnow())
    headers = {"Authorization": f"Bearer {admin}"}
    body = {"name": "cli", "model": "model://gpt-4o", "tool_ids": ["web_search"]}
    app = make_app(svc)
    async with app.lifespan(), client_of(app) as client:
        for _ in range(3):
            created = await client.post("/api/v1/agents", json=body, headers=headers)
            assert created.status_code == 201, created.text
    ids = query(data_dir, "SELECT seq, id FROM decisions WHERE tenant = ? ORDER BY seq", TENANT)
    assert [seq for seq, _ in ids] == [1, 2, 3]
    verify = ("decisions", "verify", "--tenant", TENANT)
    public_key = ("--public-key", str(data_dir / "chain-signing.pub"))

    intact = aion(*verify, *public_key, data_dir=data_dir)
    assert intact.returncode == 0, intact.stdout + intact.stderr
    assert "3 decisions intact" in intact.stdout

    with closing(sqlite3.connect(data_dir / "aion.db")) as db:
        db.execute(
            "UPDATE decisions SET record = replace(record, '\"allow\"', '\"deny\"')"
            " WHERE tenant = ? AND seq = 2",
            (TENANT,),
        )
        db.commit()
    tampered = aion(*verify, *public_key, data_dir=data_dir)
    assert tampered.returncode == 1, tampered.stdout + tampered.stderr
    assert "TAMPERED at seq 2" in tampered.stdout
    assert ids[1][1] in tampered.stdout


def _tenant_settings(data_dir: Path) -> Any:
    return json.loads(query(data_dir, "SELECT settings FROM tenants WHERE id = ?", TENANT)[0][0])


def test_tenants_set_writes_the_evaluator_and_removes_it(data_dir: Path) -> None:
    done = aion("tenants", "set", TENANT, "rego_evaluator=opa", data_dir=data_dir)
    assert done.returncode == 0, done.stderr
    assert '"rego_evaluator": "opa"' in done.stdout
    assert _tenant_settings(data_dir)["rego_evaluator"] == "opa"
    done = aion("tenants", "set", TENANT, "rego_evaluator=", data_dir=data_dir)
    assert done.returncode == 0, done.stderr
    assert "rego_evaluator" not in _tenant_settings(data_dir)


@pytest.mark.parametrize(
    ("args", "says"),
    [
        ((TENANT, "rego_evaluator=wasm"), "one of embedded, opa"),
        ((TENANT, "rate_limit=5"), "cannot be set here"),
        ((TENANT, "rego_evaluator"), "is not KEY=VALUE"),
        (("nope", "rego_evaluator=opa"), "does not exist"),
    ],
    ids=["bad-value", "unknown-key", "malformed", "unknown-tenant"],
)
def test_tenants_set_refuses_with_exit_2_and_changes_nothing(
    data_dir: Path, args: tuple[str, ...], says: str
) -> None:
    before = query(data_dir, "SELECT id, settings FROM tenants ORDER BY id")
    done = aion("tenants", "set", *args, data_dir=data_dir)
    assert done.returncode == 2
    assert says in done.stderr
    assert query(data_dir, "SELECT id, settings FROM tenants ORDER BY id") == before
