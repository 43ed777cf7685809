"""Rego tests with OPA's semantics, run in regorus.

A ``test_*`` rule passes when it evaluates to true; false or undefined fails;
an evaluation error is an error. ``todo_test_*`` rules are skipped. A
parameterised test (a rule with a ref head, ``test_x[name] if ...``) reports
each case: for a set every member is a passing case; for an object every key
is a case that passes when its value is true.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from engine.bundle.bundle import Bundle
from engine.rego import RegoOptions, eval_json, new_engine
from engine.regoast import coverable_lines, package_of, rule_names
from engine.testing.report import FileCoverage, Outcome, TestResult
from engine.verdict import clean_engine_message


def _cases(name: str, value: Any) -> Iterator[tuple[str, bool, str]]:
    if isinstance(value, set | frozenset | list):
        if not value:
            yield name, False, "no case of the parameterised test passed"
        for case in sorted(value, key=str):
            yield f"{name}[{json.dumps(case, default=str)}]", True, ""
    elif isinstance(value, dict):
        for key in sorted(value, key=str):
            ok = value[key] is True
            yield (
                f"{name}[{json.dumps(key, default=str)}]",
                ok,
                "" if ok else f"case evaluated to {value[key]!r}",
            )
    elif value is True:
        yield name, True, ""
    elif value is None:
        yield name, False, "test is undefined"
    else:
        yield name, False, f"test evaluated to {json.dumps(value, default=str)}"


def run_rego_tests(
    bundle: Bundle,
    root: Path,
    options: RegoOptions,
    run: re.Pattern[str] | None,
    coverage: bool,
) -> tuple[list[TestResult], list[FileCoverage]]:
    """Run every test of ``bundle`` (files shown relative to ``root``)."""
    if not bundle.rego_tests and not (coverage and bundle.rego):
        return [], []
    if bundle.manifest.rego_version == 0:
        options = RegoOptions(True, options.capabilities)
    engine, ast = new_engine([*bundle.rego, *bundle.rego_tests], bundle.data, options)
    engine.set_enable_coverage(coverage)
    test_files = {t.path for t in bundle.rego_tests}
    results: list[TestResult] = []
    for module in ast:
        file = module.get("source", {}).get("file", "")
        if file not in test_files:
            continue
        package = package_of(module)
        shown = str(root / file) if root != Path(".") else file
        for rule in sorted(rule_names(module)):
            full = f"data.{package}.{rule}"
            if not rule.startswith(("test_", "todo_test_")) or (run and not run.search(full)):
                continue
            if rule.startswith("todo_"):
                results.append(TestResult(full, shown, Outcome.SKIPPED))
                continue
            started = time.perf_counter()
            try:
                value = eval_json(engine, full)
            except (RuntimeError, ValueError, TypeError) as exc:
                results.append(
                    TestResult(full, shown, Outcome.ERRORED, clean_engine_message(str(exc)))
                )
                continue
            took = (time.perf_counter() - started) * 1e6
            for name, ok, message in _cases(full, value):
                outcome = Outcome.PASSED if ok else Outcome.FAILED
                results.append(TestResult(name, shown, outcome, message, took))
    return results, _coverage(engine, ast, test_files, root) if coverage else []


def _coverage(
    engine: Any, ast: list[dict[str, Any]], test_files: set[str], root: Path
) -> list[FileCoverage]:
    """Coverage of every non-test file, including files no test reached (0%)."""
    report = json.loads(engine.get_coverage_report_as_json())
    reached = {entry.get("path", ""): entry for entry in report.get("files", [])}
    out = []
    for module in ast:
        path = module.get("source", {}).get("file", "")
        if path in test_files:
            continue
        entry = reached.get(path)
        if entry is not None:
            covered, missed = tuple(entry.get("covered", [])), tuple(entry.get("not_covered", []))
        else:
            covered, missed = (), tuple(sorted(coverable_lines(module)))
        out.append(FileCoverage(str(root / path) if root != Path(".") else path, covered, missed))
    return out
