"""What the `not`-over-undefined check flags really differs between OPA and regorus;
what it passes means the same in both."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import regorus

from engine.bundle.bundle import SourceFile
from engine.rego import DEFAULT_REGO_OPTIONS, new_engine
from engine.regolint import undefined_under_not

HEAD = "package p\nimport rego.v1\n"
FLAGGED = [
    'deny contains "x" if not is_string(input.name)\n',
    'deny contains "x" if not input.tool in {"a"}\n',
    'deny contains "x" if not count(input.items) > 0\n',
    'm := input.model\ndeny contains "x" if not is_object(m)\n',
]
PASSED = [
    'deny contains "x" if not is_string(object.get(input, ["name"], null))\n',
    'deny contains "x" if not object.get(input, ["tool"], null) in {"a"}\n',
    'deny contains "x" if not count(object.get(input, ["items"], [])) > 0\n',
    'deny contains "x" if not input.name\n',
    'deny contains msg if {\n\tnot input.t in {"a"}\n\tmsg := input.t\n}\n',
]


def _opa(opa_bin: Path, policy: Path) -> list[str]:
    out = subprocess.run(
        [str(opa_bin), "eval", "-d", str(policy), "--stdin-input", "-f", "json", "data.p.deny"],
        input="{}",
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return sorted(json.loads(out.stdout)["result"][0]["expressions"][0]["value"])


def _regorus(text: str) -> list[str]:
    engine = regorus.Engine()
    engine.add_policy("p.rego", text)
    engine.set_input_json("{}")
    return sorted(json.loads(engine.eval_rule_as_json("data.p.deny")))


def _flagged(text: str) -> bool:
    _, ast = new_engine([SourceFile("p.rego", text)], {}, DEFAULT_REGO_OPTIONS)
    return bool(undefined_under_not(ast, {"p.rego": text}))


@pytest.mark.parametrize("body", FLAGGED)
def test_flagged_rules_fire_in_regorus_only(opa_bin: Path, tmp_path: Path, body: str) -> None:
    text = HEAD + body
    (tmp_path / "p.rego").write_text(text)
    assert _flagged(text)
    assert _regorus(text) == ["x"]
    assert _opa(opa_bin, tmp_path / "p.rego") == []


@pytest.mark.parametrize("body", PASSED)
def test_passed_rules_mean_the_same(opa_bin: Path, tmp_path: Path, body: str) -> None:
    text = HEAD + body
    (tmp_path / "p.rego").write_text(text)
    assert not _flagged(text)
    assert _regorus(text) == _opa(opa_bin, tmp_path / "p.rego")
