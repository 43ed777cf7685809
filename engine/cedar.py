"""Cedar evaluation through cedarpy, parsed and validated once per policy set.

Entities and context are built from the request by
:mod:`engine.cedar_entities`, sending only what the policies can read.

Cedar's own rules hold: default deny, forbid overrides permit. We are
stricter in one place: a ``forbid`` policy that errors denies, with its id.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import cedarpy
import msgspec

from engine.actions import ACTIONS, unknown_action
from engine.bundle.bundle import CedarLink, SourceFile
from engine.cedar_entities import AttributeUse, request_entities
from engine.errors import PolicyError, PolicyProblem
from engine.model import EvalError, Reason
from engine.verdict import EngineVerdict, clean_engine_message

_encode = msgspec.json.Encoder().encode


@dataclass(frozen=True, slots=True)
class PolicyInfo:
    """Where a Cedar policy came from and what it does."""

    policy_id: str
    effect: str
    bundle: str
    file: str
    annotations: dict[str, str]


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


def _unknown_actions(file: str, policies: Iterable[Mapping[str, Any]]) -> list[PolicyProblem]:
    """A problem for each `Action::"..."` a policy scopes to that is not governed."""
    problems = []
    for policy in policies:
        scope = policy.get("action") or {}
        entities = scope.get("entities") or ([scope["entity"]] if "entity" in scope else [])
        for entity in entities:
            name = entity.get("id", "") if isinstance(entity, dict) else ""
            if entity.get("type") == "Action" and unknown_action(name):
                problems.append(
                    PolicyProblem(file, f"policy names unknown action `{name}`", "unknown_action")
                )
    return problems


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
        self,
        policies: cedarpy.PolicySet,
        info: dict[str, PolicyInfo],
        actions: frozenset[str],
        use: AttributeUse,
    ):
        self._policies = policies
        self._info = info
        self._actions = actions
        self._use = use

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
            request, entities = request_entities(doc, self._use)
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
    ests: list[dict[str, Any]] = []
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
            ests += parsed.values()
            problems += _unknown_actions(source.path, parsed.values())
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
    return CompiledCedar(combined, info, frozenset(actions), AttributeUse.of(ests))


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
