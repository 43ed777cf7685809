"""in-toto layouts and links: made and signed with the in-toto library, verified by us."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from in_toto.models.layout import Inspection

from registry import (
    ArtifactDigest,
    EvidenceKind,
    InMemoryLinkSource,
    InMemoryTrustStore,
    LayoutPolicy,
    Purpose,
    Reason,
    Rejected,
    verify_layout,
)

from .conftest import (
    ARTIFACT,
    NOW,
    Keys,
    alias_signer,
    key_dict,
    make_layout,
    make_link,
    root,
    sign_layout,
)

DIGEST = ArtifactDigest(hashlib.sha256(ARTIFACT).hexdigest(), len(ARTIFACT))


def _links(
    tmp_path: Path, *signers: object, files: dict[str, bytes] | None = None
) -> InMemoryLinkSource:
    out = {}
    for i, signer in enumerate(signers):
        name, raw = make_link(tmp_path / f"w{i}", signer, files or {"model.bin": ARTIFACT})  # type: ignore[arg-type]
        out[name] = raw
    return InMemoryLinkSource(out)


def _reject(reason: Reason, *args: object, **kwargs: object) -> Rejected:
    with pytest.raises(Rejected) as info:
        verify_layout(*args, **kwargs)  # type: ignore[arg-type]
    assert info.value.reason is reason, info.value
    return info.value


def test_happy_path_gives_layout_facts(
    keys: Keys, store: InMemoryTrustStore, tmp_path: Path
) -> None:
    layout = sign_layout(make_layout([keys.func1]), keys.owner)
    facts = verify_layout(layout, _links(tmp_path, keys.func1), DIGEST, store, now=NOW, name="ml")
    assert facts.kind is EvidenceKind.IN_TOTO_LAYOUT
    assert facts.signer_key_ids == (keys.owner.public_key.keyid,)
    assert [(s.name, s.sha256) for s in facts.subject_digests] == [("model.bin", DIGEST.sha256)]
    assert facts.step_names == ("build",)
    assert facts.layout_expires == NOW + timedelta(days=30)
    context = facts.to_context()
    assert context["layout_name"] == "ml"
    assert context["layout_expires"] == "2030-01-31T12:00:00+00:00"
    json.dumps(context)


def test_bad_layout_signature(keys: Keys, store: InMemoryTrustStore, tmp_path: Path) -> None:
    data = json.loads(sign_layout(make_layout([keys.func1]), keys.owner))
    data["signed"]["readme"] = "tampered after signing"
    raw = json.dumps(data).encode()
    _reject(Reason.BAD_SIGNATURE, raw, _links(tmp_path, keys.func1), DIGEST, store, now=NOW)


def test_layout_signed_by_untrusted_key(
    keys: Keys, store: InMemoryTrustStore, tmp_path: Path
) -> None:
    layout = sign_layout(make_layout([keys.func1]), keys.stranger)
    _reject(Reason.UNTRUSTED_SIGNER, layout, _links(tmp_path, keys.func1), DIGEST, store, now=NOW)


def test_layout_signed_by_key_of_other_purpose(
    keys: Keys, store: InMemoryTrustStore, tmp_path: Path
) -> None:
    layout = sign_layout(make_layout([keys.func1]), keys.attester)
    _reject(Reason.UNTRUSTED_SIGNER, layout, _links(tmp_path, keys.func1), DIGEST, store, now=NOW)


def test_revoked_owner_key(keys: Keys, store: InMemoryTrustStore, tmp_path: Path) -> None:
    store.revoke(keys.owner.public_key.keyid)
    layout = sign_layout(make_layout([keys.func1]), keys.owner)
    _reject(Reason.REVOKED_KEY, layout, _links(tmp_path, keys.func1), DIGEST, store, now=NOW)


def test_expired_owner_key(keys: Keys, tmp_path: Path) -> None:
    store = InMemoryTrustStore([root(keys.owner, Purpose.LAYOUT_OWNER, expires=NOW)])
    layout = sign_layout(make_layout([keys.func1]), keys.owner)
    _reject(Reason.KEY_EXPIRED, layout, _links(tmp_path, keys.func1), DIGEST, store, now=NOW)


def test_threshold_not_met(keys: Keys, store: InMemoryTrustStore, tmp_path: Path) -> None:
    layout = sign_layout(make_layout([keys.func1, keys.func2], threshold=2), keys.owner)
    _reject(Reason.THRESHOLD_NOT_MET, layout, _links(tmp_path, keys.func1), DIGEST, store, now=NOW)


def test_threshold_met_by_two_functionaries(
    keys: Keys, store: InMemoryTrustStore, tmp_path: Path
) -> None:
    layout = sign_layout(make_layout([keys.func1, keys.func2], threshold=2), keys.owner)
    links = _links(tmp_path, keys.func1, keys.func2)
    assert verify_layout(layout, links, DIGEST, store, now=NOW).step_names == ("build",)


def test_same_key_under_two_ids_counts_once(
    keys: Keys, store: InMemoryTrustStore, tmp_path: Path
) -> None:
    alias = alias_signer(keys, "ab" * 32)
    layout = make_layout([keys.func1], threshold=2)
    layout.add_functionary_key(key_dict(alias))
    layout.steps[0].pubkeys = [keys.func1.public_key.keyid, alias.public_key.keyid]
    raw = sign_layout(layout, keys.owner)
    links = _links(tmp_path, keys.func1, alias)
    _reject(Reason.THRESHOLD_NOT_MET, raw, links, DIGEST, store, now=NOW)


def test_link_by_unauthorised_key_does_not_count(
    keys: Keys, store: InMemoryTrustStore, tmp_path: Path
) -> None:
    layout = sign_layout(make_layout([keys.func1]), keys.owner)
    _reject(Reason.THRESHOLD_NOT_MET, layout, _links(tmp_path, keys.func2), DIGEST, store, now=NOW)


def test_revoked_functionary_does_not_count(
    keys: Keys, store: InMemoryTrustStore, tmp_path: Path
) -> None:
    store.revoke(keys.func1.public_key.keyid)
    layout = sign_layout(make_layout([keys.func1]), keys.owner)
    _reject(Reason.THRESHOLD_NOT_MET, layout, _links(tmp_path, keys.func1), DIGEST, store, now=NOW)


def test_functionary_roots_required_when_asked(keys: Keys, tmp_path: Path) -> None:
    store = InMemoryTrustStore([root(keys.owner, Purpose.LAYOUT_OWNER)])
    layout = sign_layout(make_layout([keys.func1]), keys.owner)
    links = _links(tmp_path, keys.func1)
    verify_layout(layout, links, DIGEST, store, now=NOW)
    policy = LayoutPolicy(require_functionary_roots=True)
    _reject(Reason.THRESHOLD_NOT_MET, layout, links, DIGEST, store, now=NOW, policy=policy)


def test_threshold_zero_refused(keys: Keys, store: InMemoryTrustStore, tmp_path: Path) -> None:
    layout = sign_layout(make_layout([keys.func1], threshold=0), keys.owner)
    _reject(Reason.THRESHOLD_ZERO, layout, _links(tmp_path, keys.func1), DIGEST, store, now=NOW)


def test_expired_layout(keys: Keys, store: InMemoryTrustStore, tmp_path: Path) -> None:
    layout = sign_layout(make_layout([keys.func1], expires=NOW - timedelta(seconds=1)), keys.owner)
    _reject(Reason.LAYOUT_EXPIRED, layout, _links(tmp_path, keys.func1), DIGEST, store, now=NOW)


def test_layout_expiring_exactly_now_is_expired(
    keys: Keys, store: InMemoryTrustStore, tmp_path: Path
) -> None:
    layout = sign_layout(make_layout([keys.func1], expires=NOW), keys.owner)
    _reject(Reason.LAYOUT_EXPIRED, layout, _links(tmp_path, keys.func1), DIGEST, store, now=NOW)


def test_artifact_not_among_products(keys: Keys, store: InMemoryTrustStore, tmp_path: Path) -> None:
    layout = sign_layout(make_layout([keys.func1]), keys.owner)
    other = replace(DIGEST, sha256=hashlib.sha256(b"other bytes").hexdigest())
    _reject(Reason.DIGEST_MISMATCH, layout, _links(tmp_path, keys.func1), other, store, now=NOW)


def test_artifact_rule_violation(keys: Keys, store: InMemoryTrustStore, tmp_path: Path) -> None:
    layout = sign_layout(make_layout([keys.func1]), keys.owner)
    links = _links(tmp_path, keys.func1, files={"model.bin": ARTIFACT, "backdoor.py": b"import os"})
    _reject(Reason.ARTIFACT_RULE_VIOLATION, layout, links, DIGEST, store, now=NOW)


def _failing_inspection() -> Inspection:
    inspection = Inspection(name="untar")
    inspection.run = ["false"]
    return inspection


def test_inspections_are_off_by_default(
    keys: Keys, store: InMemoryTrustStore, tmp_path: Path
) -> None:
    layout = sign_layout(make_layout([keys.func1], inspections=[_failing_inspection()]), keys.owner)
    facts = verify_layout(layout, _links(tmp_path, keys.func1), DIGEST, store, now=NOW)
    assert facts.inspections_run == ()


@pytest.mark.filterwarnings("ignore:GitWildMatchPattern:DeprecationWarning")
def test_inspections_run_when_enabled(
    keys: Keys, store: InMemoryTrustStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    layout = sign_layout(make_layout([keys.func1], inspections=[_failing_inspection()]), keys.owner)
    links = _links(tmp_path, keys.func1)
    monkeypatch.chdir(tmp_path)  # inspections record the working directory
    policy = LayoutPolicy(run_inspections=True)
    _reject(Reason.INSPECTION_FAILED, layout, links, DIGEST, store, now=NOW, policy=policy)


def test_malformed_layout(store: InMemoryTrustStore) -> None:
    _reject(Reason.MALFORMED_EVIDENCE, b"{not json", InMemoryLinkSource({}), DIGEST, store, now=NOW)


def test_alias_links_are_otherwise_valid(
    keys: Keys, store: InMemoryTrustStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Guard against a vacuous dedupe test: without it, in-toto counts the alias twice.
    import registry.layout

    monkeypatch.setattr(registry.layout, "_key_material", lambda key: key["keyid"])
    alias = alias_signer(keys, "ab" * 32)
    layout = make_layout([keys.func1], threshold=2)
    layout.add_functionary_key(key_dict(alias))
    layout.steps[0].pubkeys = [keys.func1.public_key.keyid, alias.public_key.keyid]
    raw = sign_layout(layout, keys.owner)
    assert verify_layout(raw, _links(tmp_path, keys.func1, alias), DIGEST, store, now=NOW)
