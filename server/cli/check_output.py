"""Output formats of `aion policy check`, as Conftest users know them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from xml.etree import ElementTree as ET

from engine.check import CheckResult

FORMATS = ("text", "json", "junit", "github", "sarif")


def _text(results: Sequence[CheckResult]) -> str:
    lines = []
    for r in results:
        lines += [f"WARN - {r.filename} - {r.namespace} - {m}" for m in r.warnings]
        lines += [f"FAIL - {r.filename} - {r.namespace} - {m}" for m in r.failures]
        lines += [f"ERROR - {r.filename} - {r.namespace} - {m}" for m in r.exceptions]
    tests = sum(
        r.successes + len(r.failures) + len(r.warnings) + len(r.exceptions) for r in results
    )
    lines.append("")
    lines.append(
        f"{tests} tests, {sum(r.successes for r in results)} passed, "
        f"{sum(len(r.warnings) for r in results)} warnings, "
        f"{sum(len(r.failures) for r in results)} failures, "
        f"{sum(len(r.exceptions) for r in results)} exceptions"
    )
    return "\n".join(lines)


def _json(results: Sequence[CheckResult]) -> str:
    return json.dumps(
        [
            {
                "filename": r.filename,
                "namespace": r.namespace,
                "successes": r.successes,
                "warnings": [{"msg": m} for m in r.warnings],
                "failures": [{"msg": m} for m in r.failures],
                "exceptions": [{"msg": m} for m in r.exceptions],
            }
            for r in results
        ],
        indent=2,
    )


def _junit(results: Sequence[CheckResult]) -> str:
    root = ET.Element("testsuites")
    suite = ET.SubElement(root, "testsuite", name="aion policy check")
    count = failures = 0
    for r in results:
        for kind, messages in (
            ("failure", r.failures),
            ("warning", r.warnings),
            ("error", r.exceptions),
        ):
            for m in messages:
                count += 1
                case = ET.SubElement(
                    suite, "testcase", classname=r.filename, name=f"{r.namespace} - {m}"
                )
                if kind != "warning":
                    failures += 1
                    ET.SubElement(case, "failure" if kind == "failure" else "error", message=m)
        for i in range(r.successes):
            count += 1
            ET.SubElement(
                suite, "testcase", classname=r.filename, name=f"{r.namespace} - pass {i + 1}"
            )
    suite.set("tests", str(count))
    suite.set("failures", str(failures))
    return ET.tostring(root, encoding="unicode", xml_declaration=True)


def _github_escape(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _github(results: Sequence[CheckResult]) -> str:
    lines = []
    for r in results:
        lines += [
            f"::warning file={r.filename}::{_github_escape(f'{r.namespace}: {m}')}"
            for m in r.warnings
        ]
        lines += [
            f"::error file={r.filename}::{_github_escape(f'{r.namespace}: {m}')}"
            for m in r.failures + r.exceptions
        ]
    return "\n".join(lines)


def _sarif(results: Sequence[CheckResult]) -> str:
    items = []
    rules: dict[str, dict[str, object]] = {}
    for r in results:
        for level, messages in (("error", r.failures + r.exceptions), ("warning", r.warnings)):
            for m in messages:
                rule_id = f"{r.namespace}/{'deny' if level == 'error' else 'warn'}"
                rules.setdefault(rule_id, {"id": rule_id, "shortDescription": {"text": rule_id}})
                items.append(
                    {
                        "ruleId": rule_id,
                        "level": level,
                        "message": {"text": m},
                        "locations": [
                            {"physicalLocation": {"artifactLocation": {"uri": r.filename}}}
                        ],
                    }
                )
    doc = {
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [
            {"tool": {"driver": {"name": "aion", "rules": list(rules.values())}}, "results": items}
        ],
    }
    return json.dumps(doc, indent=2)


def render(results: Sequence[CheckResult], fmt: str) -> str:
    """``results`` in one of :data:`FORMATS`."""
    renderers = {"text": _text, "json": _json, "junit": _junit, "github": _github, "sarif": _sarif}
    return renderers[fmt](results)
