"""Signed test bundles for the bundle API tests: built from the shipped `default-safe`.

``R2`` drops ``ls`` from the ops.shell allowlist, so a decision that allowed
`ls` flips to deny under it. Plus the HTTP calls the bundle tests repeat.
"""

from __future__ import annotations

import gzip
import json
import struct
import zlib
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from engine.bundle import sign_files, write_tarball
from engine.bundle.files import MANIFEST_FILE, SIGNATURES_FILE, read_directory
from server.auth import utcnow

SOURCE = Path(__file__).resolve().parents[2] / "policies" / "default-safe"
GLOBAL_REVISION = json.loads((SOURCE / MANIFEST_FILE).read_text())["revision"]
R1, R2 = "2026.11.28.1", "2026.11.28.2"
KEY_ID = "acme-2026"
SHELL_DATA = "aion/tool/invoke/data.json"
LS = {
    "action": "tool.invoke",
    "resource": {"type": "tool", "id": "ops.shell"},
    "context": {"arguments": {"command": "ls"}},
}


def private_pem(key: Any) -> str:
    return str(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
    )


def public_pem(key: Any) -> str:
    return str(
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


SIGNER = ec.generate_private_key(ec.SECP256R1())
STRANGER = ec.generate_private_key(ec.SECP256R1())


def source_files(revision: str, *, name: str = "default-safe", without_ls: bool = False) -> Any:
    """The files of default-safe with a new revision and name (and without `ls`)."""
    files = {n: r for n, r in read_directory(SOURCE).items() if not n.endswith("_test.rego")}
    files.pop(SIGNATURES_FILE, None)
    manifest = json.loads(files[MANIFEST_FILE])
    manifest["revision"] = revision
    manifest["metadata"]["name"] = name
    files[MANIFEST_FILE] = json.dumps(manifest).encode()
    if without_ls:
        data = json.loads(files[SHELL_DATA])
        data["allowlists"]["ops.shell"]["commands"].remove("ls")
        files[SHELL_DATA] = json.dumps(data).encode()
    return files


def signed(files: dict[str, bytes], key: Any = SIGNER, key_id: str = KEY_ID) -> dict[str, bytes]:
    signature = sign_files(
        files, private_pem(key), algorithm="ES256", key_id=key_id, issued_at=utcnow()
    )
    return {**files, SIGNATURES_FILE: signature}


def build(revision: str, **kw: Any) -> bytes:
    return write_tarball(signed(source_files(revision, **kw)))


def broken_gzip() -> bytes:
    """A gzipped tarball whose deflate stream turns invalid inside a member's data."""
    tar = gzip.decompress(write_tarball({"aion/big/data.json": b"[" + b"0," * 40000 + b"0]"}))
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    body = deflate.compress(tar[:32768]) + deflate.flush(zlib.Z_FULL_FLUSH)
    header = b"\x1f\x8b\x08\x00" + struct.pack("<I", 0) + b"\x00\xff"
    return header + body + b"\x07" + bytes(64)  # 0x07: a final block of the reserved type


async def trust(client: httpx.AsyncClient, headers: dict[str, str]) -> None:
    body = {"key_id": KEY_ID, "algorithm": "ES256", "public_key": public_pem(SIGNER)}
    response = await client.post("/api/v1/keys", json=body, headers=headers)
    assert response.status_code == 201, response.text


async def upload(
    client: httpx.AsyncClient, headers: dict[str, str], archive: bytes
) -> httpx.Response:
    return await client.post(
        "/api/v1/bundles",
        content=archive,
        headers={**headers, "Content-Type": "application/gzip"},
    )


async def decide(
    client: httpx.AsyncClient, headers: dict[str, str], body: dict[str, Any] = LS
) -> Any:
    response = await client.post("/api/v1/decide", json=body, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


async def record(client: httpx.AsyncClient, headers: dict[str, str], decision_id: str) -> Any:
    response = await client.get(f"/api/v1/decisions/{decision_id}", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


async def revisions(client: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, str]:
    """(scope:revision → status) of default-safe as the tenant sees it."""
    response = await client.get("/api/v1/bundles/default-safe", headers=headers)
    assert response.status_code == 200, response.text
    return {f"{r['scope']}:{r['revision']}": r["status"] for r in response.json()["revisions"]}


def policies(reasons: list[dict[str, Any]]) -> set[str]:
    return {r["policy"] for r in reasons}
