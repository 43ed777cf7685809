"""Cedar evaluation through cedarpy, parsed and validated once per policy set.

Entities are built from the request: the principal (``User`` or ``Service``)
with ``tenant``, ``roles`` and ``kind`` attributes and ``Role`` parents; the
resource (``Agent``, ``Tool`` ...) with ``tenant`` and its stored attributes
and its ``Tenant`` as parent. Values Cedar cannot hold are mapped: floats to
``decimal``, ``null`` dropped, lists to sets; keys that would let data forge
an entity reference (``__entity``, ``__extn``) are dropped.

Cedar's own rules hold: default deny, forbid overrides permit. We are
stricter in one place: a ``forbid`` policy that errors denies, with its id.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

import cedarpy
import msgspec

from engine.actions import ACTIONS
from engine.bundle.bundle import CedarLink, SourceFile
from engine.errors import PolicyError, PolicyProblem
from engine.model import EvalError, Reason
from engine.verdict import EngineVerdict, clean_engine_message

#: Resource ``type`` values of the decision model and their Cedar entity types.
RESOURCE_TYPES = {
    "agent": "Agent",
    "tool": "Tool",
    "model": "Model",
    "task": "Task",
    "bundle": "Bundle",
    "tenant": "Tenant",
    "artifact": "Artifact",
    "memory": "Memory",
    "deployment": "Deployment",
    "run": "Run",
}
_MAX_LONG = 2**63 - 1
_MAX_DECIMAL = 922337203685477.0
_encode = msgspec.json.Encoder().encode


@dataclass(frozen=True, slots=True)
class PolicyInfo:
    """Where a Cedar policy came from and what it does."""

    policy_id: str
    effect: str
    bundle: str
    file: str
    annotations: dict[str, str]


def cedar_value(value: Any) -> Any:
    """A JSON value as Cedar can hold it (see module docs); None means "leave out"."""
    if isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return value if -_MAX_LONG - 1 <= value <= _MAX_LONG else str(value)
    if isinstance(value, float):
        if not -_MAX_DECIMAL <= value <= _MAX_DECIMAL:
            return None  # outside Cedar's decimal range: left out, like a null
        try:
            quantized = Decimal(repr(value)).quantize(Decimal("0.0001"))
        except InvalidOperation:
            return None
        return {"__extn": {"fn": "decimal", "arg": f"{quantized:f}"}}
    if isinstance(value, dict):
        out = {}
        for key, child in value.items():
            if key in ("__entity", "__extn"):
                continue
            mapped = cedar_value(child)
            if mapped is not None:
                out[str(key)] = mapped
        return out
    if isinstance(value, list | tuple | set | frozenset):
        return [m for m in (cedar_value(v) for v in value) if m is not None]
    return None


def entity_type(resource_type: str) -> str:
    """The Cedar entity type of a resource type (``agent`` → ``Agent``)."""
    return RESOURCE_TYPES.get(resource_type, resource_type[:1].upper() + resource_type[1:])


def request_entities(doc: Mapping[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The Cedar request and entity list for a decision request document.

    ``Role`` and ``Tenant`` appear only as parents: Cedar resolves ``in``
    through the parent links, so they need no entities of their own.
    """
    principal, resource = doc["principal"], doc["resource"]
    p_type = "Service" if principal.get("kind") == "service" else "User"
    r_type = entity_type(resource["type"])
    roles = [str(r) for r in principal.get("roles", [])]
    tenant = str(resource["tenant"])
    p_uid = {"type": p_type, "id": str(principal["id"])}
    r_uid = {"type": r_type, "id": str(resource["id"])}
    entities: list[dict[str, Any]] = [
        {
            "uid": p_uid,
            "attrs": {"tenant": str(principal["tenant"]), "roles": roles, "kind": p_type.lower()},
            "parents": [{"type": "Role", "id": r} for r in roles],
        },
    ]
    if r_type != "Tenant":
        attrs = cedar_value(resource.get("attributes") or {})
        attrs["tenant"] = tenant
        entities.append(
            {"uid": r_uid, "attrs": attrs, "parents": [{"type": "Tenant", "id": tenant}]}
        )
    request = {
        "principal": p_uid,
        "action": {"type": "Action", "id": doc["action"]},
        "resource": r_uid,
        "context": cedar_value(doc.get("context") or {}),
    }
    return request, entities


def _annotations(est: Mapping[str, Any]) -> dict[str, str]:
    raw = est.get("annotations") or {}
    return {str(k): str(v) for k, v in raw.items()}


def _parse_file(source: SourceFile, problems: list[PolicyProblem]) -> dict[int, dict[str, Any]]:
    """The policies and templates of one file by their positional number in it."""
    try:
        est = json.loads(cedarpy.policies_to_json_str(source.text))
    except ValueError as exc:
        problems.append(
            PolicyProblem(source.path, clean_engine_message(str(exc)), "cedar_parse_error")
        )
        return {}
    found: dict[int, dict[str, Any]] = {}
    for group in ("staticPolicies", "templates"):
        for key, policy in est.get(group, {}).items():
            found[int(key.removeprefix("policy"))] = policy
    return found


def declared_actions(schema: cedarpy.Schema) -> frozenset[str]:
    """The governed actions a schema declares, asked of Cedar's own validator."""
    found = set()
    for action in ACTIONS:
        probe = f'permit(principal, action == Action::"{action}", resource);'
        result = cedarpy.validate_policies(probe, schema)
        if result.validation_passed or not any(
            "unrecognized action" in e.error.lower() or "undeclared action" in e.error.lower()
            for e in result.errors
        ):
            found.add(action)
    return frozenset(found)


def parse_schema(source: SourceFile) -> cedarpy.Schema:
    """A parsed schema handle; raises :class:`PolicyError` naming the file."""
    try:
        if source.path.endswith(".json"):
            return cedarpy.Schema.from_json_str(source.text)
        return cedarpy.Schema.from_str(source.text)
    except ValueError as exc:
        raise PolicyError(
            [PolicyProblem(source.path, clean_engine_message(str(exc)), "cedar_schema_error")]
        ) from exc


def validate(sources: Iterable[SourceFile], schema: cedarpy.Schema) -> list[PolicyProblem]:
    """Schema validation problems of ``sources``, each naming its file and policy."""
    problems: list[PolicyProblem] = []
    for source in sources:
        result = cedarpy.validate_policies(source.text, schema)
        for error in result.errors:
            problems.append(
                PolicyProblem(
                    source.path,
                    f"policy `{error.policy_id}`: {error.error}",
                    "cedar_validation_error",
                )
            )
    return problems


@dataclass(frozen=True, slots=True)
class CedarBundle:
    """The Cedar part of one bundle."""

    name: str
    policies: tuple[SourceFile, ...]
    schema: SourceFile | None
    links: tuple[CedarLink, ...] = ()


class CompiledCedar:
    """Cedar policies of a policy set, parsed once; evaluate many times."""

    engine_name = "cedar"

    def __init__(
        self, policies: cedarpy.PolicySet, info: dict[str, PolicyInfo], actions: frozenset[str]
    ):
        self._policies = policies
        self._info = info
        self._actions = actions

    def participates(self, action: str) -> bool:
        """Whether a schema of the set declares ``action``."""
        return action in self._actions

    def evaluate(self, action: str, doc: dict[str, Any], now_ns: int) -> EngineVerdict:
        """Authorize ``doc`` with Cedar; NoDecision and erroring forbids deny."""
        started = time.perf_counter()
        verdict = EngineVerdict(self.engine_name, participated=action in self._actions)
        if not verdict.participated:
            return verdict
        try:
            request, entities = request_entities(doc)
            # Pre-encoded JSON strings skip cedarpy's slower stdlib encoding.
            request["context"] = _encode(request["context"]).decode()
            result = cedarpy.is_authorized(request, self._policies, _encode(entities).decode())
        except (ValueError, TypeError, KeyError, RuntimeError) as exc:
            verdict.errors.append(EvalError("cedar", "cedar_error", clean_engine_message(str(exc))))
            verdict.duration_us = (time.perf_counter() - started) * 1e6
            return verdict
        self._collect(verdict, result, action)
        verdict.duration_us = (time.perf_counter() - started) * 1e6
        return verdict

    def _reason(self, policy_id: str) -> Reason:
        info = self._info.get(policy_id)
        if info is None:
            return Reason("cedar", policy_id, f"forbidden by `{policy_id}`")
        name = info.annotations.get("id", policy_id)
        message = (
            info.annotations.get("message")
            or info.annotations.get("reason")
            or f"forbidden by `{name}`"
        )
        return Reason("cedar", name, message, info.bundle, {"file": info.file})

    def _collect(self, verdict: EngineVerdict, result: cedarpy.AuthzResult, action: str) -> None:
        diagnostics = result.diagnostics
        for error in diagnostics.errors:
            policy_id = error.split("`")[1] if "`" in error else ""
            info = self._info.get(policy_id)
            if info is not None and info.effect == "forbid":
                verdict.errors.append(
                    EvalError(
                        "cedar",
                        "cedar_forbid_error",
                        f"forbid policy `{info.annotations.get('id', policy_id)}` errored: {error}",
                    )
                )
        if result.decision == cedarpy.Decision.Allow:
            return
        verdict.permitted = False
        if result.decision != cedarpy.Decision.Deny:
            verdict.errors.append(
                EvalError("cedar", "cedar_no_decision", "Cedar returned no decision")
            )
            return
        fired = [self._reason(pid) for pid in diagnostics.reasons]
        verdict.denies += fired or [
            Reason(
                "cedar",
                "cedar.default_deny",
                f"no Cedar policy permits `{action}` for this principal and resource",
            )
        ]


def compile_cedar(bundles: Iterable[CedarBundle]) -> CompiledCedar | None:
    """Parse, link and validate the Cedar of several bundles; None when there is none.

    Every parse and validation problem is collected before :class:`PolicyError`
    is raised.
    """
    problems: list[PolicyProblem] = []
    info: dict[str, PolicyInfo] = {}
    combined: cedarpy.PolicySet | None = None
    actions: set[str] = set()
    links: list[CedarLink] = []
    count = 0
    for bundle in bundles:
        if bundle.schema is not None:
            schema = parse_schema(bundle.schema)
            actions |= declared_actions(schema)
            problems += validate(bundle.policies, schema)
        elif bundle.policies:
            problems.append(
                PolicyProblem(
                    bundle.name,
                    "Cedar policies need a schema in the same bundle",
                    "cedar_schema_missing",
                )
            )
        links += bundle.links
        for source in bundle.policies:
            parsed = _parse_file(source, problems)
            for local, est in parsed.items():
                pid = f"policy{count + local}"
                info[pid] = PolicyInfo(
                    pid, str(est.get("effect")), bundle.name, source.path, _annotations(est)
                )
            count += len(parsed)
            if problems:
                continue
            combined = (
                cedarpy.PolicySet.from_str(source.text)
                if combined is None
                else combined.with_added_str(source.text)
            )
    if problems:
        raise PolicyError(problems)
    if combined is None:
        combined = cedarpy.PolicySet.from_str("")
    if links:
        combined = _link(combined, links, info)
    if not actions and not info:
        return None
    return CompiledCedar(combined, info, frozenset(actions))


def _link(
    policies: cedarpy.PolicySet, links: list[CedarLink], info: dict[str, PolicyInfo]
) -> cedarpy.PolicySet:
    try:
        linked = policies.with_linked_batch(
            [{"template_id": k.template_id, "new_id": k.link_id, "values": k.values} for k in links]
        )
    except (ValueError, KeyError) as exc:
        problem = PolicyProblem(
            "template links", clean_engine_message(str(exc)), "cedar_link_error"
        )
        raise PolicyError([problem]) from exc
    by_name = {i.annotations.get("id", i.policy_id): i for i in info.values()}
    by_name.update({i.policy_id: i for i in info.values()})
    for link in links:
        template = by_name.get(link.template_id)
        if template is not None:
            annotations = {**template.annotations, "id": link.link_id}
            info[link.link_id] = PolicyInfo(
                link.link_id, template.effect, template.bundle, template.file, annotations
            )
    return linked
