"""Decision latency of the engine against the bare engines (run with `make bench`).

Prints p50 and p99 microseconds per decision for Rego, Cedar and both combined,
on the shipped bundles and on a synthetic bundle of 200 rules per engine, next
to the bare regorus / cedarpy calls on the same input, and our overhead as a
ratio. Targets (issue 2): combined p50 <= 60 us and p99 <= 250 us on the
shipped bundles; overhead <= 1.3x the bare engines; 200 rules at most double p50.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cedarpy
import msgspec
import regorus

from engine import DecisionRequest, PolicySet, compile_bundles, decide, load_bundle
from engine.cedar_entities import request_entities
from engine.policyset import Evaluator

REPO = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)

DEPLOY = {
    "action": "agent.deploy",
    "principal": {"id": "alice", "tenant": "acme", "roles": ["operator"], "kind": "user"},
    "resource": {
        "type": "agent",
        "id": "agt_research",
        "tenant": "acme",
        "attributes": {
            "name": "Research Copilot",
            "status": "created",
            "model": "gpt-4o",
            "template_id": "autogpt-research",
            "tool_ids": ["web_search", "browser", "file_writer"],
            "policy_ids": ["default-safe", "deploy-gates"],
        },
    },
    "context": {
        "request_id": "req_1",
        "policies": [{"name": "deploy-gates", "status": "active", "mode": "enforce"}],
        "model": {
            "id": "gpt-4o",
            "registered": True,
            "verified": True,
            "privacy": "allow-api",
            "admin_approval_required": False,
        },
        "tenant": {"allowed_tools": ["web_search", "browser", "file_writer", "rag.search"]},
    },
}


def measure(fn: Callable[[], Any], n: int, warmup: int = 500) -> tuple[float, float]:
    """(p50, p99) in microseconds over ``n`` timed calls."""
    for _ in range(warmup):
        fn()
    samples = []
    gc.disable()
    try:
        for _ in range(n):
            t0 = time.perf_counter_ns()
            fn()
            samples.append((time.perf_counter_ns() - t0) / 1000)
    finally:
        gc.enable()
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.99) - 1]


def only(ps: PolicySet, engine: str) -> PolicySet:
    evaluators: tuple[Evaluator, ...] = tuple(e for e in ps.evaluators if e.engine_name == engine)
    return PolicySet(ps.revisions, ps.digest, evaluators, ps.rego, ps.cedar)


def bare_rego(ps: PolicySet, doc: dict[str, Any]) -> Callable[[], Any]:
    """The bare regorus calls doing the same work: set input, evaluate the same rules."""
    assert ps.rego is not None
    engine: regorus.Engine = ps.rego._base.clone()
    paths = [path for _, path in ps.rego.decision_rules[doc["action"]]]

    def call() -> Any:
        engine.set_input(doc)
        return [engine.eval_rule_as_json(path) for path in paths]

    return call


def bare_cedar(ps: PolicySet, doc: dict[str, Any]) -> Callable[[], Any]:
    """The bare cedarpy call on the same request and entities."""
    assert ps.cedar is not None
    policies = ps.cedar._policies
    request, entities = request_entities(doc)
    return lambda: cedarpy.is_authorized(request, policies, entities)


def synthetic(rules: int, root: Path) -> PolicySet:
    """A bundle with ``rules`` Rego deny rules and ``rules`` Cedar forbid policies."""
    src = root / "synthetic"
    src.mkdir()
    (src / ".manifest").write_text(json.dumps({"revision": "1", "roots": ["aion/agent/deploy"]}))
    rego = ["package aion.agent.deploy", "import rego.v1", ""]
    rego += [
        f'deny contains "rule {i}" if input.resource.attributes.f{i} == "bad"' for i in range(rules)
    ]
    (src / "deploy.rego").write_text("\n".join(rego) + "\n")
    cedar = [
        '@id("operators") permit(principal in Role::"operator", action == Action::"agent.deploy", resource);'
    ]
    cedar += [
        f'@id("f{i}") forbid(principal, action == Action::"agent.deploy", resource) '
        f'when {{ resource has f{i} && resource.f{i} == "bad" }};'
        for i in range(rules)
    ]
    (src / "policies.cedar").write_text("\n".join(cedar) + "\n")
    attrs = ", ".join(f"f{i}?: String" for i in range(rules))
    (src / "schema.cedarschema").write_text(
        "entity Role; entity Tenant;\n"
        "entity User in [Role] { tenant: String, roles: Set<String>, kind: String };\n"
        f"entity Agent in [Tenant] {{ tenant: String, {attrs} }};\n"
        'action "agent.deploy" appliesTo { principal: [User], resource: [Agent], context: {} };\n'
    )
    return compile_bundles([load_bundle(src)])


def run_suite(label: str, ps: PolicySet, request: DecisionRequest, n: int) -> dict[str, Any]:
    doc = msgspec.to_builtins(request)
    rows: dict[str, Any] = {}
    ours = {
        "rego": only(ps, "rego"),
        "cedar": only(ps, "cedar"),
        "combined": ps,
    }
    r_bare, c_bare = bare_rego(ps, doc), bare_cedar(ps, doc)
    bare = {"rego": r_bare, "cedar": c_bare, "combined": lambda: (r_bare(), c_bare())}
    for name, policy_set in ours.items():
        p50, p99 = measure(lambda s=policy_set: decide(s, request, now=NOW), n)
        b50, b99 = measure(bare[name], n)
        rows[name] = {
            "p50_us": p50,
            "p99_us": p99,
            "bare_p50_us": b50,
            "bare_p99_us": b99,
            "overhead_p50": p50 / b50,
        }
    print(f"\n{label}")
    print(
        f"  {'engine':9} {'p50 µs':>8} {'p99 µs':>8} {'bare p50':>9} {'bare p99':>9} {'overhead':>9}"
    )
    for name, row in rows.items():
        print(
            f"  {name:9} {row['p50_us']:8.1f} {row['p99_us']:8.1f} {row['bare_p50_us']:9.1f} "
            f"{row['bare_p99_us']:9.1f} {row['overhead_p50']:8.2f}x"
        )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=20000, help="timed decisions per measurement")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    bundles = [
        load_bundle(d) for d in sorted((REPO / "policies").iterdir()) if (d / ".manifest").exists()
    ]
    shipped = compile_bundles(bundles)
    request = msgspec.convert(DEPLOY, DecisionRequest)
    check = decide(shipped, request, now=NOW)
    print(
        f"shipped bundles: {', '.join(sorted(shipped.revisions))}; "
        f"sample agent.deploy decision allowed={check.allowed} engines={shipped.participating('agent.deploy')}"
    )
    results = {"shipped": run_suite("shipped bundles, agent.deploy", shipped, request, args.n)}
    with tempfile.TemporaryDirectory() as tmp:
        synth = synthetic(200, Path(tmp))
        results["synthetic_200"] = run_suite(
            "synthetic bundle, 200 Rego rules + 200 Cedar policies", synth, request, args.n
        )
    s50 = results["shipped"]["combined"]["p50_us"]
    y50 = results["synthetic_200"]["combined"]["p50_us"]
    print(f"\n200 rules vs shipped, combined p50: {y50:.1f} / {s50:.1f} = {y50 / s50:.2f}x")
    combined = results["shipped"]["combined"]
    print(
        "targets: combined p50 <= 60 µs: "
        f"{'met' if combined['p50_us'] <= 60 else 'NOT met'}; p99 <= 250 µs: "
        f"{'met' if combined['p99_us'] <= 250 else 'NOT met'}; overhead <= 1.3x: "
        f"{'met' if combined['overhead_p50'] <= 1.3 else 'NOT met'}; 200 rules <= 2x: "
        f"{'met' if y50 / s50 <= 2 else 'NOT met'}"
    )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
