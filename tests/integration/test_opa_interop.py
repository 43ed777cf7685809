"""Bundles signed by a real OPA verify with ours, and ours with OPA (both directions)."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from engine import SignatureError, VerificationKey, verify_files
from engine.bundle import load_bundle, read_tarball, write_tarball
from server.cli.main import main

ALGS = ("RS256", "ES256", "EdDSA")

# Values chosen to exercise OPA's canonical JSON hashing: key order, number
# literals, non-ASCII and a line separator that Go escapes.
DATA = '{"zeta": 1, "alpha": {"limit": 1.50, "ratio": 2.0e3, "name": "caf\\u00e9 \\u2028 <&>"}, "list": [3, 2, 1]}'


@pytest.fixture
def source(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    (src / "aion" / "agent" / "deploy").mkdir(parents=True)
    (src / ".manifest").write_text(
        '{"revision": "42", "roots": ["aion/agent"], "metadata": {"name": "interop"}}'
    )
    (src / "aion" / "agent" / "deploy" / "deploy.rego").write_text(
        'package aion.agent.deploy\nimport rego.v1\n\ndeny contains "no model" if not input.resource.attributes.model\n'
    )
    (src / "aion" / "agent" / "deploy" / "data.json").write_text(DATA)
    return src


def _opa(
    opa_bin: Path, *args: str | Path, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(opa_bin), *map(str, args)], capture_output=True, text=True, timeout=120, cwd=cwd
    )


def _aion_build(source: Path, out: Path, key: Path, alg: str) -> None:
    args = [
        "bundle",
        "build",
        str(source),
        "-o",
        str(out),
        "--signing-key",
        str(key),
        "--signing-alg",
        alg,
    ]
    assert main(args) == 0


@pytest.mark.parametrize("alg", ALGS)
def test_opa_signed_bundle_verifies_with_ours(
    opa_bin: Path, source: Path, key_files: dict[str, tuple[Path, Path]], tmp_path: Path, alg: str
) -> None:
    priv, pub = key_files[alg]
    out = tmp_path / "opa.tar.gz"
    built = _opa(
        opa_bin,
        "build",
        "-b",
        ".",
        "-o",
        out,
        "--signing-key",
        priv,
        "--signing-alg",
        alg,
        cwd=source,
    )
    assert built.returncode == 0, built.stderr
    files = read_tarball(out.read_bytes())
    claims = verify_files(
        files, {"default": VerificationKey(pub.read_text(), alg)}, now=datetime.now(UTC)
    )
    assert "data.json" in claims.files, "opa build merges data into one top-level data.json"
    bundle = load_bundle(out)
    assert bundle.revision == "42"
    assert bundle.data["aion"]["agent"]["deploy"]["alpha"]["limit"] == 1.5

    files["data.json"] = files["data.json"].replace(b"1.5", b"1.51")
    with pytest.raises(SignatureError, match="digest mismatch"):
        verify_files(
            files, {"default": VerificationKey(pub.read_text(), alg)}, now=datetime.now(UTC)
        )


@pytest.mark.parametrize("alg", ALGS)
def test_our_signed_bundle_verifies_with_opa(
    opa_bin: Path, source: Path, key_files: dict[str, tuple[Path, Path]], tmp_path: Path, alg: str
) -> None:
    priv, pub = key_files[alg]
    ours = tmp_path / "ours.tar.gz"
    _aion_build(source, ours, priv, alg)
    accepted = _opa(
        opa_bin,
        "build",
        "-b",
        ours,
        "--verification-key",
        pub,
        "--signing-alg",
        alg,
        "-o",
        tmp_path / "re.tar.gz",
    )
    assert accepted.returncode == 0, accepted.stderr

    files = read_tarball(ours.read_bytes())
    reformatted = ("\n  " + DATA.replace(", ", ",\n    ").replace(": ", " :  ") + "\n").encode()
    files["aion/agent/deploy/data.json"] = reformatted
    same_meaning = tmp_path / "reformatted.tar.gz"
    same_meaning.write_bytes(write_tarball(files))
    kept = _opa(
        opa_bin,
        "build",
        "-b",
        same_meaning,
        "--verification-key",
        pub,
        "--signing-alg",
        alg,
        "-o",
        tmp_path / "k.tar.gz",
    )
    assert kept.returncode == 0, "canonical hashing ignores whitespace, in OPA and in ours alike"

    files["aion/agent/deploy/deploy.rego"] += b"\n# tampered\n"
    tampered = tmp_path / "tampered.tar.gz"
    tampered.write_bytes(write_tarball(files))
    refused = _opa(
        opa_bin,
        "build",
        "-b",
        tampered,
        "--verification-key",
        pub,
        "--signing-alg",
        alg,
        "-o",
        tmp_path / "t.tar.gz",
    )
    assert refused.returncode != 0
    assert "deploy.rego" in refused.stdout + refused.stderr


def test_opa_serves_our_bundle_with_cedar_files(
    opa_bin: Path, source: Path, key_files: dict[str, tuple[Path, Path]], tmp_path: Path
) -> None:
    (source / "policies.cedar").write_text(
        '@id("p") permit(principal, action == Action::"agent.deploy", resource);\n'
    )
    (source / "schema.cedarschema").write_text(
        'entity User; entity Agent;\naction "agent.deploy" appliesTo { principal: [User], resource: [Agent] };\n'
    )
    priv, pub = key_files["ES256"]
    ours = tmp_path / "ours.tar.gz"
    _aion_build(source, ours, priv, "ES256")
    verified = tmp_path / "verified.tar.gz"
    check = _opa(
        opa_bin,
        "build",
        "-b",
        ours,
        "--verification-key",
        pub,
        "--signing-alg",
        "ES256",
        "-o",
        verified,
    )
    assert check.returncode == 0, check.stderr
    (tmp_path / "input.json").write_text('{"resource": {"attributes": {}}}')
    result = _opa(
        opa_bin,
        "eval",
        "--bundle",
        ours,
        "--format",
        "json",
        "--input",
        tmp_path / "input.json",
        "data.aion.agent.deploy.deny",
    )
    assert result.returncode == 0, result.stderr
    values = json.loads(result.stdout)["result"][0]["expressions"][0]["value"]
    assert values == ["no model"]
