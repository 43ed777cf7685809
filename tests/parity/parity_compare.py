"""Both engines' answers for one input, and how they differ; one bundle's whole run.

Ours is `CompiledRego.evaluate` (what `decide` evaluates) at a fixed `now`;
OPA's comes from the probe rule of a running `opa run --server` and is turned
into reasons by the same code as ours (`engine.verdict.reasons_of`), so only
evaluation can differ.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, given, settings

from engine.actions import REGO_COMMON_PACKAGE, rego_package
from engine.rego import CompiledRego
from engine.verdict import reasons_of
from tests.parity.opa_server import OpaServer
from tests.parity.parity_variants import VARIANTS, cases_for

NOW_NS = 1_795_000_000_000_000_000  # fixed; no shipped policy reads time


def _canonical(value: Any) -> Any:
    """JSON-equal values compare equal (OPA writes 2.0 as 2; sets come as lists)."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_canonical(v) for v in value]
    return value


def _key(value: Any) -> str:
    return json.dumps(_canonical(value), sort_keys=True, default=str)


def _cause(message: str) -> str:
    """An engine error without its location and value: `expects array/set/object`."""
    text = message.rsplit("error: ", 1)[-1]
    return re.sub(r"Got `.*`", "Got ...", text).strip()


def _reasons(reasons: list[Any]) -> list[str]:
    return sorted(
        _key({"policy": r.policy, "message": r.message, "details": r.details}) for r in reasons
    )


def _obligations(values: list[Any]) -> list[str]:
    return sorted(_key(v) for v in values)


def ours(rego: CompiledRego, action: str, doc: dict[str, Any]) -> dict[str, Any]:
    """The embedded answer, as `decide` sees it."""
    verdict = rego.evaluate(action, doc, NOW_NS)
    if verdict.errors:
        return {
            "error": sorted(e.code for e in verdict.errors),
            "why": sorted(_cause(e.message) for e in verdict.errors),
        }
    return {
        "deny": _reasons(verdict.denies),
        "warn": _reasons(verdict.warns),
        "obligations": _obligations(verdict.obligations),
    }


def theirs(action: str, status: int, body: Any) -> dict[str, Any]:
    """OPA's answer for the same packages, turned into reasons exactly as ours are."""
    if status != 200:
        return {"error": ["rego_eval_error"], "opa": body}
    result = body["result"]
    package = rego_package(action)
    if not result["deny"]:
        return {"error": ["undefined_result"]}

    def values(key: str) -> Any:
        found = result[key]
        return found[0] if found else None

    out: dict[str, Any] = {}
    for kind in ("deny", "warn"):
        out[kind] = _reasons(
            reasons_of(values(kind), "rego", f"{package}.{kind}", "")
            + reasons_of(values(f"common_{kind}"), "rego", f"{REGO_COMMON_PACKAGE}.{kind}", "")
        )
    obligations: list[Any] = []
    for key in ("obligations", "common_obligations"):
        value = values(key)
        if value is not None:
            items = value if isinstance(value, list) else [value]
            obligations += [i if isinstance(i, dict) else {"value": i} for i in items]
    out["obligations"] = _obligations(obligations)
    return out


_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")
_ESCAPE = re.compile(r"\\(?:x([0-9a-fA-F]{2})|u([0-9a-fA-F]{4})|U([0-9a-fA-F]{8}))")
_SURROGATES = re.compile(r"\\u(d[89ab][0-9a-f]{2})\\u(d[c-f][0-9a-f]{2})", re.IGNORECASE)
_SHORT = re.compile(r"\\([abfv])")
_SHORT_CHARS = {"a": "\x07", "b": "\x08", "f": "\x0c", "v": "\x0b"}


def _number(match: re.Match[str]) -> str:
    return repr(float(match.group(0)) + 0.0)  # + 0.0: regorus writes -0 where OPA writes 0


def _unescape(match: re.Match[str]) -> str:
    return chr(int(next(g for g in match.groups() if g), 16))


def _pair(match: re.Match[str]) -> str:
    high, low = (int(g, 16) for g in match.groups())
    return chr(0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00))


def _formatted(text: str) -> str:
    """Text with every number as its float value and every escape as its character.

    How `sprintf("%v")` writes numbers and escapes is where the engines differ
    and nothing else: OPA keeps a number's JSON spelling (`1e7`, `1.0e10`) and Go's
    escapes (`\x00`, `\u0085`), regorus writes `10000000` and JSON's `\u0000`.
    """
    text = _SURROGATES.sub(_pair, text)  # JSON's surrogate pair for Go's `\U0007eb87`
    text = _SHORT.sub(lambda m: _SHORT_CHARS[m.group(1)], text)  # Go's `\a` for `\u0007`
    return _NUMBER.sub(_number, _ESCAPE.sub(_unescape, text))


def _as_floats(value: Any) -> Any:
    """Numbers as doubles: regorus holds integers beyond 2**53 as floats (`1e+30`), OPA as
    exact integers; the same number either way, at a double's precision."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int | float):
        return repr(float(value) + 0.0)
    if isinstance(value, dict):
        return {k: _as_floats(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_as_floats(v) for v in value]
    return value


def formatting_only(embedded: list[str], opa: list[str]) -> bool:
    """Whether two reason lists differ only in how numbers and escapes are written (in the
    message), or in a number's precision beyond 2**53 (in the details)."""

    def normal(reasons: list[str]) -> list[str]:
        out = []
        for reason in reasons:
            value = json.loads(reason)
            value["message"] = _formatted(value["message"])
            value["details"] = _as_floats(value["details"])
            out.append(_key(value))
        return sorted(out)

    return normal(embedded) == normal(opa)


def _ids(reasons: list[str]) -> list[str]:
    return sorted(json.loads(r)["policy"] for r in reasons)


def difference(embedded: dict[str, Any], opa: dict[str, Any]) -> str | None:
    """None when both answers are the same; else what differs, as a category.

    ``decision``: another set of rule ids, details, obligations or errors (what
    `decide` acts on); ``message``: the same rules fired, with other message text;
    ``format``: the same text but for how `sprintf` wrote a number or an escape
    (:func:`formatting_only`), a known difference of the two `sprintf`s.
    """
    if embedded == opa:
        return None
    if "error" in embedded or "error" in opa:
        why = embedded.get("why") or opa.get("opa")
        return f"decision: error {embedded.get('error')} vs {opa.get('error')}: {why}"
    for kind in ("deny", "warn"):
        ours_ids, opa_ids = _ids(embedded[kind]), _ids(opa[kind])
        if ours_ids != opa_ids:
            only_ours = sorted(set(ours_ids) - set(opa_ids))
            only_opa = sorted(set(opa_ids) - set(ours_ids))
            return f"decision: {kind} only embedded {only_ours}, only OPA {only_opa}"
    if embedded["obligations"] != opa["obligations"]:
        return "decision: obligations"
    differ = sorted(
        json.loads(r)["policy"] for kind in ("deny", "warn") for r in embedded[kind]
        if r not in opa[kind]
    )  # fmt: skip
    if all(formatting_only(embedded[kind], opa[kind]) for kind in ("deny", "warn")):
        return f"format: numbers or escapes written differently in {differ}"
    return f"message: text of {differ}"


Mismatch = tuple[str, dict[str, Any], Any, Any]


@dataclass
class ParityRun:
    """What one bundle's run compared and where the engines differed."""

    compared: dict[str, int] = field(default_factory=dict)
    mismatches: dict[str, list[Mismatch]] = field(default_factory=dict)

    @property
    def total(self) -> int:
        """Inputs compared, over every action."""
        return sum(self.compared.values())

    def found(self, prefix: str = "") -> int:
        """Mismatching inputs (of the categories starting with ``prefix``)."""
        return sum(
            len(v) for k, v in self.mismatches.items() if k.split(": ", 1)[1].startswith(prefix)
        )

    def report(self, prefix: str) -> list[str]:
        """Each category starting with ``prefix``, its count, its smallest input, both answers."""
        shown = []
        for category, cases in sorted(self.mismatches.items()):
            if not category.split(": ", 1)[1].startswith(prefix):
                continue
            _, doc, embedded, opa = min(cases, key=lambda c: len(json.dumps(c[1])))
            shown.append(
                f"{category} ({len(cases)} inputs); smallest input:\n{json.dumps(doc)}\n"
                f"  embedded: {embedded}\n  OPA:      {opa}"
            )
        return shown


def run_parity(bundle: str, compiled: CompiledRego, server: OpaServer, inputs: int) -> ParityRun:
    """Compare the engines on at least ``inputs`` generated inputs; keep every mismatch."""
    run = ParityRun()

    @settings(
        # Each case is a drawn request and (almost always) VARIANTS mutated copies.
        max_examples=math.ceil(inputs / (VARIANTS + 1) * 1.1),
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(cases_for(bundle))
    def agree(cases: list[tuple[str, dict[str, Any]]]) -> None:
        for action, doc in cases:
            server.send(action, doc)
            embedded = ours(compiled, action, doc)
            opa = theirs(action, *server.receive())
            run.compared[action] = run.compared.get(action, 0) + 1
            category = difference(embedded, opa)
            if category is not None:
                found = (action, doc, embedded, opa)
                run.mismatches.setdefault(f"{action}: {category}", []).append(found)

    agree()
    return run
