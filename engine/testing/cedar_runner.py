"""Cedar tests in the two formats the Cedar project uses.

(a) A JSON file with ``policies``, ``entities``, ``schema``, ``shouldValidate``
and ``requests`` (each with ``principal``, ``action``, ``resource``,
``context``, expected ``decision``, ``reason`` and ``errors``), paths resolved
against the working directory and then the file's folder.

(b) A folder with ``policies.cedar``, ``entities.json``, a schema, optional
template links (``linked.json`` or ``*.cedarlinks.json``) and requests under
``ALLOW/*.json`` and ``DENY/*.json``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import cedarpy

from engine.bundle.bundle import SourceFile
from engine.cedar import parse_schema
from engine.errors import PolicyError
from engine.testing.report import Outcome, TestResult
from engine.verdict import clean_engine_message


class _LoadError(Exception):
    pass


def _resolve(value: str, folder: Path) -> Path:
    for candidate in (Path(value), folder / value):
        if candidate.exists():
            return candidate
    raise _LoadError(f"`{value}` not found (looked in the working directory and `{folder}`)")


def _id_names(text: str) -> dict[str, str]:
    """Positional policy id → its @id annotation (or itself)."""
    est = json.loads(cedarpy.policies_to_json_str(text))
    names = {}
    for group in ("staticPolicies", "templates"):
        for pid, policy in est.get(group, {}).items():
            names[pid] = str((policy.get("annotations") or {}).get("id", pid))
    return names


def _link(policies: cedarpy.PolicySet, links_file: Path | None) -> cedarpy.PolicySet:
    if links_file is None:
        return policies
    links = json.loads(links_file.read_text())
    return policies.with_linked_batch(
        [
            {
                "template_id": k["template_id"],
                "new_id": k.get("link_id", k.get("new_id")),
                "values": k.get("args", k.get("values")),
            }
            for k in links
        ]
    )


class _Suite:
    def __init__(self, policies: Path, entities: Path, schema: Path | None, links: Path | None):
        self.text = policies.read_text()
        try:
            self.policies = _link(cedarpy.PolicySet.from_str(self.text), links)
        except (ValueError, KeyError) as exc:
            raise _LoadError(f"`{policies}`: {clean_engine_message(str(exc))}") from exc
        self.names = _id_names(self.text)
        self.entities = json.loads(entities.read_text())
        self.schema = (
            parse_schema(SourceFile(str(schema), schema.read_text()))
            if schema is not None
            else None
        )

    def validates(self) -> tuple[bool, str]:
        if self.schema is None:
            return False, "no schema given"
        result = cedarpy.validate_policies(self.text, self.schema)
        return result.validation_passed, "; ".join(str(e) for e in result.errors)

    def check(self, request: dict[str, Any], expected: dict[str, Any]) -> tuple[Outcome, str]:
        ctx = request.get("context") or {}
        query = {k: request[k] for k in ("principal", "action", "resource")}
        query["context"] = ctx
        result = cedarpy.is_authorized(query, self.policies, self.entities)
        decision = result.decision.value.lower() if result.decision else "nodecision"
        want = str(expected.get("decision", "")).lower()
        if decision != want:
            got_reasons = [self.names.get(r, r) for r in result.diagnostics.reasons]
            return (
                Outcome.FAILED,
                f"expected {want}, got {decision} (reasons {got_reasons}, errors {result.diagnostics.errors})",
            )
        if "reason" in expected:
            got = {self.names.get(r, r) for r in result.diagnostics.reasons}
            raw = set(result.diagnostics.reasons)
            want_reasons = set(expected["reason"])
            if want_reasons not in (got, raw):
                return Outcome.FAILED, f"expected reasons {sorted(want_reasons)}, got {sorted(got)}"
        if "errors" in expected and len(expected["errors"]) != len(result.diagnostics.errors):
            return (
                Outcome.FAILED,
                f"expected errors {expected['errors']}, got {result.diagnostics.errors}",
            )
        return Outcome.PASSED, ""


def _timed(name: str, file: str, fn: Any) -> TestResult:
    started = time.perf_counter()
    try:
        outcome, message = fn()
    except (ValueError, KeyError, TypeError, RuntimeError) as exc:
        outcome, message = Outcome.ERRORED, clean_engine_message(str(exc))
    return TestResult(name, file, outcome, message, (time.perf_counter() - started) * 1e6)


def run_json_file(path: Path) -> list[TestResult]:
    """Format (a): one JSON test file."""
    file = str(path)
    try:
        doc = json.loads(path.read_text())
        folder = path.parent
        schema = _resolve(doc["schema"], folder) if doc.get("schema") else None
        suite = _Suite(
            _resolve(doc["policies"], folder), _resolve(doc["entities"], folder), schema, None
        )
    except (_LoadError, PolicyError, ValueError, KeyError) as exc:
        return [TestResult("load", file, Outcome.ERRORED, str(exc))]
    results = []
    if "shouldValidate" in doc:

        def validation() -> tuple[Outcome, str]:
            ok, message = suite.validates()
            if ok == bool(doc["shouldValidate"]):
                return Outcome.PASSED, ""
            return (
                Outcome.FAILED,
                f"shouldValidate is {doc['shouldValidate']}, validation said {ok}: {message}",
            )

        results.append(_timed("validation", file, validation))
    for i, request in enumerate(doc.get("requests", [])):
        name = str(request.get("description") or f"request {i}")
        results.append(_timed(name, file, lambda r=request: suite.check(r, r)))
    return results


def _first(folder: Path, names: tuple[str, ...]) -> Path | None:
    for name in names:
        found = sorted(folder.glob(name))
        if found:
            return found[0]
    return None


def run_folder(folder: Path) -> list[TestResult]:
    """Format (b): a folder with ALLOW/ and DENY/ requests."""
    file = str(folder)
    try:
        policies = _first(folder, ("policies.cedar", "*.cedar"))
        entities = _first(folder, ("entities.json",))
        if policies is None or entities is None:
            raise _LoadError("a Cedar test folder needs `policies.cedar` and `entities.json`")
        schema = _first(folder, ("*.cedarschema", "*.cedarschema.json"))
        links = _first(folder, ("linked.json", "*.cedarlinks.json"))
        suite = _Suite(policies, entities, schema, links)
    except (_LoadError, PolicyError, ValueError, KeyError) as exc:
        return [TestResult("load", file, Outcome.ERRORED, str(exc))]
    results = []
    if schema is not None:

        def validation() -> tuple[Outcome, str]:
            ok, message = suite.validates()
            return (Outcome.PASSED, "") if ok else (Outcome.FAILED, message)

        results.append(_timed("validation", file, validation))
    for expected in ("ALLOW", "DENY"):
        for request_file in sorted((folder / expected).glob("*.json")):
            name = f"{expected}/{request_file.name}"
            results.append(
                _timed(
                    name,
                    file,
                    lambda f=request_file, e=expected: suite.check(
                        json.loads(f.read_text()), {"decision": e}
                    ),
                )
            )
    return results
