"""Registration over HTTP: trust roots, models on verified DSSE evidence, the decision, deploy.

Evidence is made by the real libraries in the tests (keys by ``cryptography``,
DSSE envelopes signed by ``securesystemslib``), never written by hand. Every
refusal is checked for its reason code and for leaving nothing behind: no model
row, no decision, no artifact file.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from securesystemslib.dsse import Envelope
from securesystemslib.signer import CryptoSigner

from server.db.tables import Decision, Model, Tenant
from server.registration import MAX_JSON_ARTIFACT_BYTES
from server.state import Services
from tests.server.api_support import OTHER, assert_error

pytestmark = pytest.mark.anyio

BUILDER = "https://ci.example.com/builders/gpu@v1"
SLSA = "https://slsa.dev/provenance/v1"
ARTIFACT = b"model weights v1\n" * 64
REGISTRY_SETTINGS = {"registry": {"builders": [BUILDER], "external_parameters": ["repository"]}}


class Key:
    """A key pair made with ``cryptography``: its PEM public key and a DSSE signer."""

    def __init__(self, private: ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey) -> None:
        self.signer = CryptoSigner(private)
        self.pem = (
            private.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode()
        )
        self.key_id = self.signer.public_key.keyid


@pytest.fixture(scope="module")
def attester() -> Key:
    return Key(ed25519.Ed25519PrivateKey.generate())


@pytest.fixture(scope="module")
def stranger() -> Key:
    return Key(ec.generate_private_key(ec.SECP256R1()))


def statement(
    data: bytes = ARTIFACT,
    *,
    builder: str = BUILDER,
    parameters: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": "model.bin", "digest": {"sha256": hashlib.sha256(data).hexdigest()}}],
        "predicateType": SLSA,
        "predicate": {
            "buildDefinition": {
                "buildType": "https://example.com/model-build@v1",
                "externalParameters": parameters or {"repository": "https://git.example.com/m"},
            },
            "runDetails": {"builder": {"id": builder}},
        },
    }


def envelope(stmt: dict[str, Any], key: Key) -> dict[str, Any]:
    """A DSSE envelope over ``stmt``, signed by securesystemslib."""
    env = Envelope(json.dumps(stmt).encode(), "application/vnd.in-toto+json", {})
    env.sign(key.signer)
    return dict(env.to_dict())


def body(
    name: str, env: dict[str, Any], data: bytes | None = ARTIFACT, **extra: Any
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": name,
        "privacy": "hybrid",
        "attestation": {"kind": "dsse", "envelope": env},
        **extra,
    }
    if data is not None and "sha256" not in extra:
        out["artifact_base64"] = base64.b64encode(data).decode()
    return out


Auth = Callable[..., dict[str, str]]


async def trust(client: httpx.AsyncClient, auth: Auth, tenant: str, key: Key) -> dict[str, Any]:
    response = await client.post(
        "/api/v1/trust-roots",
        json={"public_key": key.pem, "purpose": "attester"},
        headers=auth("security", tenant=tenant),
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


async def configure(tenant: str, settings: dict[str, Any] | None = None) -> None:
    await Tenant.update({Tenant.settings: settings or REGISTRY_SETTINGS}).where(Tenant.id == tenant)


def artifact_files(svc: Services) -> list[Path]:
    root = svc.data_dir / "registry" / "artifacts"
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


async def state_of(tenant: str) -> tuple[int, int, list[Any]]:
    """(decisions, verified models, model rows) of a tenant: what a refusal must not change."""
    decisions = await Decision.count().where(Decision.tenant == tenant)
    verified = await Model.count().where((Model.tenant == tenant) & Model.verified.eq(True))
    rows = await Model.select().where(Model.tenant == tenant).order_by(Model.id)
    return decisions, verified, rows


async def test_trust_roots_add_list_revoke(
    client: httpx.AsyncClient, auth: Auth, fresh_tenant: str, attester: Key, stranger: Key
) -> None:
    added = await trust(client, auth, fresh_tenant, attester)
    # The securesystemslib default key id, the id DSSE signatures carry.
    assert added["key_id"] == attester.key_id
    assert (added["purpose"], added["revoked"], added["expires_at"]) == ("attester", False, None)

    ec_root = await client.post(
        "/api/v1/trust-roots",
        json={
            "public_key": stranger.pem,
            "purpose": "functionary",
            "expires_at": "2099-01-01T00:00:00Z",
        },
        headers=auth("admin", tenant=fresh_tenant),
    )
    assert ec_root.status_code == 201, ec_root.text
    assert ec_root.json()["key_id"] == stranger.key_id
    assert ec_root.json()["public_key"] == stranger.pem
    assert ec_root.json()["expires_at"].startswith("2099-01-01")

    again = await client.post(
        "/api/v1/trust-roots",
        json={"public_key": attester.pem, "purpose": "attester"},
        headers=auth("admin", tenant=fresh_tenant),
    )
    assert_error(again, 409, "conflict")
    for bad in (
        {"public_key": "not a key", "purpose": "attester"},
        {"public_key": attester.pem, "purpose": "owner"},
        {"public_key": attester.pem, "purpose": "attester", "expires_at": "2001-01-01T00:00:00Z"},
        {"public_key": attester.pem, "purpose": "attester", "revoked": True},
    ):
        response = await client.post(
            "/api/v1/trust-roots", json=bad, headers=auth("admin", tenant=fresh_tenant)
        )
        assert_error(response, 400, "invalid_input")

    listed = await client.get("/api/v1/trust-roots", headers=auth("auditor", tenant=fresh_tenant))
    assert listed.status_code == 200, listed.text
    assert {r["key_id"] for r in listed.json()["items"]} == {attester.key_id, stranger.key_id}

    revoked = await client.delete(
        f"/api/v1/trust-roots/{attester.key_id}", headers=auth("security", tenant=fresh_tenant)
    )
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["revoked"] is True and revoked.json()["revoked_at"]
    listed = await client.get("/api/v1/trust-roots", headers=auth("admin", tenant=fresh_tenant))
    kept = {r["key_id"]: r["revoked"] for r in listed.json()["items"]}
    assert kept == {attester.key_id: True, stranger.key_id: False}
    missing = await client.delete(
        "/api/v1/trust-roots/" + "ab" * 32, headers=auth("admin", tenant=fresh_tenant)
    )
    assert_error(missing, 404, "not_found")


async def test_register_model_then_deploy_an_agent_using_it(
    client: httpx.AsyncClient, auth: Auth, svc: Services, fresh_tenant: str, attester: Key
) -> None:
    """The end to end of issue 5: the seeded `mixtral-8x7b` is registered but unverified,
    so deploy-gates (enforce) refuses its agent; registering verified evidence for it
    makes the same deploy pass."""
    tenant = fresh_tenant
    await configure(tenant)
    await trust(client, auth, tenant, attester)
    created = await client.post(
        "/api/v1/agents",
        json={
            "name": "Uses mixtral",
            "model": "model://mixtral-8x7b",
            "tool_ids": ["web_search"],
            "policy_ids": ["deploy-gates"],
        },
        headers=auth("admin", tenant=tenant),
    )
    assert created.status_code == 201, created.text
    agent = created.json()["id"]
    deploy_url = f"/api/v1/agents/{agent}/deploy"
    denied = await client.post(deploy_url, headers=auth("operator", tenant=tenant))
    reasons = {r["policy"] for r in assert_error(denied, 403, "policy_denied")["reasons"]}
    assert reasons == {"deploy_gates.model_unverified"}

    registered = await client.post(
        "/api/v1/models",
        json=body("mixtral-8x7b", envelope(statement(), attester)),
        headers=auth("security", tenant=tenant),
    )
    assert registered.status_code == 201, registered.text
    model = registered.json()
    digest = hashlib.sha256(ARTIFACT).hexdigest()
    assert model["id"] == f"mdl_{tenant}_mixtral-8x7b"  # the seeded model's id, kept
    assert (model["registered"], model["verified"], model["sha256"]) == (True, True, digest)
    assert (model["artifact_stored"], model["size"], model["mode"]) == (
        True,
        len(ARTIFACT),
        "enforce",
    )
    assert model["attestations"]["signer_key_ids"] == [attester.key_id]

    # The decision record carries the verified facts as context.attestations.
    record = await client.get(
        f"/api/v1/decisions/{model['decision_id']}", headers=auth("auditor", tenant=tenant)
    )
    assert record.status_code == 200, record.text
    record_body = record.json()
    assert (record_body["action"], record_body["result"]["outcome"]) == ("model.register", "allow")
    facts = record_body["input"]["context"]["attestations"]
    assert facts["verified"] is True
    assert facts["kind"] == "in-toto-statement"
    assert facts["builder_id"] == BUILDER
    assert facts["predicate_types"] == [SLSA]
    assert facts["signer_key_ids"] == [attester.key_id]
    assert facts["subject_digests"] == [f"sha256:{digest}"]
    assert facts["subjects"] == [{"name": "model.bin", "sha256": digest}]
    assert record_body["input"]["resource"]["attributes"]["sha256"] == digest

    # The bytes are in the content-addressed store, verified on read.
    stored = svc.data_dir / "registry" / "artifacts" / digest[:2] / digest
    assert stored.read_bytes() == ARTIFACT
    fetched = await client.get(
        f"/api/v1/models/{model['id']}", headers=auth("viewer", tenant=tenant)
    )
    assert fetched.status_code == 200 and fetched.json()["verified"] is True
    listed = await client.get("/api/v1/models", headers=auth("developer", tenant=tenant))
    assert model["id"] in {m["id"] for m in listed.json()["items"]}

    deployed = await client.post(deploy_url, headers=auth("operator", tenant=tenant))
    assert deployed.status_code == 200, deployed.text
    assert (deployed.json()["status"], deployed.json()["mode"]) == ("deployed", "enforce")
    deploy_record = await client.get(
        f"/api/v1/decisions/{deployed.json()['decision_id']}",
        headers=auth("auditor", tenant=tenant),
    )
    context_model = deploy_record.json()["input"]["context"]["model"]
    assert (context_model["id"], context_model["verified"]) == ("mixtral-8x7b", True)

    # A verified model is not registered again.
    again = await client.post(
        "/api/v1/models",
        json=body("mixtral-8x7b", envelope(statement(), attester)),
        headers=auth("security", tenant=tenant),
    )
    assert_error(again, 409, "conflict")
    assert (await svc.log.verify(tenant, None)).ok


async def test_register_a_new_model_by_digest_and_reference_it(
    client: httpx.AsyncClient, auth: Auth, fresh_tenant: str, attester: Key
) -> None:
    tenant = fresh_tenant
    await configure(tenant)
    await trust(client, auth, tenant, attester)
    data = b"another model\n"
    digest = hashlib.sha256(data).hexdigest()
    registered = await client.post(
        "/api/v1/models",
        json=body("acme-llm", envelope(statement(data), attester), sha256=digest),
        headers=auth("admin", tenant=tenant),
    )
    assert registered.status_code == 201, registered.text
    model = registered.json()
    assert (model["id"], model["reference"]) == (f"mdl_{tenant}_acme-llm", "model://acme-llm")
    assert (model["artifact_stored"], model["sha256"], model["verified"]) == (False, digest, True)
    created = await client.post(
        "/api/v1/agents",
        json={"name": "Acme", "model": "model://acme-llm", "tool_ids": ["web_search"]},
        headers=auth("admin", tenant=tenant),
    )
    assert created.status_code == 201, created.text


def _forged(env: dict[str, Any]) -> dict[str, Any]:
    """The signed payload swapped for another statement, the signature kept."""
    other = statement(parameters={"repository": "https://evil.example.com/m"})
    return {**env, "payload": base64.b64encode(json.dumps(other).encode()).decode()}


def _placeholder(env: dict[str, Any]) -> dict[str, Any]:
    return {
        **env,
        "signatures": [{"keyid": env["signatures"][0]["keyid"], "sig": "minisign:ABC123"}],
    }


REJECTIONS: dict[str, Callable[[Key, Key], dict[str, Any]]] = {
    "bad_signature": lambda a, s: _forged(envelope(statement(), a)),
    "untrusted_signer": lambda a, s: envelope(statement(), s),
    "digest_mismatch": lambda a, s: envelope(statement(b"other bytes"), a),
    "placeholder_signature": lambda a, s: _placeholder(envelope(statement(), a)),
    "untrusted_builder": lambda a, s: envelope(statement(builder="https://evil.example/b"), a),
    "unknown_build_parameters": lambda a, s: envelope(
        statement(parameters={"repository": "x", "postinstall": "curl | sh"}), a
    ),
}


@pytest.mark.parametrize("reason", sorted(REJECTIONS))
async def test_rejected_evidence_names_its_reason_and_stores_nothing(
    client: httpx.AsyncClient,
    auth: Auth,
    svc: Services,
    fresh_tenant: str,
    attester: Key,
    stranger: Key,
    reason: str,
) -> None:
    tenant = fresh_tenant
    await configure(tenant)
    await trust(client, auth, tenant, attester)
    before, files = await state_of(tenant), artifact_files(svc)
    response = await client.post(
        "/api/v1/models",
        json=body("rejected-model", REJECTIONS[reason](attester, stranger)),
        headers=auth("security", tenant=tenant),
    )
    assert assert_error(response, 422, "attestation_rejected")["reason"] == reason
    assert await state_of(tenant) == before
    assert artifact_files(svc) == files


async def test_revoked_key_is_refused_for_new_registrations(
    client: httpx.AsyncClient, auth: Auth, svc: Services, fresh_tenant: str, attester: Key
) -> None:
    tenant = fresh_tenant
    await configure(tenant)
    await trust(client, auth, tenant, attester)
    revoked = await client.delete(
        f"/api/v1/trust-roots/{attester.key_id}", headers=auth("admin", tenant=tenant)
    )
    assert revoked.status_code == 200, revoked.text
    before = await state_of(tenant)
    response = await client.post(
        "/api/v1/models",
        json=body("revoked-model", envelope(statement(), attester)),
        headers=auth("security", tenant=tenant),
    )
    assert assert_error(response, 422, "attestation_rejected")["reason"] == "revoked_key"
    assert await state_of(tenant) == before


@pytest.mark.parametrize(
    ("digest", "reason"), [("ab" * 16, "digest_malformed"), ("0" * 64, "digest_all_zero")]
)
async def test_placeholder_digests_are_refused(
    client: httpx.AsyncClient,
    auth: Auth,
    fresh_tenant: str,
    attester: Key,
    digest: str,
    reason: str,
) -> None:
    await configure(fresh_tenant)
    await trust(client, auth, fresh_tenant, attester)
    before = await state_of(fresh_tenant)
    response = await client.post(
        "/api/v1/models",
        json=body("placeholder", envelope(statement(), attester), sha256=digest),
        headers=auth("admin", tenant=fresh_tenant),
    )
    assert assert_error(response, 422, "attestation_rejected")["reason"] == reason
    assert await state_of(fresh_tenant) == before


async def test_builder_allowlist_absent_fails_closed(
    client: httpx.AsyncClient, auth: Auth, fresh_tenant: str, attester: Key
) -> None:
    await trust(client, auth, fresh_tenant, attester)  # no settings.registry at all
    response = await client.post(
        "/api/v1/models",
        json=body("no-allowlist", envelope(statement(), attester)),
        headers=auth("admin", tenant=fresh_tenant),
    )
    assert assert_error(response, 422, "attestation_rejected")["reason"] == "untrusted_builder"


async def test_oversized_upload_is_413_and_stores_nothing(
    client: httpx.AsyncClient, auth: Auth, svc: Services, fresh_tenant: str, attester: Key
) -> None:
    await configure(fresh_tenant)
    await trust(client, auth, fresh_tenant, attester)
    data = b"\0" * (MAX_JSON_ARTIFACT_BYTES + 1)
    before, files = await state_of(fresh_tenant), artifact_files(svc)
    response = await client.post(
        "/api/v1/models",
        json=body("huge", envelope(statement(data), attester), data),
        headers=auth("admin", tenant=fresh_tenant),
    )
    assert assert_error(response, 413, "payload_too_large")["reason"] == "upload_too_large"
    assert await state_of(fresh_tenant) == before
    assert artifact_files(svc) == files


async def test_bad_bodies_are_400(
    client: httpx.AsyncClient, auth: Auth, fresh_tenant: str, attester: Key
) -> None:
    env = envelope(statement(), attester)
    digest = hashlib.sha256(ARTIFACT).hexdigest()
    for bad in (
        body("both", env, sha256=digest) | {"artifact_base64": "AAAA"},
        body("neither", env, None),
        body("bad/name", env),
        body("not-base64", env) | {"artifact_base64": "***"},
        body("kind", env) | {"attestation": {"kind": "in-toto-layout", "envelope": env}},
        body("extra", env) | {"verified": True},
        body("privacy", env) | {"privacy": "public"},
    ):
        response = await client.post(
            "/api/v1/models", json=bad, headers=auth("admin", tenant=fresh_tenant)
        )
        assert_error(response, 400, "invalid_input")


async def test_admin_approval_required_parks_the_registration_until_approved(
    client: httpx.AsyncClient, auth: Auth, fresh_tenant: str, attester: Key
) -> None:
    """The `require_approval` obligation of `model.register` parks it (202): nothing is
    stored until an admin approves; the approval verifies the evidence again and
    registers the model as the requester."""
    await configure(fresh_tenant)
    await trust(client, auth, fresh_tenant, attester)
    _, verified, rows = await state_of(fresh_tenant)
    response = await client.post(
        "/api/v1/models",
        json=body("gated", envelope(statement(), attester), admin_approval_required=True),
        headers=auth("security", tenant=fresh_tenant, subject="usr_sam"),
    )
    assert response.status_code == 202, response.text
    parked = response.json()
    assert parked["status"] == "pending_approval"
    _, verified_after, rows_after = await state_of(fresh_tenant)
    assert (verified_after, rows_after) == (verified, rows)
    record = await client.get(
        f"/api/v1/decisions/{parked['decision_id']}", headers=auth("auditor", tenant=fresh_tenant)
    )
    assert record.json()["input"]["context"]["attestations"]["verified"] is True
    assert record.json()["result"]["outcome"] == "pending_approval"
    obligations = record.json()["result"]["obligations"]
    assert {"type": "require_approval", "role": "admin"} in obligations

    url = f"/api/v1/approvals/{parked['approval_id']}"
    approved = await client.post(
        url, json={"decision": "approve"}, headers=auth("admin", tenant=fresh_tenant)
    )
    assert approved.status_code == 200, approved.text
    model = approved.json()["result"]
    assert (model["name"], model["verified"], model["admin_approval_required"]) == (
        "gated",
        True,
        True,
    )
    again = await client.get(
        f"/api/v1/decisions/{model['decision_id']}", headers=auth("auditor", tenant=fresh_tenant)
    )
    assert (again.json()["result"]["outcome"], again.json()["approval"]) == (
        "allow",
        parked["approval_id"],
    )
    assert again.json()["principal"]["id"] == "usr_sam"  # run again as its requester


async def test_trust_roots_and_models_do_not_cross_tenants(
    client: httpx.AsyncClient, auth: Auth, svc: Services, fresh_tenant: str, attester: Key
) -> None:
    tenant_a = fresh_tenant
    tenant_b = OTHER
    await configure(tenant_a)
    await configure(tenant_b)
    await trust(client, auth, tenant_a, attester)
    env = envelope(statement(), attester)
    before_b = await state_of(tenant_b)
    in_b = await client.post(
        "/api/v1/models", json=body("cross", env), headers=auth("admin", tenant=tenant_b)
    )
    assert assert_error(in_b, 422, "attestation_rejected")["reason"] == "untrusted_signer"
    assert await state_of(tenant_b) == before_b
    listed_b = await client.get("/api/v1/trust-roots", headers=auth("admin", tenant=tenant_b))
    assert attester.key_id not in {r["key_id"] for r in listed_b.json()["items"]}
    revoke_b = await client.delete(
        f"/api/v1/trust-roots/{attester.key_id}", headers=auth("admin", tenant=tenant_b)
    )
    assert_error(revoke_b, 404, "not_found")

    in_a = await client.post(
        "/api/v1/models", json=body("cross", env), headers=auth("admin", tenant=tenant_a)
    )
    assert in_a.status_code == 201, in_a.text
    from_b = await client.get(
        f"/api/v1/models/{in_a.json()['id']}", headers=auth("admin", tenant=tenant_b)
    )
    assert_error(from_b, 404, "not_found")
    await Tenant.update({Tenant.settings: {}}).where(Tenant.id == tenant_b)


@pytest.mark.parametrize("role", ["viewer", "operator", "developer", "auditor"])
async def test_roles_without_registry_rights_are_403(
    client: httpx.AsyncClient, auth: Auth, fresh_tenant: str, attester: Key, role: str
) -> None:
    await configure(fresh_tenant)
    await trust(client, auth, fresh_tenant, attester)
    before = await state_of(fresh_tenant)
    headers = auth(role, tenant=fresh_tenant)
    register = await client.post(
        "/api/v1/models", json=body("nope", envelope(statement(), attester)), headers=headers
    )
    assert_error(register, 403, "forbidden")
    add = await client.post(
        "/api/v1/trust-roots",
        json={"public_key": attester.pem, "purpose": "attester"},
        headers=headers,
    )
    assert_error(add, 403, "forbidden")
    revoke = await client.delete(f"/api/v1/trust-roots/{attester.key_id}", headers=headers)
    assert_error(revoke, 403, "forbidden")
    assert await state_of(fresh_tenant) == before
    models = await client.get("/api/v1/models", headers=headers)
    assert models.status_code == 200, models.text
    roots = await client.get("/api/v1/trust-roots", headers=headers)
    assert roots.status_code == (200 if role == "auditor" else 403), roots.text
