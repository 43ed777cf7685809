"""The comparison's one allowance, number and escape spelling, allows nothing else."""

from __future__ import annotations

import json

import pytest

from tests.parity.parity_compare import difference, formatting_only


def _reason(message: str, policy: str = "p.deny") -> str:
    return json.dumps({"details": {}, "message": message, "policy": policy}, sort_keys=True)


def _answer(*messages: str) -> dict[str, list[str]]:
    return {"deny": sorted(_reason(m) for m in messages), "warn": [], "obligations": []}


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        ("budget 10000000 over", "budget 1e+07 over"),
        ("limit 10000000000", "limit 1.0e10"),
        ("tiny 0.0000001", "tiny 1e-07"),
        ("agent -0 belongs", "agent 0 belongs"),
        ('roles ["a\\u0000b"]', 'roles ["a\\x00b"]'),
        ('roles ["\x85"]', 'roles ["\\u0085"]'),
        ('roles ["\\ud9ba\\udf87"]', 'roles ["\\U0007eb87"]'),
        ('roles ["\\u0007\\u000b"]', 'roles ["\\a\\v"]'),
    ],
)
def test_spelling_of_numbers_and_escapes_is_a_format_difference(ours: str, theirs: str) -> None:
    assert formatting_only([_reason(ours)], [_reason(theirs)])
    assert (difference(_answer(ours), _answer(theirs)) or "").startswith("format:")


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        ("budget 10000000 over", "budget 10000001 over"),
        ("budget 1.5", "budget 15"),
        ("tool web_search", "tool browser"),
        ('roles ["a\\u0000b"]', 'roles ["a\\x01b"]'),
        ("agent x", "agent x "),
    ],
)
def test_anything_else_is_a_message_difference(ours: str, theirs: str) -> None:
    assert not formatting_only([_reason(ours)], [_reason(theirs)])
    assert (difference(_answer(ours), _answer(theirs)) or "").startswith("message:")


def test_a_big_integer_held_as_a_double_is_a_format_difference() -> None:
    def answer(tool: object) -> dict[str, list[str]]:
        reason = json.dumps({"details": {"tool": tool}, "message": "m", "policy": "p"})
        return {"deny": [reason], "warn": [], "obligations": []}

    assert (difference(answer(1e30), answer(10**30)) or "").startswith("format:")
    assert (difference(answer(1e30), answer(10**30 + 10**20)) or "").startswith("message:")


def test_same_answers_do_not_differ_and_other_rules_are_a_decision_difference() -> None:
    assert difference(_answer("a"), _answer("a")) is None
    other = {"deny": [_reason("a", "q.deny")], "warn": [], "obligations": []}
    assert (difference(_answer("a"), other) or "").startswith("decision:")
