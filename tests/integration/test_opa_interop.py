"""Bundles signed by a real OPA verify with ours, and ours with OPA (both directions).

Interchangeable bundles: `opa build --signing-key` output passes `aion bundle
verify`; `aion bundle build` output is served by `opa run --verification-key`
(and a tampered copy is refused at startup). The server side (uploading an
OPA-built bundle) is in tests/server/test_api_bundles_opa_built.py.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from engine import SignatureError, VerificationKey, verify_files
from engine.bundle import load_bundle, read_tarball, write_tarball
from server.cli.main import main
from tests.conftest import generate_key_pair
from tests.services import free_port

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


def _opa_build_signed(opa_bin: Path, source: Path, out: Path, key: Path, alg: str) -> None:
    built = _opa(
        opa_bin,
        "build",
        "-b",
        ".",
        "-o",
        out,
        "--signing-key",
        key,
        "--signing-alg",
        alg,
        cwd=source,
    )
    assert built.returncode == 0, built.stderr


@pytest.mark.parametrize("alg", ALGS)
def test_aion_bundle_verify_accepts_an_opa_built_bundle(
    opa_bin: Path,
    source: Path,
    key_files: dict[str, tuple[Path, Path]],
    tmp_path: Path,
    alg: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    priv, pub = key_files[alg]
    out = tmp_path / "opa.tar.gz"
    _opa_build_signed(opa_bin, source, out, priv, alg)
    verify = ["bundle", "verify", str(out), "--verification-key", str(pub), "--signing-alg", alg]
    assert main(verify) == 0
    said = capsys.readouterr().out
    assert "revision `42`" in said and f"signed by `default` ({alg})" in said

    files = read_tarball(out.read_bytes())
    files["aion/agent/deploy/deploy.rego"] += b"\n# tampered\n"
    tampered = tmp_path / "tampered.tar.gz"
    tampered.write_bytes(write_tarball(files))
    assert main([*verify[:2], str(tampered), *verify[3:]]) == 2
    assert "digest mismatch" in capsys.readouterr().err

    _, other_pub = generate_key_pair(alg)
    (tmp_path / "other.pub").write_text(other_pub)
    wrong_key = [*verify[:4], str(tmp_path / "other.pub"), *verify[5:]]
    assert main(wrong_key) == 2, "a bundle signed by another key is refused"


@contextmanager
def _opa_server(opa_bin: Path, *args: str | Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    port = free_port()
    process = subprocess.Popen(
        [str(opa_bin), "run", "--server", "--addr", f"127.0.0.1:{port}", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        yield process, f"http://127.0.0.1:{port}"
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=10)
        if process.stdout:
            process.stdout.close()


def _healthy(process: subprocess.Popen[str], url: str, deadline_s: float = 30.0) -> bool:
    """Poll `/health?bundles=true` until 200 (True) or the process exits (False)."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            if httpx.get(f"{url}/health?bundles=true", timeout=2).status_code == 200:
                return True
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise AssertionError("OPA neither became healthy nor exited before the deadline")


@pytest.mark.parametrize("alg", ALGS)
def test_opa_run_activates_our_signed_bundle_and_refuses_a_tampered_one(
    opa_bin: Path, source: Path, key_files: dict[str, tuple[Path, Path]], tmp_path: Path, alg: str
) -> None:
    priv, pub = key_files[alg]
    ours = tmp_path / "ours.tar.gz"
    _aion_build(source, ours, priv, alg)
    verifying = ("--verification-key", pub, "--signing-alg", alg)

    with _opa_server(opa_bin, "--bundle", ours, *verifying) as (process, url):
        assert _healthy(process, url), process.stdout.read() if process.stdout else ""
        answer = httpx.post(
            f"{url}/v1/data/aion/agent/deploy/deny",
            json={"input": {"resource": {"attributes": {}}}},
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["result"] == ["no model"]
        activated = httpx.get(f"{url}/v1/data/system/bundles", timeout=5).json()["result"]
        # OPA names a bundle loaded from a file by its path.
        assert [b["manifest"]["revision"] for b in activated.values()] == ["42"]

    files = read_tarball(ours.read_bytes())
    files["aion/agent/deploy/deploy.rego"] = files["aion/agent/deploy/deploy.rego"].replace(
        b"not input.resource.attributes.model", b"false"
    )
    tampered = tmp_path / "tampered.tar.gz"
    tampered.write_bytes(write_tarball(files))
    with _opa_server(opa_bin, "--bundle", tampered, *verifying) as (process, url):
        assert not _healthy(process, url), "OPA served a tampered bundle"
        assert process.returncode != 0
        said = process.stdout.read() if process.stdout else ""
        assert "digest mismatch" in said and "deploy.rego" in said
