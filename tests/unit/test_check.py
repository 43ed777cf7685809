"""Conftest-style checks of documents: engine.check.Checker."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from engine import Bundle, PolicyError
from engine.check import Checker

Make = Callable[..., Bundle]

MAIN = """package main

deny contains "name is required" if not input.name

deny_image contains {"msg": "image tag `latest` is not allowed", "id": "img"} if {
	endswith(input.image, ":latest")
}

violation contains "replicas must be positive" if input.replicas < 1

violation_owner contains {"msg": "owner must be a team"} if not startswith(input.owner, "team-")

warn contains "no description" if not input.description

warn_size contains sprintf("size %d is large", [input.size]) if input.size > 10

denylist := ["not", "a", "rule", "kind"]

warning_text := "prefix without underscore is not a warn rule"
"""

SECURITY = """package security

deny contains "privileged containers are forbidden" if input.privileged
"""

GOOD = {
    "name": "svc",
    "image": "registry/svc:1.2.3",
    "replicas": 2,
    "owner": "team-a",
    "description": "d",
    "size": 1,
}


@pytest.fixture
def checker(make_bundle: Make) -> Checker:
    return Checker([make_bundle({"main.rego": MAIN, "security.rego": SECURITY})])


def test_rule_kinds_come_from_name_prefixes(checker: Checker) -> None:
    assert sorted(checker.rules["main"]) == [
        ("deny", "failure"),
        ("deny_image", "failure"),
        ("violation", "failure"),
        ("violation_owner", "failure"),
        ("warn", "warning"),
        ("warn_size", "warning"),
    ]
    assert checker.rules["security"] == [("deny", "failure")]


def test_a_good_document_passes(checker: Checker) -> None:
    [result] = checker.check("deploy.yaml", GOOD, ["main"])
    assert (result.filename, result.namespace) == ("deploy.yaml", "main")
    assert (result.failures, result.warnings, result.exceptions) == ([], [], [])
    assert result.successes == 6


def test_failures_with_string_and_msg_messages(checker: Checker) -> None:
    bad = {**GOOD, "image": "svc:latest", "replicas": 0, "owner": "bob"}
    del bad["name"]
    [result] = checker.check("deploy.yaml", bad, ["main"])
    assert sorted(result.failures) == [
        "image tag `latest` is not allowed",
        "name is required",
        "owner must be a team",
        "replicas must be positive",
    ]
    assert result.warnings == []
    assert result.successes == 2


def test_warnings_are_not_failures(checker: Checker) -> None:
    noisy = {**GOOD, "size": 11}
    del noisy["description"]
    [result] = checker.check("deploy.yaml", noisy, ["main"])
    assert result.failures == []
    assert sorted(result.warnings) == ["no description", "size 11 is large"]


def test_namespaces_are_checked_separately(checker: Checker) -> None:
    doc = {**GOOD, "privileged": True}
    main, security, missing = checker.check("d.yaml", doc, ["main", "security", "nothing.here"])
    assert (main.namespace, main.failures) == ("main", [])
    assert (security.namespace, security.failures) == (
        "security",
        ["privileged containers are forbidden"],
    )
    assert (missing.namespace, missing.failures, missing.successes) == ("nothing.here", [], 0)
    [only_security] = checker.check("d.yaml", doc, ["security"])
    assert only_security.failures == ["privileged containers are forbidden"]


def test_one_checker_serves_many_documents(checker: Checker) -> None:
    first = checker.check("a.yaml", {**GOOD, "privileged": True}, ["security"])
    second = checker.check("b.yaml", GOOD, ["security"])
    assert first[0].failures and not second[0].failures


def test_undefined_and_boolean_rules(make_bundle: Make) -> None:
    src = """package main

deny_flag := true if input.flag

deny_named := "named failure" if input.named
"""
    checker = Checker([make_bundle({"p.rego": src})])
    [clean] = checker.check("x", {}, ["main"])
    assert (clean.failures, clean.successes) == ([], 2)
    [dirty] = checker.check("x", {"flag": True, "named": True}, ["main"])
    assert sorted(dirty.failures) == ["named failure", "rule evaluated to true"]


def test_object_without_msg_is_shown_as_json(make_bundle: Make) -> None:
    src = 'package main\n\ndeny contains {"code": 7} if true\n'
    [result] = Checker([make_bundle({"p.rego": src})]).check("x", {}, ["main"])
    assert result.failures == ['{"code": 7}']


def test_runtime_error_is_an_exception_not_a_pass(make_bundle: Make) -> None:
    src = 'package main\n\ndeny contains "x" if 1 / input.zero > 0\n\nwarn contains "w" if true\n'
    [result] = Checker([make_bundle({"p.rego": src})]).check("x", {"zero": 0}, ["main"])
    assert len(result.exceptions) == 1
    assert "divide by zero" in result.exceptions[0]
    assert (result.failures, result.warnings, result.successes) == ([], ["w"], 0)


def test_rules_can_use_bundle_data(make_bundle: Make) -> None:
    src = 'package main\n\ndeny contains "unknown team" if not input.team in data.teams\n'
    checker = Checker([make_bundle({"p.rego": src, "data.json": '{"teams": ["a", "b"]}'})])
    assert checker.check("x", {"team": "a"}, ["main"])[0].failures == []
    assert checker.check("x", {"team": "z"}, ["main"])[0].failures == ["unknown team"]


def test_policies_that_do_not_compile(make_bundle: Make) -> None:
    with pytest.raises(PolicyError):
        Checker([make_bundle({"p.rego": "package main\n\ndeny contains if {\n"})])
