"""OPA-format bundle signatures: round trips and every fail-closed path."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import jwt
import pytest

from engine import RollbackError, SignatureError, VerificationKey, sign_files, verify_files
from engine.bundle import check_rollback
from engine.bundle.canonical import file_digest

SIG = ".signatures.json"
FILES: dict[str, bytes] = {
    ".manifest": b'{"revision": "5", "roots": ["aion"]}',
    "aion/agent/policy.rego": b'package aion.agent.deploy\n\ndeny contains "no" if false\n',
    "aion/data.json": b'{"limits": {"max": 3}}',
}


def _signed(files: Mapping[str, bytes], private_pem: str, **kwargs: Any) -> dict[str, bytes]:
    return {**files, SIG: sign_files(files, private_pem, **kwargs)}


def _trust(public_pem: str, algorithm: str, kid: str = "default", scope: str = "") -> dict:
    return {kid: VerificationKey(public_pem, algorithm, scope)}


def _with_token(files: Mapping[str, bytes], token: str) -> dict[str, bytes]:
    return {**files, SIG: json.dumps({"signatures": [token]}).encode()}


def _token(files: Mapping[str, bytes]) -> str:
    token = json.loads(files[SIG])["signatures"][0]
    assert isinstance(token, str)
    return token


@pytest.fixture
def rsa(keys: dict) -> Any:
    return keys["RS256"]


# --- round trips -----------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["RS256", "ES256", "EdDSA"])
def test_sign_and_verify_round_trip(algorithm: str, keys: dict, now: datetime) -> None:
    pair = keys[algorithm]
    files = _signed(FILES, pair.private_pem, algorithm=algorithm, key_id="k1")
    claims = verify_files(files, _trust(pair.public_pem, algorithm, "k1"), now=now)
    assert (claims.key_id, claims.algorithm) == ("k1", algorithm)
    assert claims.files == {n: "SHA-256:" + file_digest(n, raw) for n, raw in FILES.items()}
    assert jwt.get_unverified_header(_token(files)) == {"alg": algorithm, "kid": "k1", "typ": "JWT"}


def test_signature_file_is_opa_shaped(rsa: Any, now: datetime) -> None:
    issued = now - timedelta(minutes=1)
    raw = sign_files(FILES, rsa.private_pem, key_id="k", issuer="ci", issued_at=issued)
    doc = json.loads(raw)
    assert list(doc) == ["signatures"]
    payload = jwt.decode(doc["signatures"][0], options={"verify_signature": False})
    assert payload["keyid"] == "k"
    assert (payload["iss"], payload["iat"]) == ("ci", int(issued.timestamp()))
    assert "scope" not in payload
    assert sorted(f["name"] for f in payload["files"]) == sorted(FILES)
    assert {f["algorithm"] for f in payload["files"]} == {"SHA-256"}


def test_an_existing_signature_file_is_not_signed_over(rsa: Any, now: datetime) -> None:
    once = _signed(FILES, rsa.private_pem)
    again = _signed(once, rsa.private_pem)
    payload = jwt.decode(_token(again), options={"verify_signature": False})
    assert SIG not in {f["name"] for f in payload["files"]}
    verify_files(again, _trust(rsa.public_pem, "RS256"), now=now)


def test_reformatted_data_still_verifies_but_reformatted_rego_does_not(
    rsa: Any, now: datetime
) -> None:
    files = _signed(FILES, rsa.private_pem)
    trust = _trust(rsa.public_pem, "RS256")
    pretty = {**files, "aion/data.json": b'{\n  "limits": { "max" : 3 }\n}\n'}
    verify_files(pretty, trust, now=now)
    rego = {**files, "aion/agent/policy.rego": FILES["aion/agent/policy.rego"] + b"\n"}
    with pytest.raises(SignatureError, match="digest mismatch"):
        verify_files(rego, trust, now=now)


def test_opa_style_leading_slash_names_verify(rsa: Any, now: datetime) -> None:
    listing = [
        {"name": "/" + n, "hash": file_digest(n, raw), "algorithm": "SHA-256"}
        for n, raw in FILES.items()
    ]
    token = jwt.encode({"files": listing, "keyid": "k"}, rsa.private_pem, "RS256")
    claims = verify_files(_with_token(FILES, token), _trust(rsa.public_pem, "RS256", "k"), now=now)
    assert set(claims.files) == set(FILES)


def test_hmac_signatures_for_opa_parity(now: datetime) -> None:
    secret = "a-long-shared-secret-of-at-least-32-bytes!"
    files = _signed(FILES, secret, algorithm="HS256")
    assert verify_files(files, _trust(secret, "HS256"), now=now).algorithm == "HS256"
    with pytest.raises(SignatureError, match="does not verify"):
        verify_files(files, _trust(secret + "x", "HS256"), now=now)


# --- files -----------------------------------------------------------------------------------


def test_modified_file_is_refused(rsa: Any, now: datetime) -> None:
    files = _signed(FILES, rsa.private_pem)
    files["aion/data.json"] = b'{"limits": {"max": 300}}'
    with pytest.raises(SignatureError, match=r"`aion/data\.json`: digest mismatch"):
        verify_files(files, _trust(rsa.public_pem, "RS256"), now=now)


def test_added_file_is_refused(rsa: Any, now: datetime) -> None:
    files = _signed(FILES, rsa.private_pem)
    files["aion/extra.rego"] = b"package aion.extra\n"
    with pytest.raises(SignatureError, match=r"in bundle but not signed: aion/extra\.rego"):
        verify_files(files, _trust(rsa.public_pem, "RS256"), now=now)


def test_removed_file_is_refused(rsa: Any, now: datetime) -> None:
    files = _signed(FILES, rsa.private_pem)
    del files["aion/data.json"]
    with pytest.raises(SignatureError, match=r"signed but not in bundle: aion/data\.json"):
        verify_files(files, _trust(rsa.public_pem, "RS256"), now=now)


def test_a_file_entry_without_hash_algorithm_is_refused(rsa: Any, now: datetime) -> None:
    listing = [{"name": n, "hash": file_digest(n, raw)} for n, raw in FILES.items()]
    token = jwt.encode({"files": listing}, rsa.private_pem, "RS256", headers={"kid": "k"})
    with pytest.raises(SignatureError, match="no hashing algorithm"):
        verify_files(_with_token(FILES, token), _trust(rsa.public_pem, "RS256", "k"), now=now)


def test_a_file_entry_with_an_unknown_hash_algorithm_is_a_signature_error(
    rsa: Any, now: datetime
) -> None:
    listing = [
        {"name": n, "hash": file_digest(n, raw), "algorithm": "SHA3-256"}
        for n, raw in FILES.items()
    ]
    token = jwt.encode({"files": listing}, rsa.private_pem, "RS256", headers={"kid": "k"})
    with pytest.raises(SignatureError, match="unsupported hashing algorithm `SHA3-256`"):
        verify_files(_with_token(FILES, token), _trust(rsa.public_pem, "RS256", "k"), now=now)


def test_other_opa_hash_algorithms_verify(rsa: Any, now: datetime) -> None:
    listing = [
        {"name": n, "hash": file_digest(n, raw, "SHA-512"), "algorithm": "SHA-512"}
        for n, raw in FILES.items()
    ]
    token = jwt.encode({"files": listing}, rsa.private_pem, "RS256", headers={"kid": "k"})
    files = _with_token(FILES, token)
    verify_files(files, _trust(rsa.public_pem, "RS256", "k"), now=now)
    files["aion/data.json"] = b'{"limits": {"max": 4}}'
    with pytest.raises(SignatureError, match="digest mismatch"):
        verify_files(files, _trust(rsa.public_pem, "RS256", "k"), now=now)


@pytest.mark.parametrize(
    ("payload", "why"),
    [({"keyid": "k"}, "no `files` list"), ({"files": ["x"]}, "malformed file entry")],
)
def test_malformed_payload_is_refused(payload: dict, why: str, rsa: Any, now: datetime) -> None:
    token = jwt.encode(payload, rsa.private_pem, "RS256", headers={"kid": "k"})
    with pytest.raises(SignatureError, match=why):
        verify_files(_with_token(FILES, token), _trust(rsa.public_pem, "RS256", "k"), now=now)


# --- keys and algorithms ---------------------------------------------------------------------


def test_unknown_key_id_is_refused(rsa: Any, now: datetime) -> None:
    files = _signed(FILES, rsa.private_pem, key_id="rogue")
    with pytest.raises(SignatureError, match="key `rogue` is not trusted"):
        verify_files(files, _trust(rsa.public_pem, "RS256", "k1"), now=now)


def test_explicit_key_id_overrides_the_token(rsa: Any, now: datetime) -> None:
    files = _signed(FILES, rsa.private_pem, key_id="k1")
    with pytest.raises(SignatureError, match="key `k2` is not trusted"):
        verify_files(files, _trust(rsa.public_pem, "RS256", "k1"), now=now, key_id="k2")


@pytest.mark.parametrize("algorithm", ["RS256", "ES256", "EdDSA"])
def test_right_key_id_wrong_key_is_refused(
    algorithm: str, keys: dict, other_keys: dict, now: datetime
) -> None:
    files = _signed(FILES, other_keys[algorithm].private_pem, algorithm=algorithm, key_id="k")
    with pytest.raises(SignatureError, match="does not verify with key `k`"):
        verify_files(files, _trust(keys[algorithm].public_pem, algorithm, "k"), now=now)


def test_algorithm_must_match_the_trusted_key(keys: dict, now: datetime) -> None:
    files = _signed(FILES, keys["RS256"].private_pem, algorithm="RS256", key_id="k")
    trust = _trust(keys["ES256"].public_pem, "ES256", "k")
    with pytest.raises(SignatureError, match=r"algorithm `RS256` does not match key `k` \(ES256\)"):
        verify_files(files, trust, now=now)


def test_hmac_with_the_public_key_as_secret_is_refused(rsa: Any, now: datetime) -> None:
    # The classic confusion attack: HS256 keyed with the (public) RSA key text.
    def b64(raw: bytes) -> bytes:
        return base64.urlsafe_b64encode(raw).rstrip(b"=")

    listing = [
        {"name": n, "hash": file_digest(n, raw), "algorithm": "SHA-256"} for n, raw in FILES.items()
    ]
    head = b64(json.dumps({"alg": "HS256", "kid": "k", "typ": "JWT"}).encode())
    body = b64(json.dumps({"files": listing}).encode())
    mac = hmac.new(rsa.public_pem.encode(), head + b"." + body, hashlib.sha256).digest()
    token = (head + b"." + body + b"." + b64(mac)).decode()
    with pytest.raises(SignatureError, match="`HS256` does not match key `k` \\(RS256\\)"):
        verify_files(_with_token(FILES, token), _trust(rsa.public_pem, "RS256", "k"), now=now)


def test_unsupported_algorithm_cannot_sign(rsa: Any) -> None:
    with pytest.raises(SignatureError, match="unsupported signing algorithm `none`"):
        sign_files(FILES, rsa.private_pem, algorithm="none")


def test_key_of_the_wrong_type_cannot_sign(keys: dict) -> None:
    with pytest.raises(SignatureError, match="cannot sign with the given key and `ES256`"):
        sign_files(FILES, keys["RS256"].private_pem, algorithm="ES256")


# --- scope -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("signed_scope", "trusted_scope"), [("write", ""), ("", "write"), ("read", "write")]
)
def test_scope_must_match(signed_scope: str, trusted_scope: str, rsa: Any, now: datetime) -> None:
    files = _signed(FILES, rsa.private_pem, scope=signed_scope)
    trust = _trust(rsa.public_pem, "RS256", scope=trusted_scope)
    with pytest.raises(
        SignatureError, match=f"scope `{signed_scope}` does not match `{trusted_scope}`"
    ):
        verify_files(files, trust, now=now)


def test_matching_scope_verifies(rsa: Any, now: datetime) -> None:
    files = _signed(FILES, rsa.private_pem, scope="write")
    claims = verify_files(files, _trust(rsa.public_pem, "RS256", scope="write"), now=now)
    assert claims.claims["scope"] == "write"


# --- the signature file ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "doc",
    [{"signatures": []}, {"signatures": ["a.b.c", "a.b.c"]}, {"signatures": [1]}, {}, [], "x"],
    ids=["zero", "two", "not-a-string", "no-key", "array", "string"],
)
def test_exactly_one_jwt(doc: object, rsa: Any, now: datetime) -> None:
    files = {**FILES, SIG: json.dumps(doc).encode()}
    with pytest.raises(SignatureError, match="expected exactly one JWT"):
        verify_files(files, _trust(rsa.public_pem, "RS256"), now=now)


def test_two_valid_jwts_are_still_refused(rsa: Any, now: datetime) -> None:
    token = _token(_signed(FILES, rsa.private_pem))
    files = {**FILES, SIG: json.dumps({"signatures": [token, token]}).encode()}
    with pytest.raises(SignatureError, match="expected exactly one JWT"):
        verify_files(files, _trust(rsa.public_pem, "RS256"), now=now)


def test_malformed_signature_json(rsa: Any, now: datetime) -> None:
    with pytest.raises(SignatureError, match=r"`\.signatures\.json`: invalid JSON"):
        verify_files({**FILES, SIG: b'{"signatures": ['}, _trust(rsa.public_pem, "RS256"), now=now)


def test_malformed_jwt(rsa: Any, now: datetime) -> None:
    with pytest.raises(SignatureError, match="malformed JWT"):
        verify_files(_with_token(FILES, "not-a-jwt"), _trust(rsa.public_pem, "RS256"), now=now)


def test_missing_signature_file(rsa: Any, now: datetime) -> None:
    with pytest.raises(
        SignatureError, match=r"not signed: `\.signatures\.json` is missing"
    ) as info:
        verify_files(FILES, _trust(rsa.public_pem, "RS256"), now=now)
    assert info.value.code == "bundle_signature_invalid"


# --- validity window -------------------------------------------------------------------------


def test_not_yet_valid(rsa: Any, now: datetime) -> None:
    files = _signed(FILES, rsa.private_pem, not_before=now + timedelta(hours=1))
    with pytest.raises(SignatureError, match="not valid before"):
        verify_files(files, _trust(rsa.public_pem, "RS256"), now=now)
    verify_files(files, _trust(rsa.public_pem, "RS256"), now=now + timedelta(hours=1))


def test_expired(rsa: Any, now: datetime) -> None:
    files = _signed(FILES, rsa.private_pem, expires=now)
    verify_files(files, _trust(rsa.public_pem, "RS256"), now=now - timedelta(seconds=1))
    with pytest.raises(SignatureError, match=f"expired at {int(now.timestamp())}"):
        verify_files(files, _trust(rsa.public_pem, "RS256"), now=now)


def test_window_uses_the_time_passed_in_not_the_host_clock(rsa: Any, now: datetime) -> None:
    long_ago = datetime(2001, 1, 1, tzinfo=now.tzinfo)
    files = _signed(
        FILES, rsa.private_pem, not_before=long_ago, expires=long_ago + timedelta(days=1)
    )
    verify_files(files, _trust(rsa.public_pem, "RS256"), now=long_ago + timedelta(hours=1))
    with pytest.raises(SignatureError, match="expired"):
        verify_files(files, _trust(rsa.public_pem, "RS256"), now=now)


# --- rollback --------------------------------------------------------------------------------


@pytest.mark.parametrize("last", ["5", "6", "10"])
def test_same_or_older_revision_is_a_rollback(last: str, rsa: Any, now: datetime) -> None:
    files = _signed(FILES, rsa.private_pem)
    with pytest.raises(RollbackError, match=f"revision `5` is not newer than .* `{last}`") as info:
        verify_files(files, _trust(rsa.public_pem, "RS256"), now=now, last_revision=last)
    assert isinstance(info.value, SignatureError)
    assert info.value.code == "bundle_rollback"


@pytest.mark.parametrize("last", [None, "4", "04"])
def test_newer_revision_is_accepted(last: str | None, rsa: Any, now: datetime) -> None:
    files = _signed(FILES, rsa.private_pem)
    verify_files(files, _trust(rsa.public_pem, "RS256"), now=now, last_revision=last)


def test_missing_revision_cannot_prove_it_is_newer(rsa: Any, now: datetime) -> None:
    files = _signed({**FILES, ".manifest": b'{"roots": ["aion"]}'}, rsa.private_pem)
    verify_files(files, _trust(rsa.public_pem, "RS256"), now=now)
    with pytest.raises(RollbackError, match="no revision"):
        verify_files(files, _trust(rsa.public_pem, "RS256"), now=now, last_revision="1")


@pytest.mark.parametrize(
    ("newer", "older"),
    [
        ("10", "9"),
        ("2026.11.10", "2026.11.9"),
        ("2026.11.9", "2026.9.30"),
        ("v1.10.0", "v1.9.9"),
        ("1.0.1", "1.0"),
        ("2026-03-14T10", "2026-03-14T09"),
    ],
)
def test_revisions_compare_naturally(newer: str, older: str) -> None:
    check_rollback(newer, older)
    with pytest.raises(RollbackError):
        check_rollback(older, newer)
    with pytest.raises(RollbackError):
        check_rollback(newer, newer)
