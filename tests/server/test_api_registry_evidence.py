"""Registration over HTTP with in-toto layouts and model-signing signatures, and the
agent-template and tool registries (`artifact.register`).

Evidence is made by the real libraries: layouts signed and links recorded by
``in-toto``, DSSE provenance by ``securesystemslib``, model signatures by
``model-signing``. Each refusal asserts its reason code and that nothing was
stored: no row, no decision, no artifact file.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from model_signing import signing
from securesystemslib.dsse import Envelope
from securesystemslib.signer import CryptoSigner, Signer, SSlibKey

from server.db.tables import AgentTemplate, Decision, Model, Tenant, Tool
from server.state import Services
from tests.registry.conftest import key_dict, make_layout, make_link, sign_layout
from tests.server.api_support import OTHER, assert_error

pytestmark = pytest.mark.anyio

BUILDER = "https://ci.example.com/builders/gpu@v1"
SLSA = "https://slsa.dev/provenance/v1"
ARTIFACT = b"model weights v1\n" * 32
SETTINGS = {"registry": {"builders": [BUILDER], "external_parameters": ["repository"]}}
Auth = Callable[..., dict[str, str]]


class Keys:
    def __init__(self) -> None:
        self.owner = CryptoSigner.generate_ed25519()
        self.func1_private = Ed25519PrivateKey.generate()
        self.func1 = CryptoSigner(self.func1_private)
        self.func2 = CryptoSigner.generate_ed25519()
        self.attester = CryptoSigner.generate_ed25519()
        self.ec_attester = CryptoSigner.generate_ecdsa()


@pytest.fixture(scope="module")
def keys() -> Keys:
    return Keys()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def provenance(data: bytes, key: Signer, name: str = "model.bin") -> dict[str, Any]:
    stmt = {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": name, "digest": {"sha256": hashlib.sha256(data).hexdigest()}}],
        "predicateType": SLSA,
        "predicate": {
            "buildDefinition": {
                "buildType": "https://example.com/build@v1",
                "externalParameters": {"repository": "https://git.example.com/m"},
            },
            "runDetails": {"builder": {"id": BUILDER}},
        },
    }
    env = Envelope(json.dumps(stmt).encode(), "application/vnd.in-toto+json", {})
    env.sign(key)
    return {"kind": "dsse", "envelope": dict(env.to_dict())}


def in_toto(layout: bytes, links: list[tuple[str, bytes]]) -> dict[str, Any]:
    return {
        "kind": "in-toto",
        "layout": json.loads(layout),
        "links": {name: json.loads(raw) for name, raw in links},
    }


async def setup(client: httpx.AsyncClient, auth: Auth, tenant: str, keys: Keys) -> None:
    await Tenant.update({Tenant.settings: SETTINGS}).where(Tenant.id == tenant)
    for signer, purpose in (
        (keys.owner, "layout-owner"),
        (keys.func1, "functionary"),
        (keys.func2, "functionary"),
        (keys.attester, "attester"),
        (keys.ec_attester, "attester"),
    ):
        response = await client.post(
            "/api/v1/trust-roots",
            json={"public_key": json.dumps(signer.public_key.to_dict()), "purpose": purpose},
            headers=auth("security", tenant=tenant),
        )
        assert response.status_code == 201, response.text


def artifact_files(svc: Services) -> list[Path]:
    root = svc.data_dir / "registry" / "artifacts"
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


async def state_of(tenant: str, svc: Services) -> tuple[Any, ...]:
    """What a refusal must not change: decisions, rows of every registry table, files."""
    return (
        await Decision.count().where(Decision.tenant == tenant),
        await Model.select().where(Model.tenant == tenant).order_by(Model.id),
        await Tool.select().where(Tool.tenant == tenant).order_by(Tool.id),
        await AgentTemplate.select().where(AgentTemplate.tenant == tenant),
        artifact_files(svc),
    )


def layout_evidence(keys: Keys, tmp_path: Path, **kwargs: Any) -> dict[str, Any]:
    layout = sign_layout(make_layout([keys.func1], **kwargs), keys.owner)
    return in_toto(layout, [make_link(tmp_path, keys.func1, {"model.bin": ARTIFACT})])


@pytest.fixture
def signed_model(keys: Keys, tmp_path: Path) -> tuple[dict[str, str], dict[str, Any]]:
    model = tmp_path / "tiny-model"
    model.mkdir()
    files = {"weights.bin": b"\x00\x01weights" * 10, "config.json": b'{"layers": 2}'}
    for name, data in files.items():
        (model / name).write_bytes(data)
    key = tmp_path / "signing-key.pem"
    key.write_bytes(keys.ec_attester.private_bytes)
    sig = tmp_path / "model.sig"
    signing.Config().use_elliptic_key_signer(private_key=key).sign(model, sig)
    return {n: b64(d) for n, d in files.items()}, json.loads(sig.read_bytes())


# --- item 1: models with in-toto layouts and model signatures ---------------------


async def test_model_with_in_toto_layout_and_provenance(
    client: httpx.AsyncClient,
    auth: Auth,
    svc: Services,
    fresh_tenant: str,
    keys: Keys,
    tmp_path: Path,
) -> None:
    await setup(client, auth, fresh_tenant, keys)
    response = await client.post(
        "/api/v1/models",
        json={
            "name": "layout-model",
            "privacy": "local-only",
            "artifact_base64": b64(ARTIFACT),
            "attestation": layout_evidence(keys, tmp_path),
            "provenance": provenance(ARTIFACT, keys.attester),
        },
        headers=auth("security", tenant=fresh_tenant),
    )
    assert response.status_code == 201, response.text
    model = response.json()
    digest = hashlib.sha256(ARTIFACT).hexdigest()
    assert (model["verified"], model["sha256"], model["artifact_stored"]) == (True, digest, True)
    record = await client.get(
        f"/api/v1/decisions/{model['decision_id']}", headers=auth("auditor", tenant=fresh_tenant)
    )
    facts = record.json()["input"]["context"]["attestations"]
    assert (facts["kind"], facts["layout_name"], facts["step_names"]) == (
        "in-toto-layout",
        "layout-model",
        ["build"],
    )
    assert facts["builder_id"] == BUILDER and facts["predicate_types"] == [SLSA]
    assert set(facts["signer_key_ids"]) == {
        keys.owner.public_key.keyid,
        keys.attester.public_key.keyid,
    }
    assert facts["subject_digests"] == [f"sha256:{digest}"]
    assert (svc.data_dir / "registry" / "artifacts" / digest[:2] / digest).read_bytes() == ARTIFACT


async def test_model_with_model_signing_files(
    client: httpx.AsyncClient,
    auth: Auth,
    svc: Services,
    fresh_tenant: str,
    keys: Keys,
    signed_model: tuple[dict[str, str], dict[str, Any]],
) -> None:
    await setup(client, auth, fresh_tenant, keys)
    files, signature = signed_model
    # Probe the model digest with a registration without provenance: the shipped policy
    # wants SLSA provenance and a builder, so it denies (decision recorded, nothing stored).
    bare = {
        "name": "signed-model",
        "privacy": "hybrid",
        "attestation": {"kind": "model-signing", "signature": signature, "files": files},
    }
    before = await state_of(fresh_tenant, svc)
    denied = await client.post(
        "/api/v1/models", json=bare, headers=auth("security", tenant=fresh_tenant)
    )
    refused = assert_error(denied, 403, "policy_denied")
    assert {"registry_admission.provenance_missing", "registry_admission.builder_missing"} <= {
        r["policy"] for r in refused["reasons"]
    }
    after = await state_of(fresh_tenant, svc)
    assert after[0] == before[0] + 1 and after[1:4] == before[1:4]
    record = await client.get(
        f"/api/v1/decisions/{refused['decision_id']}", headers=auth("auditor", tenant=fresh_tenant)
    )
    facts = record.json()["input"]["context"]["attestations"]
    assert facts["kind"] == "model-signing"
    model_digest = facts["model_digest"]
    # The provenance is about the model digest (the subject the signature signs).
    stmt_env = provenance(b"", keys.attester, name="tiny-model")
    payload = json.loads(base64.b64decode(stmt_env["envelope"]["payload"]))
    payload["subject"][0]["digest"]["sha256"] = model_digest
    env = Envelope(json.dumps(payload).encode(), "application/vnd.in-toto+json", {})
    env.sign(keys.attester)
    response = await client.post(
        "/api/v1/models",
        json={**bare, "provenance": {"kind": "dsse", "envelope": dict(env.to_dict())}},
        headers=auth("security", tenant=fresh_tenant),
    )
    assert response.status_code == 201, response.text
    model = response.json()
    assert (model["sha256"], model["verified"], model["size"]) == (model_digest, True, 103)
    assert {f["name"] for f in model["attestations"]["file_digests"]} == set(files)


# --- item 2: agent templates and tools --------------------------------------------


async def test_agent_template_and_tool_registration(
    client: httpx.AsyncClient, auth: Auth, fresh_tenant: str, keys: Keys, tmp_path: Path
) -> None:
    await setup(client, auth, fresh_tenant, keys)
    template = b'{"name": "research", "steps": []}'
    registered = await client.post(
        "/api/v1/agent-templates",
        json={
            "name": "research-copilot",
            "description": "a research agent",
            "artifact_base64": b64(template),
            "attestation": provenance(template, keys.attester),
        },
        headers=auth("security", tenant=fresh_tenant),
    )
    assert registered.status_code == 201, registered.text
    tpl = registered.json()
    assert tpl["sha256"] == hashlib.sha256(template).hexdigest() and tpl["verified"] is True
    record = await client.get(
        f"/api/v1/decisions/{tpl['decision_id']}", headers=auth("auditor", tenant=fresh_tenant)
    )
    assert record.json()["action"] == "artifact.register"
    assert record.json()["input"]["resource"]["id"] == "agent-template:research-copilot"
    for ident in (tpl["id"], "research-copilot"):
        got = await client.get(
            f"/api/v1/agent-templates/{ident}", headers=auth("viewer", tenant=fresh_tenant)
        )
        assert got.status_code == 200 and got.json()["id"] == tpl["id"]
    listed = await client.get(
        "/api/v1/agent-templates", headers=auth("viewer", tenant=fresh_tenant)
    )
    assert [t["name"] for t in listed.json()["items"]] == ["research-copilot"]
    again = await client.post(
        "/api/v1/agent-templates",
        json={
            "name": "research-copilot",
            "artifact_base64": b64(template),
            "attestation": provenance(template, keys.attester),
        },
        headers=auth("security", tenant=fresh_tenant),
    )
    assert_error(again, 409, "conflict")

    # A tool on in-toto evidence with provenance; a seeded tool gets its evidence.
    tool = await client.post(
        "/api/v1/tools",
        json={
            "name": "web_search",
            "artifact_base64": b64(ARTIFACT),
            "attestation": layout_evidence(keys, tmp_path),
            "provenance": provenance(ARTIFACT, keys.attester),
        },
        headers=auth("admin", tenant=fresh_tenant),
    )
    assert tool.status_code == 201, tool.text
    assert (tool.json()["id"], tool.json()["verified"]) == ("web_search", True)
    assert tool.json()["attestations"]["kind"] == "in-toto-layout"
    got = await client.get("/api/v1/tools/web_search", headers=auth("viewer", tenant=fresh_tenant))
    assert got.json()["sha256"] == hashlib.sha256(ARTIFACT).hexdigest()
    listed = await client.get("/api/v1/tools", headers=auth("viewer", tenant=fresh_tenant))
    assert {t["id"]: t["verified"] for t in listed.json()["items"]}["web_search"] is True

    # Tenant-scoped: another tenant sees neither.
    for url in (f"/api/v1/agent-templates/{tpl['id']}", "/api/v1/agent-templates/research-copilot"):
        assert_error(await client.get(url, headers=auth("admin", tenant=OTHER)), 404, "not_found")
    other = await client.get("/api/v1/agent-templates", headers=auth("admin", tenant=OTHER))
    assert tpl["id"] not in {t["id"] for t in other.json()["items"]}
    other_tool = await client.get("/api/v1/tools/web_search", headers=auth("admin", tenant=OTHER))
    assert other_tool.json()["verified"] is False
    missing = await client.get("/api/v1/tools/no-such-tool", headers=auth("admin", tenant=OTHER))
    assert_error(missing, 404, "not_found")
    viewer = await client.post(
        "/api/v1/tools",
        json={"name": "x", "sha256": "ab" * 32, "attestation": provenance(ARTIFACT, keys.attester)},
        headers=auth("viewer", tenant=fresh_tenant),
    )
    assert_error(viewer, 403, "forbidden")


# --- item 3: refusals of layouts and uploads ---------------------------------------


def _threshold(keys: Keys, tmp_path: Path) -> dict[str, Any]:
    layout = sign_layout(make_layout([keys.func1, keys.func2], threshold=2), keys.owner)
    return in_toto(layout, [make_link(tmp_path, keys.func1, {"model.bin": ARTIFACT})])


def _same_key_twice(keys: Keys, tmp_path: Path) -> dict[str, Any]:
    # func1's key listed under a second id with threshold 2: both links are by one key.
    public = keys.func1.public_key
    alias = CryptoSigner(
        keys.func1_private, SSlibKey("ab" * 32, public.keytype, public.scheme, public.keyval)
    )
    layout = make_layout([keys.func1], threshold=2)
    layout.add_functionary_key(key_dict(alias))
    layout.steps[0].pubkeys = [keys.func1.public_key.keyid, alias.public_key.keyid]
    raw = sign_layout(layout, keys.owner)
    files = {"model.bin": ARTIFACT}
    return in_toto(
        raw,
        [make_link(tmp_path / "a", keys.func1, files), make_link(tmp_path / "b", alias, files)],
    )


def _expired(keys: Keys, tmp_path: Path) -> dict[str, Any]:
    return layout_evidence(keys, tmp_path, expires=datetime.now(UTC) - timedelta(seconds=1))


def _rule_violation(keys: Keys, tmp_path: Path) -> dict[str, Any]:
    layout = sign_layout(make_layout([keys.func1]), keys.owner)
    files = {"model.bin": ARTIFACT, "backdoor.py": b"import os"}
    return in_toto(layout, [make_link(tmp_path, keys.func1, files)])


LAYOUT_REJECTIONS: dict[str, tuple[str, Callable[[Keys, Path], dict[str, Any]]]] = {
    "threshold": ("threshold_not_met", _threshold),
    "same-key-twice": ("threshold_not_met", _same_key_twice),
    "expired": ("layout_expired", _expired),
    "rule-violation": ("artifact_rule_violation", _rule_violation),
}


@pytest.mark.parametrize("case", sorted(LAYOUT_REJECTIONS))
@pytest.mark.parametrize("path", ["/api/v1/models", "/api/v1/tools"])
async def test_layout_refusals_name_their_reason_and_store_nothing(
    client: httpx.AsyncClient,
    auth: Auth,
    svc: Services,
    fresh_tenant: str,
    keys: Keys,
    tmp_path: Path,
    case: str,
    path: str,
) -> None:
    await setup(client, auth, fresh_tenant, keys)
    reason, make = LAYOUT_REJECTIONS[case]
    body: dict[str, Any] = {
        "name": "refused",
        "artifact_base64": b64(ARTIFACT),
        "attestation": make(keys, tmp_path),
        "provenance": provenance(ARTIFACT, keys.attester),
    }
    if path.endswith("models"):
        body["privacy"] = "hybrid"
    before = await state_of(fresh_tenant, svc)
    response = await client.post(path, json=body, headers=auth("security", tenant=fresh_tenant))
    assert assert_error(response, 422, "attestation_rejected")["reason"] == reason
    assert await state_of(fresh_tenant, svc) == before


@pytest.mark.parametrize("where", ["artifact", "model-file"])
async def test_truncated_upload_is_refused_and_stores_nothing(
    client: httpx.AsyncClient,
    auth: Auth,
    svc: Services,
    fresh_tenant: str,
    keys: Keys,
    tmp_path: Path,
    signed_model: tuple[dict[str, str], dict[str, Any]],
    where: str,
) -> None:
    await setup(client, auth, fresh_tenant, keys)
    if where == "artifact":
        body: dict[str, Any] = {
            "name": "cut",
            "privacy": "hybrid",
            "artifact_base64": b64(ARTIFACT)[:-3],
            "attestation": layout_evidence(keys, tmp_path),
            "provenance": provenance(ARTIFACT, keys.attester),
        }
    else:
        files, signature = signed_model
        cut = {**files, "weights.bin": files["weights.bin"][:-2]}
        body = {
            "name": "cut",
            "privacy": "hybrid",
            "attestation": {"kind": "model-signing", "signature": signature, "files": cut},
        }
    before = await state_of(fresh_tenant, svc)
    response = await client.post(
        "/api/v1/models", json=body, headers=auth("security", tenant=fresh_tenant)
    )
    assert assert_error(response, 422, "attestation_rejected")["reason"] == "upload_truncated"
    assert await state_of(fresh_tenant, svc) == before
