"""`aion bundle build | sign | verify | inspect`, including every refusal exit code."""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from engine.bundle import read_tarball, write_tarball

ALGS = ("RS256", "ES256", "EdDSA")


@pytest.mark.parametrize("alg", ALGS)
def test_build_sign_verify_round_trip(
    aion: Callable[..., object],
    demo_bundle: Path,
    key_files: dict[str, tuple[Path, Path]],
    tmp_path: Path,
    alg: str,
) -> None:
    priv, pub = key_files[alg]
    out = tmp_path / "demo.tar.gz"
    built = aion(
        "bundle",
        "build",
        demo_bundle,
        "-o",
        out,
        "--revision",
        "7",
        "--signing-key",
        priv,
        "--signing-alg",
        alg,
        "--key-id",
        "k1",
    )
    assert built.code == 0, built.err
    verified = aion(
        "bundle",
        "verify",
        out,
        "--verification-key",
        pub,
        "--signing-alg",
        alg,
        "--verification-key-id",
        "k1",
    )
    assert verified.code == 0, verified.err
    assert "revision `7`" in verified.out
    files = read_tarball(out.read_bytes())
    assert "deploy_test.rego" not in files, "tests stay out of built bundles by default"
    assert json.loads(files[".manifest"])["revision"] == "7"


def test_build_is_reproducible(
    aion: Callable[..., object], demo_bundle: Path, tmp_path: Path
) -> None:
    a, b = tmp_path / "a.tar.gz", tmp_path / "b.tar.gz"
    assert aion("bundle", "build", demo_bundle, "-o", a).code == 0
    assert aion("bundle", "build", demo_bundle, "-o", b).code == 0
    assert a.read_bytes() == b.read_bytes()


def _signed(
    aion: Callable[..., object], demo_bundle: Path, keys: dict[str, tuple[Path, Path]], out: Path
) -> None:
    assert (
        aion(
            "bundle",
            "build",
            demo_bundle,
            "-o",
            out,
            "--revision",
            "3",
            "--signing-key",
            keys["RS256"][0],
        ).code
        == 0
    )


def test_tampered_archive_exits_2(
    aion: Callable[..., object],
    demo_bundle: Path,
    key_files: dict[str, tuple[Path, Path]],
    tmp_path: Path,
) -> None:
    out = tmp_path / "b.tar.gz"
    _signed(aion, demo_bundle, key_files, out)
    files = read_tarball(out.read_bytes())
    files["deploy.rego"] = files["deploy.rego"].replace(b"has no model", b"is fine")
    out.write_bytes(write_tarball(files))
    result = aion("bundle", "verify", out, "--verification-key", key_files["RS256"][1])
    assert result.code == 2
    assert "deploy.rego" in result.err and "digest mismatch" in result.err


def test_wrong_key_and_rollback_exit_2(
    aion: Callable[..., object],
    demo_bundle: Path,
    key_files: dict[str, tuple[Path, Path]],
    tmp_path: Path,
) -> None:
    out = tmp_path / "b.tar.gz"
    _signed(aion, demo_bundle, key_files, out)
    other = aion(
        "bundle",
        "verify",
        out,
        "--verification-key",
        key_files["ES256"][1],
        "--signing-alg",
        "ES256",
    )
    assert other.code == 2 and "bundle_signature_invalid" in other.err
    rollback = aion(
        "bundle", "verify", out, "--verification-key", key_files["RS256"][1], "--last-revision", "3"
    )
    assert rollback.code == 2 and "bundle_rollback" in rollback.err
    newer = aion(
        "bundle", "verify", out, "--verification-key", key_files["RS256"][1], "--last-revision", "2"
    )
    assert newer.code == 0


def test_unsigned_bundle_does_not_verify(
    aion: Callable[..., object],
    demo_bundle: Path,
    key_files: dict[str, tuple[Path, Path]],
    tmp_path: Path,
) -> None:
    out = tmp_path / "u.tar.gz"
    assert aion("bundle", "build", demo_bundle, "-o", out).code == 0
    result = aion("bundle", "verify", out, "--verification-key", key_files["RS256"][1])
    assert result.code == 2 and "not signed" in result.err


def _tar_with(entries: list[tarfile.TarInfo], payload: bytes = b"package x\n") -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tar:
        for info in entries:
            tar.addfile(info, io.BytesIO(payload) if info.isfile() else None)
    return raw.getvalue()


def test_path_traversal_entry_exits_2(aion: Callable[..., object], tmp_path: Path) -> None:
    info = tarfile.TarInfo("../../etc/evil.rego")
    info.size = len(b"package x\n")
    archive = tmp_path / "evil.tar.gz"
    archive.write_bytes(_tar_with([info]))
    result = aion("bundle", "inspect", archive)
    assert result.code == 2
    assert "evil.rego" in result.err and ".." in result.err


def test_symlink_entry_exits_2(aion: Callable[..., object], tmp_path: Path) -> None:
    link = tarfile.TarInfo("policy.rego")
    link.type = tarfile.SYMTYPE
    link.linkname = "/etc/passwd"
    archive = tmp_path / "link.tar.gz"
    archive.write_bytes(_tar_with([link]))
    result = aion("bundle", "inspect", archive)
    assert result.code == 2 and "not a regular file" in result.err


def test_malformed_manifest_and_bad_policy_exit_2(
    aion: Callable[..., object], demo_bundle: Path, tmp_path: Path
) -> None:
    (demo_bundle / ".manifest").write_text('{"revision": 1, "roots": ["aion/agent"]}')
    bad_manifest = aion("bundle", "build", demo_bundle, "-o", tmp_path / "x.tar.gz")
    assert bad_manifest.code == 2 and ".manifest" in bad_manifest.err
    (demo_bundle / ".manifest").write_text('{"revision": "1", "roots": ["aion/agent"]}')
    (demo_bundle / "deploy.rego").write_text("package aion.agent.deploy\ndeny contains msg if {\n")
    bad_policy = aion("bundle", "build", demo_bundle, "-o", tmp_path / "x.tar.gz")
    assert bad_policy.code == 2 and "deploy.rego" in bad_policy.err
    assert not (tmp_path / "x.tar.gz").exists(), (
        "nothing is written for a bundle that does not compile"
    )


def test_oversized_bundle_exits_2(
    aion: Callable[..., object], demo_bundle: Path, tmp_path: Path
) -> None:
    (demo_bundle / "aion" / "agent").mkdir(parents=True)
    (demo_bundle / "aion" / "agent" / "data.json").write_text(
        json.dumps({"blob": "x" * (5 * 1024 * 1024)})
    )
    result = aion("bundle", "build", demo_bundle, "-o", tmp_path / "big.tar.gz")
    assert result.code == 2 and "bundle_too_large" in result.err


def test_inspect_json_describes_signature(
    aion: Callable[..., object],
    demo_bundle: Path,
    key_files: dict[str, tuple[Path, Path]],
    tmp_path: Path,
) -> None:
    out = tmp_path / "b.tar.gz"
    _signed(aion, demo_bundle, key_files, out)
    result = aion("bundle", "inspect", out, "--format", "json")
    assert result.code == 0
    info = json.loads(result.out)
    assert info["name"] == "demo" and info["revision"] == "3"
    assert info["signature"]["header"]["alg"] == "RS256"
    assert {f["name"] for f in info["files"]} == {
        ".manifest",
        ".signatures.json",
        "deploy.rego",
        "policies.cedar",
        "schema.cedarschema",
    }


def test_sign_resigns_an_archive(
    aion: Callable[..., object],
    demo_bundle: Path,
    key_files: dict[str, tuple[Path, Path]],
    tmp_path: Path,
) -> None:
    out = tmp_path / "b.tar.gz"
    assert aion("bundle", "build", demo_bundle, "-o", out).code == 0
    assert (
        aion(
            "bundle", "sign", out, "--signing-key", key_files["ES256"][0], "--signing-alg", "ES256"
        ).code
        == 0
    )
    ok = aion(
        "bundle",
        "verify",
        out,
        "--verification-key",
        key_files["ES256"][1],
        "--signing-alg",
        "ES256",
    )
    assert ok.code == 0, ok.err
    missing = aion("bundle", "sign", out)
    assert missing.code == 2


def test_unknown_action_exits_2(
    aion: Callable[..., Any], demo_bundle: Path, tmp_path: Path
) -> None:
    (demo_bundle / "teleport.rego").write_text(
        'package aion.agent.teleport\nimport rego.v1\ndeny contains "x" if input.x\n'
    )
    rego = aion("bundle", "build", demo_bundle, "-o", tmp_path / "x.tar.gz")
    assert rego.code == 2
    assert "teleport.rego" in rego.err and "unknown action `agent.teleport`" in rego.err
    (demo_bundle / "teleport.rego").unlink()
    (demo_bundle / "schema.cedarschema").write_text(
        (demo_bundle / "schema.cedarschema").read_text()
        + 'action "agent.teleport" appliesTo { principal: [User], resource: [Agent], context: {} };\n'
    )
    (demo_bundle / "policies.cedar").write_text(
        '@id("t") permit(principal, action == Action::"agent.teleport", resource);\n'
    )
    cedar = aion("bundle", "build", demo_bundle, "-o", tmp_path / "x.tar.gz")
    assert cedar.code == 2
    assert "policies.cedar" in cedar.err and "unknown action `agent.teleport`" in cedar.err
    validated = aion("policy", "validate", demo_bundle)
    assert validated.code == 1 and "unknown_action" in validated.out
