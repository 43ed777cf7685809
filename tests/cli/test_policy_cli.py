"""`aion policy test | eval | check | validate | fmt`."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import pytest

REQUEST = {
    "action": "agent.deploy",
    "principal": {"id": "alice", "tenant": "acme", "roles": ["operator"], "kind": "user"},
    "resource": {
        "type": "agent",
        "id": "agt_1",
        "tenant": "acme",
        "attributes": {"model": "gpt-4o"},
    },
    "context": {},
}


def test_policy_test_json_counts(aion: Callable[..., Any], demo_bundle: Path) -> None:
    result = aion("policy", "test", demo_bundle, "--format", "json")
    assert result.code == 0, result.out
    report = json.loads(result.out)
    assert (report["passed"], report["failed"], report["errored"], report["skipped"]) == (
        2,
        0,
        0,
        0,
    )
    assert {r["name"] for r in report["results"]} == {
        "data.aion.agent.deploy_test.test_no_model_denied",
        "data.aion.agent.deploy_test.test_model_allowed",
    }


def test_policy_test_failure_exit_1_and_junit(aion: Callable[..., Any], demo_bundle: Path) -> None:
    (demo_bundle / "extra_test.rego").write_text(
        "package aion.extra_test\nimport rego.v1\ntest_wrong if 1 == 2\ntodo_test_later if true\n"
    )
    result = aion("policy", "test", demo_bundle, "--format", "junit")
    assert result.code == 1
    suite = ET.fromstring(result.out).find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("4", "1", "1")


def test_policy_test_run_filter_and_coverage_threshold(
    aion: Callable[..., Any], demo_bundle: Path
) -> None:
    only = aion("policy", "test", demo_bundle, "--format", "json", "--run", "no_model")
    assert json.loads(only.out)["passed"] == 1
    (demo_bundle / "more.rego").write_text(
        'package aion.agent.more\nimport rego.v1\ndeny contains "never tested" if input.x\n'
    )
    covered = aion("policy", "test", demo_bundle, "--coverage", "--threshold", "100")
    assert covered.code == 1
    assert "below the threshold" in covered.err and "more.rego" in covered.out


def test_policy_test_load_error_exits_2(aion: Callable[..., Any], demo_bundle: Path) -> None:
    (demo_bundle / "broken.rego").write_text("package aion.agent.broken\ndeny contains if {\n")
    result = aion("policy", "test", demo_bundle)
    assert result.code == 2 and "broken.rego" in result.err


def test_policy_eval_prints_decision(
    aion: Callable[..., Any], demo_bundle: Path, tmp_path: Path
) -> None:
    request = tmp_path / "req.json"
    request.write_text(json.dumps(REQUEST))
    allowed = aion("policy", "eval", "--bundle", demo_bundle, "--input", request)
    assert allowed.code == 0, allowed.out + allowed.err
    decision = json.loads(allowed.out)
    assert decision["allowed"] is True and decision["revisions"] == {"demo": "1"}
    assert {e["engine"] for e in decision["engines"] if e["participated"]} == {"rego", "cedar"}

    denied_req = {
        **REQUEST,
        "principal": {**REQUEST["principal"], "roles": ["developer"]},
        "resource": {**REQUEST["resource"], "attributes": {}},
    }
    request.write_text(json.dumps(denied_req))
    denied = aion("policy", "eval", "--bundle", demo_bundle, "--input", request)
    assert denied.code == 1
    reasons = {(r["engine"], r["policy"]) for r in json.loads(denied.out)["reasons"]}
    assert reasons == {("rego", "demo.model"), ("cedar", "cedar.default_deny")}


def test_policy_eval_bad_input_exit_2(
    aion: Callable[..., Any], demo_bundle: Path, tmp_path: Path
) -> None:
    request = tmp_path / "req.json"
    request.write_text(json.dumps({**REQUEST, "action": "agent.teleport"}))
    unknown = aion("policy", "eval", "--bundle", demo_bundle, "--input", request)
    assert unknown.code == 2 and "unknown action" in unknown.err
    request.write_text(json.dumps({**REQUEST, "surprise": 1}))
    extra = aion("policy", "eval", "--bundle", demo_bundle, "--input", request)
    assert extra.code == 2 and "surprise" in extra.err


CHECK_POLICY = """package main
import rego.v1

deny contains msg if {
    input.kind == "Agent"
    not input.spec.model
    msg := sprintf("agent `%s` has no model", [input.metadata.name])
}

warn contains {"msg": "no budget set"} if {
    input.kind == "Agent"
    not input.spec.budget
}
"""


@pytest.fixture
def check_setup(tmp_path: Path) -> tuple[Path, Path, Path]:
    policy = tmp_path / "check"
    policy.mkdir()
    (policy / "agent.rego").write_text(CHECK_POLICY)
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "kind: Agent\nmetadata: {name: rogue}\nspec: {}\n---\n"
        "kind: Agent\nmetadata: {name: ok}\nspec: {model: m, budget: 1}\n"
    )
    warn_only = tmp_path / "warn.json"
    warn_only.write_text(
        json.dumps({"kind": "Agent", "metadata": {"name": "w"}, "spec": {"model": "m"}})
    )
    return policy, bad, warn_only


def test_check_exit_codes(aion: Callable[..., Any], check_setup: tuple[Path, Path, Path]) -> None:
    policy, bad, warn_only = check_setup
    failing = aion("policy", "check", "--bundle", policy, bad)
    assert failing.code == 1
    assert "FAIL - " in failing.out and "agent `rogue` has no model" in failing.out
    assert aion("policy", "check", "--bundle", policy, warn_only).code == 0
    assert aion("policy", "check", "--bundle", policy, warn_only, "--fail-on-warn").code == 1
    assert aion("policy", "check", "--bundle", policy, bad, "--fail-on-warn").code == 2


@pytest.mark.parametrize("fmt", ["json", "junit", "github", "sarif"])
def test_check_formats(
    aion: Callable[..., Any], check_setup: tuple[Path, Path, Path], fmt: str
) -> None:
    policy, bad, _ = check_setup
    result = aion("policy", "check", "--bundle", policy, bad, "-o", fmt)
    assert result.code == 1
    if fmt == "json":
        docs = json.loads(result.out)
        assert [len(d["failures"]) for d in docs] == [1, 0]
        assert docs[0]["warnings"] == [{"msg": "no budget set"}]
    elif fmt == "junit":
        assert ET.fromstring(result.out).find("testsuite").get("failures") == "1"  # type: ignore[union-attr]
    elif fmt == "github":
        assert f"::error file={bad}::main: agent `rogue` has no model" in result.out
    else:
        sarif = json.loads(result.out)
        levels = sorted(r["level"] for r in sarif["runs"][0]["results"])
        assert sarif["version"] == "2.1.0" and levels == ["error", "warning"]


def test_validate_reports_every_problem(aion: Callable[..., Any], demo_bundle: Path) -> None:
    (demo_bundle / "broken.rego").write_text(
        "package aion.agent.broken\nimport rego.v1\ndeny contains x if {\n"
    )
    (demo_bundle / "net.rego").write_text(
        'package aion.agent.net\nimport rego.v1\nr := http.send({"method": "get", "url": "http://x"})\n'
    )
    (demo_bundle / "policies.cedar").write_text(
        '@id("bad") permit(principal, action == Action::"agent.deploy", resource) when { resource.nope == 1 };\n'
    )
    result = aion("policy", "validate", demo_bundle)
    assert result.code == 1
    assert "broken.rego:" in result.out and "rego_parse_error" in result.out
    assert "net.rego:3:" in result.out and "rego_capability_error" in result.out
    assert "policies.cedar" in result.out and "cedar_validation_error" in result.out


def test_validate_clean_bundle(aion: Callable[..., Any], demo_bundle: Path) -> None:
    result = aion("policy", "validate", demo_bundle)
    assert result.code == 0 and "0 problem(s)" in result.err


def test_validate_flags_rules_opa_reads_differently(
    aion: Callable[..., Any], demo_bundle: Path
) -> None:
    (demo_bundle / "named.rego").write_text(
        "package aion.agent.named\nimport rego.v1\n\n"
        'deny contains "unnamed" if not is_string(input.resource.attributes.name)\n'
    )
    result = aion("policy", "validate", demo_bundle)
    assert result.code == 1
    assert "named.rego:4:" in result.out and "rego_not_undefined_argument" in result.out
    assert "`input.resource.attributes.name`" in result.out


def test_the_shipped_policies_validate_clean(aion: Callable[..., Any]) -> None:
    shipped = Path(__file__).resolve().parents[2] / "policies"
    result = aion("policy", "validate", shipped)
    assert result.code == 0, result.out
    assert "4 bundle(s) checked, 0 problem(s)" in result.err


def test_fmt_check_and_write(aion: Callable[..., Any], demo_bundle: Path) -> None:
    cedar = demo_bundle / "policies.cedar"
    cedar.write_text("permit(principal,action,resource)when{principal.tenant==resource.tenant};")
    check = aion("policy", "fmt", demo_bundle, "--check")
    assert check.code == 1 and "would reformat" in check.out
    assert aion("policy", "fmt", demo_bundle).code == 0
    assert "principal.tenant == resource.tenant" in cedar.read_text()
    assert aion("policy", "fmt", demo_bundle, "--check").code == 0
