"""The remote OPA evaluator against its in-memory twin: same decisions, every failure denies."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest

from engine import (
    Bundle,
    BundleError,
    Decision,
    DecisionRequest,
    InMemoryOpa,
    Mode,
    OpaAnswer,
    Outcome,
    PolicySetCache,
    RemoteRego,
    compile_bundles,
    decide,
    decide_async,
)
from engine.opa_client_aiohttp import parse_opa_url
from engine.opa_remote import OpaBadAnswer, OpaUnreachable, answer_from_body

pytestmark = pytest.mark.anyio

Make = Callable[..., Bundle]
Request = Callable[..., DecisionRequest]

DEPLOY = """package aion.agent.deploy

deny contains "no prod" if input.resource.attributes.env == "prod"

deny contains {"id": "deploy.owner", "msg": "an owner is required", "field": "owner"} if {
    not input.resource.attributes.owner
}

warn contains "deploying on a Friday" if input.context.friday

obligations contains {"type": "notify", "channel": "ops"} if true
"""

COMMON = """package aion.common

deny contains "tenant mismatch" if input.principal.tenant != input.resource.tenant
"""

CREATE = """package aion.agent.create

deny contains "no" if false
"""

ALLOWED_DEPLOY = {"deny": [], "warn": [], "obligations": [{"type": "notify", "channel": "ops"}]}
REVISIONS = {"gates": "7", "common": "3"}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def bundles(make_bundle: Make) -> list[Bundle]:
    gates = make_bundle(
        {"aion/agent/deploy/deploy.rego": DEPLOY, "aion/agent/create/create.rego": CREATE},
        name="gates",
        manifest={"revision": "7", "roots": ["aion/agent"]},
    )
    common = make_bundle(
        {"aion/common/common.rego": COMMON},
        name="common",
        manifest={"revision": "3", "roots": ["aion/common"]},
    )
    return [gates, common]


def _opa(**documents: Any) -> InMemoryOpa:
    docs = {"aion/agent/deploy": ALLOWED_DEPLOY, "aion/common": {"deny": []}}
    docs.update({k.replace("__", "/"): v for k, v in documents.items()})
    return InMemoryOpa(documents=docs, revisions=dict(REVISIONS))


def _remote(bundles: list[Bundle], opa: InMemoryOpa | None, **kw: Any) -> Any:
    return compile_bundles(bundles, remote=RemoteRego(opa, all_bundles=True, **kw))


async def _decide(policy_set: Any, request: DecisionRequest, now: datetime, **kw: Any) -> Decision:
    return await decide_async(policy_set, request, now=now, time_limit_us=5_000_000, **kw)


def _codes(decision: Decision) -> list[str]:
    return [e.code for e in decision.errors]


def _denied_by(decision: Decision, code: str) -> None:
    assert not decision.allowed
    assert decision.outcome is Outcome.DENY
    assert code in _codes(decision), decision.errors
    assert any(r.policy == code and r.engine == "opa" for r in decision.reasons)
    assert decision.obligations == []


def _allowed_request(make_request: Request, **kw: Any) -> DecisionRequest:
    return make_request(attributes={"env": "dev", "owner": "bob"}, principal_tenant="t1", **kw)


# --- same decisions as in process -------------------------------------------------------


async def test_an_allow_from_the_sidecar_matches_the_in_process_decision(
    bundles: list[Bundle], make_request: Request, now: datetime
) -> None:
    opa = _opa()
    request = _allowed_request(make_request)
    remote = await _decide(_remote(bundles, opa), request, now)
    local = decide(compile_bundles(bundles), request, now=now, time_limit_us=5_000_000)
    assert local.allowed and remote.allowed
    assert remote.obligations == local.obligations == [{"type": "notify", "channel": "ops"}]
    assert [e.engine for e in remote.engines] == ["opa"]
    assert remote.revisions == local.revisions == REVISIONS
    # Both packages asked concurrently, the request as `input`, nothing else.
    assert sorted(path for path, _ in opa.queries) == ["aion/agent/deploy", "aion/common"]
    assert all(doc["resource"]["attributes"]["owner"] == "bob" for _, doc in opa.queries)


async def test_denies_warnings_and_objects_read_as_in_process(
    bundles: list[Bundle], make_request: Request, now: datetime
) -> None:
    request = make_request(
        attributes={"env": "prod"}, context={"friday": True}, principal_tenant="t2"
    )
    opa = _opa(
        aion__agent__deploy={
            "deny": [
                "no prod",
                {"id": "deploy.owner", "msg": "an owner is required", "field": "owner"},
            ],
            "warn": ["deploying on a Friday"],
            "obligations": [{"type": "notify", "channel": "ops"}],
        },
        aion__common={"deny": ["tenant mismatch"]},
    )
    remote = await _decide(_remote(bundles, opa), request, now)
    local = decide(compile_bundles(bundles), request, now=now, time_limit_us=5_000_000)

    def shape(reasons: list[Any]) -> list[tuple[str, str, str, dict[str, Any]]]:
        return sorted((r.policy, r.message, r.bundle, r.details) for r in reasons)

    assert not remote.allowed and not local.allowed
    assert shape(remote.reasons) == shape(local.reasons)
    assert len(remote.reasons) == 3
    assert shape(remote.warnings) == shape(local.warnings) != []
    assert {r.engine for r in remote.reasons} == {"opa"}
    assert remote.errors == []


async def test_a_boolean_deny_reads_as_in_process(
    make_bundle: Make, make_request: Request, now: datetime
) -> None:
    bundle = make_bundle(
        {"p.rego": 'package aion.agent.deploy\n\ndeny if input.resource.attributes.env == "prod"'},
        name="b",
        manifest={"revision": "1"},
    )
    opa = InMemoryOpa({"aion/agent/deploy": {"deny": True}}, {"b": "1"})
    decision = await _decide(_remote([bundle], opa), make_request(attributes={"env": "prod"}), now)
    assert not decision.allowed
    assert [(r.policy, r.message) for r in decision.reasons] == [
        ("aion.agent.deploy.deny", "denied by `aion.agent.deploy.deny`")
    ]


async def test_actions_without_remote_rules_are_not_asked(
    bundles: list[Bundle], make_request: Request, now: datetime
) -> None:
    opa = _opa()
    policy_set = _remote(bundles, opa)
    assert policy_set.remote is not None
    assert policy_set.participating("agent.deploy") == ["opa"]
    assert policy_set.participating("tool.invoke") == []
    decision = await _decide(policy_set, make_request("tool.invoke"), now)
    assert _codes(decision) == [] and decision.reasons[0].policy == "no_policy"
    assert opa.queries == []


# --- every failure denies, named ----------------------------------------------------------


@pytest.mark.parametrize("mode", [Mode.ENFORCE, Mode.AUDIT, Mode.WARN])
async def test_an_unreachable_sidecar_denies_in_every_mode(
    bundles: list[Bundle], make_request: Request, now: datetime, mode: Mode
) -> None:
    opa = InMemoryOpa(responder=lambda path, doc: OpaUnreachable("connection refused"))
    decision = await _decide(_remote(bundles, opa), _allowed_request(make_request), now, mode=mode)
    _denied_by(decision, "opa_unreachable")
    assert "connection refused" in decision.errors[0].message


async def test_an_unexpected_querier_fault_denies(
    bundles: list[Bundle], make_request: Request, now: datetime
) -> None:
    opa = InMemoryOpa(responder=lambda path, doc: RuntimeError("boom"))
    decision = await _decide(_remote(bundles, opa), _allowed_request(make_request), now)
    _denied_by(decision, "opa_unreachable")
    assert "RuntimeError: boom" in decision.errors[0].message


@pytest.mark.parametrize("status", [500, 503, 400, 404])
async def test_any_status_but_200_denies_with_it(
    bundles: list[Bundle], make_request: Request, now: datetime, status: int
) -> None:
    opa = InMemoryOpa(responder=lambda path, doc: OpaAnswer(status, detail="eval_conflict_error"))
    decision = await _decide(_remote(bundles, opa), _allowed_request(make_request), now)
    _denied_by(decision, "opa_http_error")
    assert f"HTTP {status}" in decision.errors[0].message
    assert "eval_conflict_error" in decision.errors[0].message


async def test_a_sidecar_that_never_answers_times_out(
    bundles: list[Bundle], make_request: Request, now: datetime
) -> None:
    opa = InMemoryOpa(hang=True)
    policy_set = _remote(bundles, opa, timeout_s=0.05)
    decision = await _decide(policy_set, _allowed_request(make_request), now)
    _denied_by(decision, "opa_timeout")
    assert "within 50 ms" in decision.errors[0].message


async def test_the_decision_time_limit_is_a_hard_bound_on_the_sidecar(
    bundles: list[Bundle], make_request: Request, now: datetime
) -> None:
    # The querier's own timeout is far away; the decision's time limit stops the wait.
    opa = InMemoryOpa(hang=True)
    policy_set = _remote(bundles, opa, timeout_s=3600.0)
    decision = await decide_async(
        policy_set, _allowed_request(make_request), now=now, time_limit_us=50_000
    )
    _denied_by(decision, "opa_timeout")
    assert "evaluation_timeout" in _codes(decision)


async def test_an_undefined_package_denies(
    bundles: list[Bundle], make_request: Request, now: datetime
) -> None:
    opa = _opa()
    del opa.documents["aion/agent/deploy"]
    decision = await _decide(_remote(bundles, opa), _allowed_request(make_request), now)
    _denied_by(decision, "opa_undefined")
    assert "`aion/agent/deploy`" in decision.errors[0].message


async def test_an_undefined_deny_rule_denies(
    bundles: list[Bundle], make_request: Request, now: datetime
) -> None:
    opa = _opa(aion__agent__deploy={"warn": []})
    decision = await _decide(_remote(bundles, opa), _allowed_request(make_request), now)
    _denied_by(decision, "opa_undefined")
    assert "`data.aion.agent.deploy.deny` is undefined" in decision.errors[0].message


@pytest.mark.parametrize(
    "document",
    [
        ["no prod"],
        "no prod",
        {"deny": "no prod"},
        {"deny": 3},
        {"deny": [1, 2]},
        {"deny": [["nested"]]},
        {"deny": [], "warn": {"a": 1}},
        {"deny": [], "obligations": {"type": "notify"}},
    ],
)
async def test_a_result_of_the_wrong_type_denies(
    bundles: list[Bundle], make_request: Request, now: datetime, document: Any
) -> None:
    opa = _opa(aion__agent__deploy=document)
    decision = await _decide(_remote(bundles, opa), _allowed_request(make_request), now)
    _denied_by(decision, "opa_bad_result")
    assert decision.warnings == []


async def test_a_malformed_body_denies(
    bundles: list[Bundle], make_request: Request, now: datetime
) -> None:
    opa = InMemoryOpa(responder=lambda path, doc: OpaBadAnswer("not JSON"))
    decision = await _decide(_remote(bundles, opa), _allowed_request(make_request), now)
    _denied_by(decision, "opa_bad_result")


@pytest.mark.parametrize(
    ("served", "says"),
    [
        ({"gates": "6", "common": "3"}, "OPA serves bundle `gates` at revision `6`, not `7`"),
        ({"common": "3"}, "OPA does not serve bundle `gates`"),
        ({}, "OPA does not serve bundle `common`"),
        (None, "no bundle provenance"),
    ],
)
async def test_a_sidecar_with_other_revisions_does_not_decide(
    bundles: list[Bundle],
    make_request: Request,
    now: datetime,
    served: dict[str, str] | None,
    says: str,
) -> None:
    opa = _opa()
    opa.revisions = served
    decision = await _decide(_remote(bundles, opa), _allowed_request(make_request), now)
    _denied_by(decision, "opa_revision_mismatch")
    assert says in decision.errors[0].message


async def test_bundles_loaded_from_files_are_matched_by_file_name(
    bundles: list[Bundle], make_request: Request, now: datetime
) -> None:
    # `opa run -b /srv/gates.tar.gz` reports the bundle under its path.
    opa = _opa()
    opa.revisions = {"/srv/gates.tar.gz": "7", "bundles/common": "3"}
    decision = await _decide(_remote(bundles, opa), _allowed_request(make_request), now)
    assert decision.allowed, decision.errors
    opa.revisions = {"/srv/gates.tar.gz": "6", "bundles/common": "3"}
    decision = await _decide(_remote(bundles, opa), _allowed_request(make_request), now)
    _denied_by(decision, "opa_revision_mismatch")


async def test_without_a_sidecar_url_remote_rego_denies_named(
    bundles: list[Bundle], make_request: Request, now: datetime
) -> None:
    decision = await _decide(_remote(bundles, None), _allowed_request(make_request), now)
    _denied_by(decision, "opa_not_configured")
    assert "AION_OPA_URL" in decision.errors[0].message


async def test_the_synchronous_decide_fails_closed_on_a_remote_set(
    bundles: list[Bundle], make_request: Request, now: datetime
) -> None:
    opa = _opa()
    decision = decide(_remote(bundles, opa), _allowed_request(make_request), now=now)
    _denied_by(decision, "opa_requires_async")
    assert opa.queries == []


# --- which bundles go remote --------------------------------------------------------------


async def test_bundle_metadata_sends_only_that_bundle_to_the_sidecar(
    make_bundle: Make, make_request: Request, now: datetime
) -> None:
    remote_one = make_bundle(
        {"d.rego": 'package aion.agent.deploy\n\ndeny contains "remote says no" if true'},
        name="remote-one",
        manifest={
            "revision": "1",
            "roots": ["aion/agent/deploy"],
            "metadata": {"aion": {"evaluator": "opa"}},
        },
    )
    local_one = make_bundle(
        {"c.rego": 'package aion.agent.create\n\ndeny contains "local says no" if true'},
        name="local-one",
        manifest={"revision": "1", "roots": ["aion/agent/create"]},
    )
    opa = InMemoryOpa(
        {"aion/agent/deploy": {"deny": ["remote says no"]}}, {"remote-one": "1", "local-one": "1"}
    )
    policy_set = compile_bundles([remote_one, local_one], remote=RemoteRego(opa))
    # The sidecar must serve every bundle with Rego or data, the local ones too.
    assert policy_set.remote is not None
    assert policy_set.remote.bundles == {"remote-one": "1", "local-one": "1"}
    assert policy_set.participating("agent.deploy") == ["opa"]
    assert policy_set.participating("agent.create") == ["rego"]
    deploy = await _decide(policy_set, make_request("agent.deploy"), now)
    create = await _decide(policy_set, make_request("agent.create"), now)
    assert [(r.engine, r.message) for r in deploy.reasons] == [("opa", "remote says no")]
    assert [(r.engine, r.message) for r in create.reasons] == [("rego", "local says no")]
    assert [path for path, _ in opa.queries] == ["aion/agent/deploy"]
    # Without a remote configuration (the CLI, uploads) everything runs in process.
    assert compile_bundles([remote_one, local_one]).participating("agent.deploy") == ["rego"]


async def test_the_common_package_goes_to_the_sidecar_with_any_remote_bundle(
    make_bundle: Make, make_request: Request, now: datetime
) -> None:
    local_create = make_bundle(
        {"c.rego": CREATE}, name="local", manifest={"revision": "1", "roots": ["aion/agent"]}
    )
    common = make_bundle(
        {"common.rego": COMMON}, name="common", manifest={"revision": "3", "roots": ["aion/common"]}
    )
    flagged = make_bundle(
        {"t.rego": 'package aion.tool.bind\n\ndeny contains "x" if false'},
        name="flagged",
        manifest={
            "revision": "2",
            "roots": ["aion/tool"],
            "metadata": {"aion": {"evaluator": "opa"}},
        },
    )
    opa = InMemoryOpa(
        {"aion/common": {"deny": ["tenant mismatch"]}, "aion/tool/bind": {"deny": []}},
        {"common": "3", "flagged": "2", "local": "1"},
    )
    policy_set = compile_bundles([local_create, common, flagged], remote=RemoteRego(opa))
    assert policy_set.remote is not None
    assert policy_set.remote.bundles == {"common": "3", "flagged": "2", "local": "1"}
    # agent.create: its own package in process, `aion.common` from the sidecar, once.
    assert sorted(policy_set.participating("agent.create")) == ["opa", "rego"]
    decision = await _decide(policy_set, make_request("agent.create", principal_tenant="t9"), now)
    assert [(r.engine, r.policy) for r in decision.reasons] == [("opa", "aion.common.deny")]
    assert [path for path, _ in opa.queries] == ["aion/common"]


BLOCKED = 'package aion.agent.deploy\n\ndeny contains "blocked" if input.principal.id in data.acme.blocked'


async def test_a_stale_data_only_bundle_in_the_sidecar_does_not_decide(
    make_bundle: Make, make_request: Request, now: datetime
) -> None:
    rules = make_bundle(
        {"d.rego": BLOCKED}, name="rules", manifest={"revision": "1", "roots": ["aion"]}
    )
    data = make_bundle(
        {"acme/data.json": '{"blocked": ["usr_bad"]}'},
        name="acme-data",
        manifest={"revision": "9", "roots": ["acme"]},
    )
    # The sidecar has the rules, but an older revision of the data: it would allow.
    opa = InMemoryOpa({"aion/agent/deploy": {"deny": []}}, {"rules": "1", "acme-data": "1"})
    policy_set = compile_bundles([rules, data], remote=RemoteRego(opa, all_bundles=True))
    decision = await _decide(policy_set, make_request("agent.deploy"), now)
    _denied_by(decision, "opa_revision_mismatch")
    assert "`acme-data` at revision `1`, not `9`" in str(decision.errors)


async def test_a_sidecar_serving_bundles_the_set_lacks_does_not_decide(
    make_bundle: Make, make_request: Request, now: datetime
) -> None:
    rules = make_bundle(
        {"d.rego": BLOCKED}, name="rules", manifest={"revision": "1", "roots": ["aion"]}
    )
    opa = InMemoryOpa({"aion/agent/deploy": {"deny": []}}, {"rules": "1", "other-tenant": "4"})
    policy_set = compile_bundles([rules], remote=RemoteRego(opa, all_bundles=True))
    decision = await _decide(policy_set, make_request("agent.deploy"), now)
    _denied_by(decision, "opa_revision_mismatch")
    assert "`other-tenant`" in str(decision.errors)


async def test_a_tenant_the_sidecar_does_not_serve_is_refused_before_asking(
    make_bundle: Make, make_request: Request, now: datetime
) -> None:
    rules = make_bundle(
        {"d.rego": BLOCKED}, name="rules", manifest={"revision": "1", "roots": ["aion"]}
    )
    opa = InMemoryOpa({"aion/agent/deploy": {"deny": []}}, {"rules": "1"})
    refused = RemoteRego(opa, all_bundles=True, refusal="the sidecar serves tenant `t1`")
    decision = await _decide(
        compile_bundles([rules], remote=refused), make_request("agent.deploy"), now
    )
    _denied_by(decision, "opa_wrong_tenant")
    assert "tenant `t1`" in str(decision.errors)
    assert opa.queries == []


def test_an_unknown_evaluator_in_a_manifest_is_refused(make_bundle: Make) -> None:
    bundle = make_bundle({"d.rego": CREATE}, manifest={"metadata": {"aion": {"evaluator": "wasm"}}})
    with pytest.raises(BundleError, match=r"metadata\.aion\.evaluator"):
        compile_bundles([bundle])


def test_the_cache_keeps_remote_and_in_process_sets_apart(bundles: list[Bundle]) -> None:
    cache = PolicySetCache()
    opa = _opa()
    remote = RemoteRego(opa, all_bundles=True)
    local = cache.get(bundles)
    assert local.remote is None
    first = cache.get(bundles, remote)
    assert first.remote is not None
    assert cache.get(bundles, RemoteRego(opa, all_bundles=True)) is first
    assert cache.get(bundles, RemoteRego(opa, all_bundles=False)) is not first
    assert cache.get(bundles, RemoteRego(None, all_bundles=True)) is not first
    assert cache.get(bundles) is local
    assert len(cache) == 4


# --- the wire format --------------------------------------------------------------------


def test_answers_are_read_from_opa_bodies() -> None:
    body = {
        "result": {"deny": []},
        "provenance": {"version": "1.22.3", "bundles": {"gates": {"revision": "7"}}},
    }
    assert answer_from_body(200, body) == OpaAnswer(200, True, {"deny": []}, {"gates": "7"})
    assert answer_from_body(200, {}) == OpaAnswer(200, False, None, None)
    assert answer_from_body(200, {"provenance": {"version": "1"}}).revisions == {}
    assert answer_from_body(500, {"code": "internal_error"}).status == 500
    with pytest.raises(OpaBadAnswer):
        answer_from_body(200, ["not", "an", "object"])


def test_opa_urls_are_parsed_strictly() -> None:
    assert parse_opa_url("http://127.0.0.1:8181") == ("127.0.0.1", 8181, False)
    assert parse_opa_url("https://opa.internal") == ("opa.internal", 443, True)
    for bad in ("opa:8181", "ftp://h:1", "http://h:1/v1", "http://u:p@h:1", "http://h:1?x=1"):
        with pytest.raises(ValueError, match="OPA URL"):
            parse_opa_url(bad)


def test_rego_that_opa_reads_differently_is_not_sent_to_it(make_bundle: Make) -> None:
    divergent = make_bundle(
        {"d.rego": 'package aion.agent.deploy\n\ndeny contains "x" if not is_string(input.name)'},
        name="divergent",
        manifest={"revision": "1", "roots": ["aion/agent/deploy"]},
    )
    opa = InMemoryOpa({"aion/agent/deploy": {"deny": []}}, {"divergent": "1"})
    with pytest.raises(BundleError, match="rego_not_undefined_argument"):
        compile_bundles([divergent], remote=RemoteRego(opa, all_bundles=True))
    # In process the same bundle compiles: it means there what it says.
    assert compile_bundles([divergent]).participating("agent.deploy") == ["rego"]
