"""`aion policy validate`: every problem of a bundle, collected at once."""

from __future__ import annotations

from collections.abc import Callable

from engine import Bundle, RegoOptions
from engine.validate import validate_bundle

Make = Callable[..., Bundle]

MANIFEST = {"roots": ["aion/agent"]}
OK = 'package aion.agent.deploy\n\ndeny contains "x" if false\n'
NETWORK = (
    "package aion.agent.create\n\n"
    'deny contains "x" if http.send({"method": "get", "url": "u"}).status_code == 1\n'
)


def test_a_clean_bundle_has_no_problems(make_bundle: Make, cedar_schema: str) -> None:
    files = {
        "ok.rego": OK,
        "ok_test.rego": "package aion.agent.deploy_test\n\ntest_ok if true\n",
        "s.cedarschema": cedar_schema,
        "p.cedar": "permit(principal, action, resource);",
    }
    assert validate_bundle(make_bundle(files, manifest=MANIFEST)) == []


def test_problems_of_both_engines_are_collected(make_bundle: Make) -> None:
    files = {
        "bad.rego": "package aion.agent.deploy\n\ndeny contains if {\n",
        "net.rego": NETWORK,
        "p.cedar": "permit(principal, action, resource);",
    }
    problems = validate_bundle(make_bundle(files, "bundle-v", MANIFEST))
    assert [(p.file, p.code, p.line) for p in problems] == [
        ("bad.rego", "rego_parse_error", 3),
        ("net.rego", "rego_capability_error", 3),
        ("bundle-v", "cedar_schema_missing", None),
    ]


def test_packages_outside_the_roots(make_bundle: Make) -> None:
    files = {"ok.rego": OK, "outside.rego": "package aion.tool.invoke\n\ndeny := set()\n"}
    problems = validate_bundle(make_bundle(files, manifest=MANIFEST))
    assert [(p.file, p.code) for p in problems] == [("outside.rego", "bundle_root_conflict")]
    assert "aion/tool/invoke" in problems[0].message


def test_capabilities_and_versions_are_honoured(make_bundle: Make) -> None:
    assert (
        validate_bundle(
            make_bundle({"net.rego": NETWORK}), RegoOptions(capabilities=frozenset({"http.send"}))
        )
        == []
    )
    v0 = 'package aion.agent.deploy\n\ndeny["x"] { input.x }\n'
    assert [p.code for p in validate_bundle(make_bundle({"v0.rego": v0}))] == ["rego_parse_error"]
    assert validate_bundle(make_bundle({"v0.rego": v0}, manifest={"rego_version": 0})) == []
