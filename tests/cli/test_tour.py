"""The README's tour works as written (keys generated here, files from docs/tour)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.bundle import read_tarball, write_tarball

TOUR = Path(__file__).resolve().parents[2] / "docs" / "tour"


def test_tour(
    aion: Callable[..., Any], key_files: dict[str, tuple[Path, Path]], tmp_path: Path
) -> None:
    tested = aion("policy", "test", TOUR / "no-autoconfirm", "--coverage", "--threshold", "100")
    assert tested.code == 0, tested.out
    assert "3 passed, 0 failed" in tested.out

    priv, pub = key_files["EdDSA"]
    archive = tmp_path / "tour.tar.gz"
    built = aion(
        "bundle",
        "build",
        TOUR / "no-autoconfirm",
        "-o",
        archive,
        "--revision",
        "2026.11.27.1",
        "--signing-key",
        priv,
        "--signing-alg",
        "EdDSA",
    )
    assert built.code == 0, built.err
    assert (
        aion("bundle", "verify", archive, "--verification-key", pub, "--signing-alg", "EdDSA").code
        == 0
    )
    rollback = aion(
        "bundle",
        "verify",
        archive,
        "--verification-key",
        pub,
        "--signing-alg",
        "EdDSA",
        "--last-revision",
        "2026.11.27.1",
    )
    assert rollback.code == 2

    evaluated = aion("policy", "eval", "--bundle", archive, "--input", TOUR / "request.json")
    assert evaluated.code == 1
    decision = json.loads(evaluated.out)
    assert decision["allowed"] is False
    assert [r["policy"] for r in decision["reasons"]] == ["tour.ops_autoconfirm"]
    assert decision["revisions"] == {"no-autoconfirm": "2026.11.27.1"}

    files = read_tarball(archive.read_bytes())
    files["bind.rego"] = files["bind.rego"].replace(
        b"auto_confirm == true", b"auto_confirm == false"
    )
    archive.write_bytes(write_tarball(files))
    tampered = aion(
        "bundle", "verify", archive, "--verification-key", pub, "--signing-alg", "EdDSA"
    )
    assert tampered.code == 2 and "bind.rego" in tampered.err
