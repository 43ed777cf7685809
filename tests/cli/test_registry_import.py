"""`aion registry import` and `aion registry lock` on index files written from the FIXTURES shapes.

The data directory is migrated and seeded once by `aion tenants create` in a
child process (the real piccolo migrations, ``server.bootstrap.migrate``) and copied per test.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.registry.index_support import manifest, write_index

from .conftest import Run

TENANT = "acme"


def good_index(root: Path) -> Path:
    return write_index(
        root,
        {
            "models": [
                manifest("claude-x", privacy="hybrid", references=["service://vector/qdrant"]),
                manifest("gpt-4o", integrity={"sha256": "ab" * 32, "signature": "RWQ-real-ish"}),
            ],
            "algorithms": [manifest("rerank", "algorithm", references=["model://gpt-4o"])],
            "services": [manifest("qdrant", "service")],
            "tools": [manifest("vector-search", "tool", references=["tool://web_search"])],
        },
    )


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("seeded") / "data"
    # In a child process, as `tests/server/test_cli_server.py` does: `tenants create`
    # leaves the server's engine connections to process exit.
    env = {k: v for k, v in os.environ.items() if not k.startswith("AION_")}
    done = subprocess.run(
        [sys.executable, "-m", "server.cli.main", "tenants", "create", TENANT, "--data-dir", data],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    with closing(sqlite3.connect(data / "aion.db")) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return data


@pytest.fixture
def data_dir(seeded: Path, tmp_path: Path) -> Path:
    target = tmp_path / "data"
    shutil.copytree(seeded, target)
    return target


def rows(data_dir: Path, sql: str) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(data_dir / "aion.db")) as db:
        return db.execute(sql).fetchall()


def snapshot(data_dir: Path) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    return (
        rows(data_dir, "SELECT * FROM models ORDER BY id"),
        rows(data_dir, "SELECT * FROM tools ORDER BY id"),
    )


def test_import_writes_models_and_tools_registered_unverified(
    aion: Callable[..., Run], data_dir: Path, tmp_path: Path
) -> None:
    index = good_index(tmp_path / "reg")
    done = aion("registry", "import", index, "--data-dir", data_dir, "--tenant", TENANT)
    assert done.code == 0, done.out + done.err
    assert "accepted model     models/claude-x.yaml: claude-x@1.0.0" in done.out
    assert "not stored: no table for services" in done.out
    assert "not stored: no table for algorithms" in done.out
    assert "integrity.signature ignored: not evidence" in done.out
    [claude] = rows(
        data_dir,
        "SELECT id, privacy, registered, verified, sha256 FROM models WHERE name = 'claude-x'",
    )
    assert claude == (
        f"mdl_{TENANT}_claude-x",
        "hybrid",
        1,
        0,
        hashlib.sha256(b"claude-x").hexdigest(),
    )
    # the seeded gpt-4o row is updated, still unverified
    [gpt] = rows(
        data_dir,
        f"SELECT registered, verified, sha256 FROM models WHERE id = 'mdl_{TENANT}_gpt-4o'",
    )
    assert gpt == (1, 0, "ab" * 32)
    [tool] = rows(
        data_dir, "SELECT id, allowed, attributes FROM tools WHERE name = 'vector-search'"
    )
    assert tool[0] == f"{TENANT}:vector-search"
    assert '"verified": false' in tool[2] and '"registered": true' in tool[2]
    assert rows(data_dir, "SELECT count(*) FROM models WHERE name IN ('qdrant', 'rerank')") == [
        (0,)
    ]


def test_dry_run_writes_nothing(aion: Callable[..., Run], data_dir: Path, tmp_path: Path) -> None:
    before = snapshot(data_dir)
    index = good_index(tmp_path / "reg")
    done = aion(
        "registry", "import", index, "--data-dir", data_dir, "--tenant", TENANT, "--dry-run"
    )
    assert done.code == 0, done.out + done.err
    assert "would import" in done.out
    assert snapshot(data_dir) == before


def test_any_refusal_exits_1_and_imports_nothing(
    aion: Callable[..., Run], data_dir: Path, tmp_path: Path
) -> None:
    before = snapshot(data_dir)
    index = write_index(
        tmp_path / "reg",
        {
            "models": [
                manifest("fine-model"),
                manifest("m32", integrity={"sha256": "d41d8cd98f00b204e9800998ecf8427e"}),
                manifest("mzero", integrity={"sha256": "0" * 64}),
                manifest("msig", integrity={"sha256": "ab" * 32, "signature": "minisign:ABC123"}),
                manifest("mref", references=["service://vector/milvus"]),
            ],
            "tools": [{"name": "broken", "kind": "tool"}],
        },
    )
    done = aion("registry", "import", index, "--data-dir", data_dir, "--tenant", TENANT)
    assert done.code == 1
    lines = done.out.splitlines()
    assert lines[0].startswith("accepted model     models/fine-model.yaml")
    for path, code in [
        ("models/m32.yaml", "digest_malformed"),
        ("models/mzero.yaml", "digest_all_zero"),
        ("models/msig.yaml", "placeholder_signature"),
        ("models/mref.yaml", "unresolved_reference"),
        ("tools/broken.yaml", "malformed_evidence"),
    ]:
        assert any(line.startswith("refused") and f"{path}: {code}:" in line for line in lines)
    assert "5 of 6 manifests refused; nothing imported" in done.out
    assert snapshot(data_dir) == before


def test_references_resolve_against_the_tenants_models(
    aion: Callable[..., Run], data_dir: Path, tmp_path: Path
) -> None:
    index = write_index(
        tmp_path / "reg",
        {
            "algorithms": [
                manifest("router", "algorithm", references=["model://ollama/llama3.2-3b"])
            ]
        },
    )
    done = aion(
        "registry", "import", index, "--data-dir", data_dir, "--tenant", TENANT, "--dry-run"
    )
    assert done.code == 0, done.out


def test_a_verified_model_is_never_downgraded(
    aion: Callable[..., Run], data_dir: Path, tmp_path: Path
) -> None:
    with closing(sqlite3.connect(data_dir / "aion.db")) as db, db:
        db.execute(
            "UPDATE models SET verified = 1, sha256 = ? WHERE id = ?",
            ("cd" * 32, f"mdl_{TENANT}_gpt-4o"),
        )
    before = snapshot(data_dir)
    index = write_index(tmp_path / "reg", {"models": [manifest("gpt-4o")]})
    done = aion("registry", "import", index, "--data-dir", data_dir, "--tenant", TENANT)
    assert done.code == 1
    assert "digest_mismatch" in done.out
    assert snapshot(data_dir) == before
    same = write_index(
        tmp_path / "same", {"models": [manifest("gpt-4o", integrity={"sha256": "cd" * 32})]}
    )
    assert aion("registry", "import", same, "--data-dir", data_dir, "--tenant", TENANT).code == 0
    assert snapshot(data_dir) == before


def test_usage_errors_exit_2(aion: Callable[..., Run], data_dir: Path, tmp_path: Path) -> None:
    index = good_index(tmp_path / "reg")
    assert aion("registry", "import", tmp_path / "nope.yaml", "--data-dir", data_dir).code == 2
    (tmp_path / "bad.yaml").write_text("models: 3\n")
    assert aion("registry", "import", tmp_path / "bad.yaml", "--data-dir", data_dir).code == 2
    assert aion("registry", "import", index, "--data-dir", tmp_path / "empty").code == 2
    done = aion("registry", "import", index, "--data-dir", data_dir, "--tenant", "ghost")
    assert done.code == 2
    assert "no tenant `ghost`" in done.err


def test_lock_and_check_report_drift(aion: Callable[..., Run], tmp_path: Path) -> None:
    index = good_index(tmp_path / "reg")
    lock = tmp_path / "registry.lock"
    assert aion("registry", "lock", index, "-o", lock).code == 0
    text = lock.read_text()
    assert aion("registry", "lock", index, "-o", lock).code == 0
    assert lock.read_text() == text  # stable
    ok = aion("registry", "lock", index, "--check", lock)
    assert ok.code == 0 and "no drift" in ok.out

    (tmp_path / "reg/models/gpt-4o.yaml").write_text(yaml.safe_dump(manifest("gpt-4o")))
    (tmp_path / "reg/services/qdrant.yaml").unlink()
    drifted = aion("registry", "lock", index, "--check", lock)
    assert drifted.code == 1
    assert "changed: models/gpt-4o.yaml (content_sha256, declared_sha256)" in drifted.out
    assert "changed: services/qdrant.yaml" in drifted.out  # now unreadable

    listing = yaml.safe_load(index.read_text())
    listing["tools"] = []
    listing["models"].append("models/extra.yaml")
    (tmp_path / "reg/models/extra.yaml").write_text(yaml.safe_dump(manifest("extra")))
    index.write_text(yaml.safe_dump(listing))
    drifted = aion("registry", "lock", index, "--check", lock)
    assert "added: models/extra.yaml" in drifted.out
    assert "removed: tools/vector-search.yaml" in drifted.out


def test_lock_defaults_beside_the_index(aion: Callable[..., Run], tmp_path: Path) -> None:
    index = good_index(tmp_path / "reg")
    assert aion("registry", "lock", index).code == 0
    assert (tmp_path / "reg/registry.lock").is_file()
    assert aion("registry", "lock", index, "--check").code == 0
    assert aion("registry", "lock", index, "--check", tmp_path / "missing.lock").code == 2
    (tmp_path / "junk.lock").write_text("{}")
    assert aion("registry", "lock", index, "--check", tmp_path / "junk.lock").code == 2
