"""The `.manifest`, data placement and bundle roots."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest

from engine import Bundle, BundleError, BundleRootConflict, compile_bundles
from engine.bundle import Manifest, parse_manifest

DEPLOY_READS_DATA = """package aion.agent.deploy

deny contains "over the limit" if input.context.n > data.aion.limits.max
"""


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b"{not json", "not valid JSON"),
        (b"[]", "Expected `object`"),
        (b'{"revision": "1", "owner": "me"}', "unknown field `owner`"),
        (b'{"rego_version": 2}', "rego_version must be 0 or 1"),
        (b'{"roots": ["/aion"]}', "must not start or end with `/`"),
        (b'{"roots": ["aion/"]}', "must not start or end with `/`"),
        (b'{"roots": ["aion//agent"]}', "must not start or end with `/`"),
        (b'{"roots": "aion"}', "Expected `array`"),
        (b'{"revision": 7}', "Expected `str`"),
    ],
)
def test_malformed_manifest_names_the_manifest(
    raw: bytes, why: str, make_bundle: Callable[..., Bundle]
) -> None:
    with pytest.raises(BundleError, match=r"`\.manifest`") as info:
        make_bundle({".manifest": raw, "p.rego": "package aion.x\n"})
    assert why in info.value.message
    assert info.value.code == "bundle_invalid"


def test_missing_manifest_gives_opa_defaults() -> None:
    manifest = parse_manifest(None)
    assert (manifest.roots, manifest.revision, manifest.rego_version) == ([""], "", 1)


def test_manifest_fields_are_read() -> None:
    manifest = parse_manifest(
        b'{"revision": "r9", "roots": ["aion/agent", "aion/tool"], "metadata": {"name": "n"}}'
    )
    assert manifest.revision == "r9"
    assert manifest.roots == ["aion/agent", "aion/tool"]
    assert manifest.metadata == {"name": "n"}


# --- data placement --------------------------------------------------------------------------


def test_data_file_lands_at_its_directory_path(make_bundle: Callable[..., Bundle]) -> None:
    bundle = make_bundle(
        {
            "aion/limits/data.json": '{"max": 3}',
            "aion/teams/data.yaml": "owners:\n  - alice\n",
            "data.json": '{"top": true}',
        }
    )
    assert bundle.data == {
        "aion": {"limits": {"max": 3}, "teams": {"owners": ["alice"]}},
        "top": True,
    }


def test_placed_data_is_visible_to_rego(
    make_bundle: Callable[..., Bundle],
    make_request: Callable[..., Any],
    decide_now: Callable[..., Any],
) -> None:
    bundle = make_bundle({"aion/limits/data.json": '{"max": 3}', "p.rego": DEPLOY_READS_DATA})
    policy_set = compile_bundles([bundle])
    assert decide_now(policy_set, make_request(context={"n": 3})).allowed
    denied = decide_now(policy_set, make_request(context={"n": 4}))
    assert [r.message for r in denied.reasons] == ["over the limit"]


@pytest.mark.parametrize("nested_dir", ["a", "z"])
def test_data_files_merge_like_opa_whatever_their_order(
    nested_dir: str, make_bundle: Callable[..., Bundle]
) -> None:
    # `x/a/data.json` sorts before `x/data.json`, `x/z/data.json` after it: same result.
    bundle = make_bundle({"x/data.json": '{"b": 1}', f"x/{nested_dir}/data.json": "2"})
    assert bundle.data == {"x": {"b": 1, nested_dir: 2}}


def test_the_same_data_leaf_twice_is_an_error(make_bundle: Callable[..., Bundle]) -> None:
    with pytest.raises(BundleError, match="defined twice"):
        make_bundle({"x/data.json": '{"a": 1}', "x/a/data.json": "2"})


def test_top_level_data_must_be_an_object(make_bundle: Callable[..., Bundle]) -> None:
    with pytest.raises(BundleError, match="must be an object"):
        make_bundle({"data.json": "[1, 2]"})


@pytest.mark.parametrize(
    ("name", "raw"), [("data.json", "{nope"), ("d/data.yaml", "a: [1, 2\n"), ("data.json", b"\xff")]
)
def test_unparsable_data_names_the_file(
    name: str, raw: str | bytes, make_bundle: Callable[..., Bundle]
) -> None:
    with pytest.raises(BundleError, match=f"`{name}`: invalid data document"):
        make_bundle({name: raw})


def test_data_outside_the_roots_is_a_root_conflict(make_bundle: Callable[..., Bundle]) -> None:
    with pytest.raises(BundleRootConflict, match=r"`other/data\.json`") as info:
        make_bundle({"other/data.json": "{}"}, manifest={"roots": ["aion"]})
    assert info.value.code == "bundle_root_conflict"


def test_top_level_data_is_checked_key_by_key(make_bundle: Callable[..., Bundle]) -> None:
    manifest = {"roots": ["aion/limits"]}
    inside = make_bundle({"data.json": '{"aion": {"limits": {"max": 1}}}'}, manifest=manifest)
    assert inside.data == {"aion": {"limits": {"max": 1}}}
    with pytest.raises(BundleRootConflict, match="`aion/other`"):
        make_bundle({"data.json": '{"aion": {"limits": {}, "other": 1}}'}, manifest=manifest)
    with pytest.raises(BundleRootConflict):
        make_bundle({"data.json": '{"aion": 5}'}, manifest=manifest)


def test_root_prefix_is_segment_wise(make_bundle: Callable[..., Bundle]) -> None:
    # `aion/agentx` is not inside the root `aion/agent`.
    with pytest.raises(BundleRootConflict):
        make_bundle({"aion/agentx/data.json": "{}"}, manifest={"roots": ["aion/agent"]})


# --- packages and roots at compile time ------------------------------------------------------


def test_package_outside_roots_is_refused_at_compile(make_bundle: Callable[..., Bundle]) -> None:
    bundle = make_bundle(
        {"p.rego": "package aion.tool.invoke\n\ndeny contains 1 if false\n"},
        manifest={"roots": ["aion/agent"]},
    )
    with pytest.raises(BundleRootConflict, match=r"package in `p\.rego` `aion/tool/invoke`"):
        compile_bundles([bundle])


def test_package_inside_roots_compiles(make_bundle: Callable[..., Bundle]) -> None:
    bundle = make_bundle(
        {"p.rego": "package aion.agent.deploy\n\ndeny contains 1 if false\n"},
        manifest={"roots": ["aion/agent"]},
    )
    assert compile_bundles([bundle]).participating("agent.deploy") == ["rego"]


@pytest.mark.parametrize(
    ("roots_a", "roots_b"),
    [(["aion"], ["aion/agent"]), (["aion/agent"], ["aion"]), ([""], ["x"]), (["a", "b"], ["b"])],
)
def test_overlapping_roots_conflict(
    roots_a: list[str], roots_b: list[str], make_bundle: Callable[..., Bundle]
) -> None:
    a = make_bundle(
        {f"{roots_a[0]}/data.json".lstrip("/"): '{"k": 1}'}, "first", {"roots": roots_a}
    )
    b = make_bundle(
        {f"{roots_b[0]}/data.json".lstrip("/"): '{"k": 1}'}, "second", {"roots": roots_b}
    )
    with pytest.raises(BundleRootConflict, match="bundles `first` and `second` have overlapping"):
        compile_bundles([a, b])


def test_disjoint_roots_compile_together(
    make_bundle: Callable[..., Bundle],
    make_request: Callable[..., Any],
    decide_now: Callable[..., Any],
) -> None:
    deploy = make_bundle(
        {"d.rego": 'package aion.agent.deploy\n\ndeny contains "d" if input.context.d\n'},
        "deploy",
        {"roots": ["aion/agent/deploy"], "revision": "1"},
    )
    invoke = make_bundle(
        {"i.rego": 'package aion.tool.invoke\n\ndeny contains "i" if input.context.i\n'},
        "invoke",
        {"roots": ["aion/tool/invoke"], "revision": "2"},
    )
    policy_set = compile_bundles([deploy, invoke])
    assert policy_set.revisions == {"deploy": "1", "invoke": "2"}
    reasons = decide_now(policy_set, make_request("tool.invoke", context={"i": True})).reasons
    assert [(r.bundle, r.message) for r in reasons] == [("invoke", "i")]


def test_bundles_without_rego_or_data_may_share_roots(
    make_bundle: Callable[..., Bundle], cedar_schema: str
) -> None:
    rego = make_bundle({"p.rego": "package aion.agent.deploy\n\ndeny := set()\n"}, "rego")
    cedar = make_bundle(
        {"s.cedarschema": cedar_schema, "p.cedar": "permit(principal, action, resource);"},
        "cedar",
    )
    assert compile_bundles([rego, cedar]).participating("agent.deploy") == ["rego", "cedar"]


def test_duplicate_data_keys_across_bundles_are_rejected(
    make_bundle: Callable[..., Bundle],
) -> None:
    a = make_bundle({"shared/data.json": "1"}, "a")
    b = make_bundle({"shared/data.json": "2"}, "b")
    with pytest.raises(BundleError, match="overlapping roots"):
        compile_bundles([a, b])
    # Even when the roots claim to be disjoint, the data merge itself refuses a clash.
    a2 = dataclasses.replace(a, manifest=Manifest(roots=["only/a"]))
    b2 = dataclasses.replace(b, manifest=Manifest(roots=["only/b"]))
    with pytest.raises(BundleError, match="data key `shared` is already defined"):
        compile_bundles([a2, b2])


def test_bundle_names_must_be_unique(make_bundle: Callable[..., Bundle]) -> None:
    a = make_bundle({"x/data.json": "1"}, "same", {"roots": ["x"]})
    b = make_bundle({"y/data.json": "1"}, "same", {"roots": ["y"]})
    with pytest.raises(BundleError, match="bundle names must be unique"):
        compile_bundles([a, b])


def test_compiling_together_does_not_leak_data_between_bundles(
    make_bundle: Callable[..., Bundle],
    make_request: Callable[..., Any],
    decide_now: Callable[..., Any],
) -> None:
    policy = "package x.a\n\nimport rego.v1\n\nsibling := data.x.b.v\n"
    deploy = 'package aion.agent.deploy\n\ndeny contains "sees b" if data.x.b.v == 2\n'
    a = make_bundle(
        {"x/a/data.json": '{"v": 1}', "a.rego": policy, "d.rego": deploy},
        "a",
        {"roots": ["x/a", "aion"]},
    )
    b = make_bundle({"x/b/data.json": '{"v": 2}'}, "b", {"roots": ["x/b"]})
    together = compile_bundles([a, b])
    assert [r.message for r in decide_now(together, make_request()).reasons] == ["sees b"]
    # `a` alone (another tenant's policy set) must not see what `b` contributed.
    assert a.data == {"x": {"a": {"v": 1}}}
    assert decide_now(compile_bundles([a]), make_request()).allowed
