"""A bundle built and signed by the real `opa build --signing-key` is accepted by our server.

The tenant trusts the key under OPA's default key id (`default`); the upload
is stored, activates, and decides; a tampered copy is refused as any
badly signed bundle is. Runs on SQLite and PostgreSQL, as every API module.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from engine.bundle import read_tarball, write_tarball
from tests.server.api_support import assert_error
from tests.server.bundle_support import (
    decide,
    private_pem,
    public_pem,
    revisions,
    source_files,
    upload,
)

pytestmark = pytest.mark.anyio

OPA_REVISION = "2026.11.29.1"
OPA_KEY = ec.generate_private_key(ec.SECP256R1())


def _opa_build(opa_bin: Path, tmp_path: Path) -> bytes:
    """default-safe without `ls`, built and signed by OPA (ES256, key id `default`)."""
    src = tmp_path / "src"
    for name, raw in source_files(OPA_REVISION, without_ls=True).items():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_bytes(raw)
    key = tmp_path / "opa.pem"
    key.write_text(private_pem(OPA_KEY))
    out = tmp_path / "opa.tar.gz"
    built = subprocess.run(
        [
            *(str(opa_bin), "build", "-b", ".", "-o", str(out)),
            *("--signing-key", str(key), "--signing-alg", "ES256"),
        ],
        cwd=src,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    return out.read_bytes()


async def test_an_opa_built_signed_bundle_is_uploaded_activated_and_decides(
    client: httpx.AsyncClient, auth: Any, fresh_tenant: str, opa_bin: Path, tmp_path: Path
) -> None:
    headers = auth("admin", tenant=fresh_tenant)
    key = {"key_id": "default", "algorithm": "ES256", "public_key": public_pem(OPA_KEY)}
    trusted = await client.post("/api/v1/keys", json=key, headers=headers)
    assert trusted.status_code == 201, trusted.text
    archive = _opa_build(opa_bin, tmp_path)
    assert "data.json" in read_tarball(archive), "OPA merges all data into one data.json"

    response = await upload(client, headers, archive)
    assert response.status_code == 201, response.text
    stored = response.json()
    assert {k: stored[k] for k in ("name", "revision", "status", "signed_by", "scope")} == {
        "name": "default-safe",
        "revision": OPA_REVISION,
        "status": "stored",
        "signed_by": "default",
        "scope": "tenant",
    }

    url = "/api/v1/bundles/default-safe/activate"
    activated = await client.post(url, json={"revision": OPA_REVISION}, headers=headers)
    assert activated.status_code == 200, activated.text
    assert (await revisions(client, headers))[f"tenant:{OPA_REVISION}"] == "active"
    decision = await decide(client, headers)
    assert decision["revisions"]["default-safe"] == OPA_REVISION
    assert decision["allowed"] is False, "the OPA-built revision has no `ls`: its data decides"


async def test_a_tampered_opa_built_bundle_is_refused(
    client: httpx.AsyncClient, auth: Any, fresh_tenant: str, opa_bin: Path, tmp_path: Path
) -> None:
    headers = auth("admin", tenant=fresh_tenant)
    key = {"key_id": "default", "algorithm": "ES256", "public_key": public_pem(OPA_KEY)}
    assert (await client.post("/api/v1/keys", json=key, headers=headers)).status_code == 201
    files = read_tarball(_opa_build(opa_bin, tmp_path))
    original = files["data.json"]
    # Allow `rm` in place of `cat`: the shell allowlist is in OPA's merged data.json.
    files["data.json"] = original.replace(b'"cat"', b'"rm"')
    assert files["data.json"] != original
    error = assert_error(await upload(client, headers, write_tarball(files)), 400, "invalid_input")
    assert error["message"].startswith("bundle_signature_invalid"), error
    assert "data.json" in error["message"]
    assert f"tenant:{OPA_REVISION}" not in await revisions(client, headers)
