"""`aion policy validate` finds `not` over an argument that may be undefined (OPA ≠ regorus)."""

from __future__ import annotations

import pytest

from engine.bundle.bundle import SourceFile
from engine.rego import DEFAULT_REGO_OPTIONS, new_engine
from engine.regolint import CODE, undefined_under_not

HEAD = "package p\nimport rego.v1\nimport data.lib as l\n"


def lint(body: str) -> list[tuple[int | None, str]]:
    text = HEAD + body
    _, ast = new_engine([SourceFile("p.rego", text)], {}, DEFAULT_REGO_OPTIONS)
    found = undefined_under_not(ast, {"p.rego": text})
    assert all(p.code == CODE and p.file == "p.rego" for p in found)
    return [(p.line, p.message.split("`")[5]) for p in found]


@pytest.mark.parametrize(
    ("body", "offending"),
    [
        ('deny contains "x" if not is_string(input.name)\n', "input.name"),
        ('deny contains "x" if not input.tool in {"a"}\n', "input.tool"),
        ('deny contains "x" if not count(input.items) > 0\n', "input.items"),
        ('deny contains "x" if not l.ok(input.a)\n', "input.a"),
        ('deny contains "x" if not "k" in l.allowed\n', "l.allowed"),
        ('deny contains "x" if not is_object(data.lib.m)\n', "data.lib.m"),
        ('m := input.model\ndeny contains "x" if not is_object(m)\n', "m"),
        ('m := input.model\ndeny contains "x" if not is_string(m.id)\n', "m.id"),
        ('deny contains "x" if not is_string(upper(input.n))\n', "input.n"),
        (
            'deny contains "x" if {\n\tsome v in input.vs\n\tnot v in input.allowed\n}\n',
            "input.allowed",
        ),
        # `input.m` is defined here, `input.m.id` need not be.
        (
            'deny contains "x" if {\n\tis_object(input.m)\n\tnot is_string(input.m.id)\n}\n',
            "input.m.id",
        ),
    ],
)
def test_flagged(body: str, offending: str) -> None:
    assert [name for _, name in lint(body)] == [offending]


@pytest.mark.parametrize(
    "body",
    [
        'deny contains "x" if not input.name\n',
        'deny contains "x" if not input.name == "a"\n',
        'deny contains "x" if not is_string(object.get(input, ["name"], null))\n',
        'deny contains "x" if {\n\tn := input.name\n\tnot is_string(n)\n}\n',
        'deny contains "x" if {\n\tsome t in input.tools\n\tnot t in {"a"}\n}\n',
        "f(v) if not is_string(v)\n",
        'default m := {}\nm := input.model\ndeny contains "x" if not is_object(m)\n',
        'm := input.model if input.model else := {}\ndeny contains "x" if not is_object(m)\n',
        's contains 1 if input.a\ndeny contains "x" if not 1 in s\n',
        # Needed elsewhere in the body: undefined fails the body in both engines alike.
        'deny contains msg if {\n\tnot input.t in {"a"}\n\tmsg := input.t\n}\n',
        'deny contains "x" if every k in input.ks { not is_string(k) }\n',
        'deny contains "x" if not is_string(input)\n',
        'deny contains "x" if not count([v | some v in input.vs]) > 0\n',
    ],
)
def test_not_flagged(body: str) -> None:
    assert lint(body) == []


def test_each_finding_names_its_line() -> None:
    body = 'a contains "x" if not is_string(input.a)\n\nb contains "y" if not is_string(input.b)\n'
    assert lint(body) == [(4, "input.a"), (6, "input.b")]
