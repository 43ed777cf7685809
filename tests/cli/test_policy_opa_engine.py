"""`aion policy test --engine opa`: the same Rego tests, run by the real OPA binary."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import pytest

from tests.conftest import POLICIES

FAILING_TEST = """package aion.agent.extra_test
import rego.v1
test_wrong if 1 == 2
todo_test_later if true
"""


@pytest.fixture(autouse=True)
def _opa_on_env(opa_bin: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AION_OPA_BIN", str(opa_bin))


def _outcomes(report: dict[str, Any]) -> dict[str, str]:
    """Outcome per test, named `file::name` (Cedar case names repeat across files)."""
    return {f"{r['file']}::{r['name']}": r["outcome"] for r in report["results"]}


def _rego(report: dict[str, Any]) -> dict[str, str]:
    return {r["name"]: r["outcome"] for r in report["results"] if r["name"].startswith("data.")}


def test_shipped_tests_have_the_same_names_and_counts_in_opa(aion: Callable[..., Any]) -> None:
    embedded = json.loads(aion("policy", "test", POLICIES, "--format", "json").out)
    in_opa = json.loads(aion("policy", "test", POLICIES, "--engine", "opa", "--format", "json").out)
    rego = {n for n in _outcomes(embedded) if "::data." in n}
    cedar = set(_outcomes(embedded)) - rego
    assert len(rego) >= 50 and len(cedar) >= 10
    assert set(_outcomes(in_opa)) == rego | cedar
    assert len(in_opa["results"]) == len(embedded["results"])
    assert in_opa["engine"] == "opa"
    assert in_opa["cedar_skipped"] == len(cedar), "Cedar tests are counted, not dropped"
    assert {n for n, o in _outcomes(in_opa).items() if o == "skipped"} == cedar
    skipped = [r for r in in_opa["results"] if r["outcome"] == "skipped"]
    assert {r["message"] for r in skipped} == {"Cedar test: OPA runs Rego only"}


def test_shipped_rego_tests_pass_in_opa(aion: Callable[..., Any]) -> None:
    """Every shipped Rego test passes in OPA as it does embedded (see docs/opa-parity.md)."""
    result = aion("policy", "test", POLICIES, "--engine", "opa", "--format", "json")
    report = json.loads(result.out)
    failing = sorted(n for n, o in _rego(report).items() if o in ("failed", "errored"))
    assert failing == [], (
        "shipped Rego tests that pass embedded but not in OPA (OPA does not let `not` succeed "
        "over a call whose argument is undefined; see docs/opa-parity.md)"
    )
    assert result.code == 0


def test_a_failing_test_fails_in_both_engines(aion: Callable[..., Any], demo_bundle: Path) -> None:
    (demo_bundle / "extra_test.rego").write_text(FAILING_TEST)
    outcomes = {}
    for engine in ("embedded", "opa"):
        result = aion("policy", "test", demo_bundle, "--engine", engine, "--format", "json")
        assert result.code == 1, engine
        outcomes[engine] = _rego(json.loads(result.out))
    assert outcomes["opa"] == outcomes["embedded"]
    assert outcomes["opa"]["data.aion.agent.extra_test.test_wrong"] == "failed"
    assert outcomes["opa"]["data.aion.agent.extra_test.todo_test_later"] == "skipped"
    assert outcomes["opa"]["data.aion.agent.deploy_test.test_model_allowed"] == "passed"


def test_formats_run_filter_and_verbose(aion: Callable[..., Any], demo_bundle: Path) -> None:
    (demo_bundle / "extra_test.rego").write_text(FAILING_TEST)
    text = aion("policy", "test", demo_bundle, "--engine", "opa", "-v")
    assert "PASSED" in text.out and "test_model_allowed" in text.out
    assert "FAILED" in text.out and "test_wrong" in text.out
    assert "engine: opa" in text.err

    quiet = aion("policy", "test", demo_bundle, "--engine", "opa")
    assert "test_model_allowed" not in quiet.out and "test_wrong" in quiet.out

    only = aion("policy", "test", demo_bundle, "--engine", "opa", "--run", "no_model")
    assert only.code == 0
    assert "1 passed, 0 failed, 0 errored, 0 skipped" in only.out

    junit = aion("policy", "test", demo_bundle, "--engine", "opa", "--format", "junit")
    suite = ET.fromstring(junit.out).find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("4", "1", "1")


def test_parameterised_tests_name_each_case_as_embedded(
    aion: Callable[..., Any], demo_bundle: Path
) -> None:
    (demo_bundle / "param_test.rego").write_text(
        "package aion.agent.param_test\nimport rego.v1\n"
        'test_cases[name] if some name in ["a", "b"]\n'
        'test_checks[k] := v if some k, v in {"good": true, "bad": false}\n'
    )
    results = {}
    for engine in ("embedded", "opa"):
        report = json.loads(
            aion("policy", "test", demo_bundle, "--engine", engine, "--format", "json").out
        )
        results[engine] = {n: o for n, o in _rego(report).items() if "param_test" in n}
    assert results["opa"] == results["embedded"]
    assert results["opa"]['data.aion.agent.param_test.test_checks["bad"]'] == "failed"
    assert results["opa"]['data.aion.agent.param_test.test_cases["a"]'] == "passed"


def test_coverage_comes_from_opa(aion: Callable[..., Any], demo_bundle: Path) -> None:
    full = aion("policy", "test", demo_bundle, "--engine", "opa", "--coverage", "--format", "json")
    assert full.code == 0, full.err
    files = json.loads(full.out)["coverage"]["files"]
    assert [Path(f["file"]).name for f in files] == ["deploy.rego"]
    (demo_bundle / "more.rego").write_text(
        'package aion.agent.more\nimport rego.v1\ndeny contains "never tested" if input.x\n'
    )
    below = aion(
        "policy", "test", demo_bundle, "--engine", "opa", "--coverage", "--threshold", "100"
    )
    assert below.code == 1
    assert "below the threshold" in below.err and "more.rego" in below.out


def test_rego_syntax_error_is_reported(aion: Callable[..., Any], demo_bundle: Path) -> None:
    (demo_bundle / "broken.rego").write_text("package aion.agent.broken\ndeny contains if {\n")
    result = aion("policy", "test", demo_bundle, "--engine", "opa")
    assert result.code == 2
    assert f"{demo_bundle}/broken.rego:2: rego_parse_error" in result.err


def test_missing_opa_binary_exits_2(
    aion: Callable[..., Any], demo_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "no-such-opa"
    by_flag = aion("policy", "test", demo_bundle, "--engine", "opa", "--opa-bin", missing)
    assert by_flag.code == 2 and f"`{missing}` does not exist" in by_flag.err

    monkeypatch.delenv("AION_OPA_BIN")
    monkeypatch.setenv("PATH", str(tmp_path))
    nowhere = aion("policy", "test", demo_bundle, "--engine", "opa")
    assert nowhere.code == 2 and "the OPA binary was not found" in nowhere.err


def test_explicit_opa_bin_wins(
    aion: Callable[..., Any], demo_bundle: Path, opa_bin: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AION_OPA_BIN", "/nonexistent/opa")
    result = aion("policy", "test", demo_bundle, "--engine", "opa", "--opa-bin", opa_bin)
    assert result.code == 0, result.err
    assert "2 passed, 0 failed" in result.out


def test_capabilities_are_the_embedded_engines_only(
    aion: Callable[..., Any], demo_bundle: Path
) -> None:
    result = aion("policy", "test", demo_bundle, "--engine", "opa", "--capability", "http.send")
    assert result.code == 2
    assert "--capability applies to the embedded engine" in result.err


def test_a_relative_opa_bin_works(
    aion: Callable[..., Any], opa_bin: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AION_OPA_BIN")
    monkeypatch.chdir(opa_bin.parent)
    result = aion(
        "policy", "test", POLICIES / "model-privacy", "--engine", "opa", "--opa-bin", "./opa"
    )
    assert result.code == 0, result.err
    assert "0 failed" in result.out and "passed" in result.out
