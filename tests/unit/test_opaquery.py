"""Data paths are plain references or refused; results read as OPA users read them."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.errors import InvalidInput
from engine.opaquery import (
    MAX_PATH_SEGMENTS,
    interpret_result,
    parse_data_path,
    path_in_roots,
    rego_ref,
)


@pytest.mark.parametrize(
    ("path", "segments"),
    [
        ("aion/agent/deploy", ("aion", "agent", "deploy")),
        ("/aion/agent/deploy/deny/", ("aion", "agent", "deploy", "deny")),
        ("_x/y1", ("_x", "y1")),
    ],
)
def test_plain_references_parse(path: str, segments: tuple[str, ...]) -> None:
    assert parse_data_path(path) == segments
    assert rego_ref(segments) == "data." + ".".join(segments)


@pytest.mark.parametrize(
    "path",
    [
        "",
        "/",
        "aion//agent",
        "aion/agent/deploy/deny == x",
        "aion/agent/deploy/deny;x",
        "aion[0]",
        'aion["agent"]',
        "aion.agent",
        "aion/..",
        "aion/1agent",
        "aion/agent-x",
        "aion/not",
        "aion/with",
        "aion/agent\n",
        "aïon/agent",
        "/".join(["a"] * (MAX_PATH_SEGMENTS + 1)),
        "a" * 600,
    ],
)
def test_anything_else_is_refused(path: str) -> None:
    with pytest.raises(InvalidInput):
        parse_data_path(path)


@given(st.text(max_size=40))
def test_an_accepted_path_is_only_identifiers(path: str) -> None:
    try:
        segments = parse_data_path(path)
    except InvalidInput:
        return
    for segment in segments:
        assert segment.isidentifier()
        assert segment.isascii()
    assert "/".join(segments) == path.strip("/") or "/".join(segments) == path[1:-1]


def test_roots() -> None:
    assert path_in_roots(("aion", "agent", "deploy"), ["aion/agent"])
    assert not path_in_roots(("aion",), ["aion/agent"])
    assert not path_in_roots(("aionx", "agent"), ["aion"])
    assert path_in_roots(("anything",), [""])


@pytest.mark.parametrize(
    ("segments", "result", "defined", "allowed", "outcome"),
    [
        (("a", "deny"), [], True, True, "allow"),
        (("a", "deny"), ["no"], True, False, "deny"),
        (("a", "allow"), True, True, True, "allow"),
        (("a", "allow"), False, True, False, "deny"),
        (("a",), {"deny": [], "warn": ["w"]}, True, True, "allow"),
        (("a",), {"deny": ["x"], "allow": True}, True, False, "deny"),
        (("a",), {"violation": [{"msg": "m"}]}, True, False, "deny"),
        (("a",), {"allowed": True, "reasons": []}, True, True, "allow"),
        (("a",), {"deny": "not a set"}, True, False, "deny"),
        (("a", "limits"), {"max": 3}, True, False, "recorded"),
        (("a", "deny"), None, False, False, "deny"),
    ],
)
def test_results_are_read_fail_closed(
    segments: tuple[str, ...], result: object, defined: bool, allowed: bool, outcome: str
) -> None:
    found = interpret_result(segments, result, defined=defined)
    assert (found.allowed, found.outcome) == (allowed, outcome)
