"""in-toto layouts and links, verified with ``in_toto.verifylib``'s parts.

We call the library's steps ourselves instead of ``in_toto_verify`` because
that function reads the clock and the file system; here time is ``now`` and
links come from a :class:`~registry.links.LinkSource`. On top of the library:
the layout must be signed by a trusted ``layout-owner`` root, revoked or
expired functionary roots do not count, a threshold below 1 is refused, a key
listed under two ids counts once, and the artifact must be a recorded product.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from in_toto import verifylib
from in_toto.exceptions import (
    BadReturnValueError,
    InvalidMetadata,
    LayoutExpiredError,
    LinkNotFoundError,
    RuleVerificationError,
    SignatureVerificationError,
    ThresholdVerificationError,
)
from in_toto.models.link import FILENAME_FORMAT
from in_toto.models.metadata import Metadata
from securesystemslib.exceptions import FormatError

from registry.digests import ArtifactDigest
from registry.errors import Reason, Rejected
from registry.facts import AttestationFacts, EvidenceKind, SubjectDigest
from registry.links import MAX_LINK_BYTES, LinkSource
from registry.statements import parse_json
from registry.timeutil import check_now, parse_utc
from registry.trust import Purpose, TrustStore, trusted_signers

_MALFORMED = (FormatError, InvalidMetadata, KeyError, TypeError, ValueError, AttributeError)


@dataclass(frozen=True, slots=True)
class LayoutPolicy:
    """Tenant choices for layout verification.

    ``run_inspections``: execute the layout's inspection commands (off by
    default: they run arbitrary commands). ``require_functionary_roots``: every
    counted functionary key must also be an active ``functionary`` trust root.
    """

    run_inspections: bool = False
    require_functionary_roots: bool = False
    substitution_parameters: Mapping[str, str] = field(default_factory=dict)
    inspection_timeout: int = 60


def _load_metadata(raw: bytes, what: str) -> Metadata:
    if len(raw) > MAX_LINK_BYTES:
        raise Rejected(Reason.UPLOAD_TOO_LARGE, f"{what} is larger than {MAX_LINK_BYTES} bytes")
    try:
        return Metadata.from_dict(parse_json(raw, what))
    except _MALFORMED as exc:
        raise Rejected(Reason.MALFORMED_EVIDENCE, f"{what} is not in-toto metadata") from exc


def _signature_key_ids(metadata: Metadata) -> list[str]:
    signatures = getattr(metadata, "signatures", [])
    items = signatures.values() if isinstance(signatures, dict) else signatures
    return [s.keyid if hasattr(s, "keyid") else s["keyid"] for s in items]


def _verify_owner(metadata: Metadata, store: TrustStore, now: datetime) -> tuple[str, ...]:
    roots = trusted_signers(store, _signature_key_ids(metadata), Purpose.LAYOUT_OWNER, now)
    try:
        verifylib.verify_metadata_signatures(metadata, {r.key_id: r.key_dict() for r in roots})
    except SignatureVerificationError as exc:
        raise Rejected(Reason.BAD_SIGNATURE, f"layout signature does not verify ({exc})") from exc
    except _MALFORMED as exc:
        raise Rejected(Reason.MALFORMED_EVIDENCE, f"layout signature is malformed ({exc})") from exc
    return tuple(sorted(r.key_id for r in roots))


def _key_material(key: dict[str, Any]) -> str:
    return json.dumps([key.get("keytype"), key.get("keyval", {}).get("public")])


def _authorised_functionaries(
    layout: Any, store: TrustStore, now: datetime, policy: LayoutPolicy
) -> None:
    """Narrow each step's ``pubkeys`` to keys that may count, each key material once."""
    for step in layout.steps:
        if not isinstance(step.threshold, int) or step.threshold < 1:
            raise Rejected(
                Reason.THRESHOLD_ZERO, f"step `{step.name}` has threshold {step.threshold}"
            )
        kept: list[str] = []
        materials: set[str] = set()
        for key_id in step.pubkeys:
            key = layout.keys.get(key_id)
            root = store.get(key_id)
            if key is None or (root is not None and not root.is_active(now)):
                continue
            if policy.require_functionary_roots and (
                root is None or root.purpose != Purpose.FUNCTIONARY
            ):
                continue
            material = _key_material(key)
            if material not in materials:
                materials.add(material)
                kept.append(key_id)
        step.pubkeys = kept


def _load_links(layout: Any, source: LinkSource) -> dict[str, dict[str, Metadata]]:
    steps: dict[str, dict[str, Metadata]] = {}
    for step in layout.steps:
        found: dict[str, Metadata] = {}
        for key_id in step.pubkeys:
            name = FILENAME_FORMAT.format(step_name=step.name, keyid=key_id)
            raw = source.read(name)
            if raw is not None:
                found[key_id] = _load_metadata(raw, f"link `{name}`")
        steps[step.name] = found
    return steps


def _chain(verified: dict[str, dict[str, Metadata]]) -> dict[str, dict[str, Any]]:
    chain: dict[str, dict[str, Any]] = {}
    for step_name, links in verified.items():
        chain[step_name] = {}
        for key_id, metadata in links.items():
            payload = metadata.get_payload()
            if payload.type_ == "layout":
                raise Rejected(Reason.SUBLAYOUT_UNSUPPORTED, f"step `{step_name}` is a sublayout")
            chain[step_name][key_id] = payload
    return chain


def _verify_chain(layout: Any, source: LinkSource, policy: LayoutPolicy) -> dict[str, Any]:
    """Signatures and thresholds of the links, then the step rules; the reduced links."""
    verified = verifylib.verify_link_signature_thresholds(layout, _load_links(layout, source))
    chain = _chain(verified)
    verifylib.verify_all_steps_command_alignment(layout, chain)
    verifylib.verify_threshold_constraints(layout, chain)
    reduced: dict[str, Any] = verifylib.reduce_chain_links(chain)
    verifylib.verify_all_item_rules(layout.steps, reduced)
    if policy.run_inspections and layout.inspect:
        inspections = verifylib.run_all_inspections(layout, False, policy.inspection_timeout)
        verifylib.verify_all_item_rules(layout.inspect, {**reduced, **inspections})
    return reduced


def _products(reduced: dict[str, Any], artifact: ArtifactDigest) -> tuple[SubjectDigest, ...]:
    matched = {
        SubjectDigest(name, digests["sha256"])
        for link in reduced.values()
        for name, digests in link.products.items()
        if digests.get("sha256") == artifact.sha256
    }
    if not matched:
        raise Rejected(
            Reason.DIGEST_MISMATCH,
            f"no step recorded a product with the artifact's sha256 `{artifact.sha256}`",
        )
    return tuple(sorted(matched, key=lambda s: s.name))


def verify_layout(
    layout: bytes,
    links: LinkSource,
    artifact: ArtifactDigest,
    store: TrustStore,
    *,
    now: datetime,
    policy: LayoutPolicy | None = None,
    name: str = "",
) -> AttestationFacts:
    """Verify a signed in-toto layout, its links and the final product ``artifact``."""
    policy = policy or LayoutPolicy()
    check_now(now)
    metadata = _load_metadata(layout, "layout")
    owners = _verify_owner(metadata, store, now)
    try:
        payload = metadata.get_payload()
    except _MALFORMED as exc:
        raise Rejected(Reason.MALFORMED_EVIDENCE, "layout payload is malformed") from exc
    if payload.type_ != "layout":
        raise Rejected(Reason.MALFORMED_EVIDENCE, f"expected a layout, got `{payload.type_}`")
    expires = parse_utc(payload.expires)
    if expires <= now:
        raise Rejected(Reason.LAYOUT_EXPIRED, f"layout expired at {payload.expires}")
    try:
        if policy.substitution_parameters:
            verifylib.substitute_parameters(payload, dict(policy.substitution_parameters))
        _authorised_functionaries(payload, store, now, policy)
        reduced = _verify_chain(payload, links, policy)
    except (LinkNotFoundError, ThresholdVerificationError) as exc:
        raise Rejected(Reason.THRESHOLD_NOT_MET, str(exc)) from exc
    except RuleVerificationError as exc:
        raise Rejected(Reason.ARTIFACT_RULE_VIOLATION, str(exc)) from exc
    except BadReturnValueError as exc:
        raise Rejected(Reason.INSPECTION_FAILED, str(exc)) from exc
    except LayoutExpiredError as exc:  # pragma: no cover - we check expiry ourselves
        raise Rejected(Reason.LAYOUT_EXPIRED, str(exc)) from exc
    except _MALFORMED as exc:
        raise Rejected(Reason.MALFORMED_EVIDENCE, f"layout or link is malformed ({exc})") from exc
    ran = [i.name for i in payload.inspect] if policy.run_inspections else []
    return AttestationFacts(
        kind=EvidenceKind.IN_TOTO_LAYOUT,
        signer_key_ids=owners,
        subject_digests=_products(reduced, artifact),
        layout_name=name or None,
        layout_expires=expires,
        step_names=tuple(s.name for s in payload.steps),
        inspections_run=tuple(ran),
    )
