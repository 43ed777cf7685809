"""Differential test: the embedded Rego (regorus) and the real OPA decide alike.

For every shipped bundle, Hypothesis generates at least 10,000 decision
requests over the actions it governs (tests/parity/parity_strategies.py); each
is evaluated by `CompiledRego` (what `decide` evaluates) and by `opa run
--server` serving the same bundle directory (tests/parity/parity_compare.py).
One run per bundle feeds three tests: enough inputs were compared, the
decisions agree (rule ids, obligations, errors), the messages agree. Every
mismatch is kept; a failure shows each kind with its smallest input and both
answers. No shipped policy reads the clock (checked below), so the fixed `now`
on our side cannot differ from OPA's. The shipped bundles' own Rego tests also
run in both engines and must pass or fail alike, test by test.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine import compile_bundles, load_bundle
from engine.testing import Outcome, discover_and_run
from server.cli.opa_test import run_in_opa
from tests.conftest import POLICIES
from tests.parity.opa_server import OpaServer
from tests.parity.parity_compare import ParityRun, run_parity
from tests.parity.parity_strategies import BUNDLES

INPUTS_PER_BUNDLE = int(os.environ.get("AION_PARITY_INPUTS", "10000"))


@pytest.fixture(scope="module")
def servers(opa_bin: Path) -> Iterator[dict[str, OpaServer]]:
    """One OPA server per shipped bundle, serving the bundle directory as shipped."""
    started: dict[str, OpaServer] = {}
    try:
        for name, (actions, _) in BUNDLES.items():
            started[name] = OpaServer(opa_bin, POLICIES / name, actions)
        yield started
    finally:
        for server in started.values():
            server.stop()


@pytest.fixture(scope="module")
def runs() -> dict[str, ParityRun]:
    """Each bundle's comparison, made once (on first use) for the tests below."""
    return {}


def _run(bundle: str, servers: dict[str, OpaServer], runs: dict[str, ParityRun]) -> ParityRun:
    if bundle not in runs:
        compiled = compile_bundles([load_bundle(POLICIES / bundle)]).rego
        assert compiled is not None
        runs[bundle] = run_parity(bundle, compiled, servers[bundle], INPUTS_PER_BUNDLE)
    return runs[bundle]


def test_every_shipped_bundle_is_covered() -> None:
    shipped = {p.parent.name for p in POLICIES.glob("*/.manifest")}
    assert shipped == set(BUNDLES)


def test_no_shipped_policy_reads_the_clock() -> None:
    """Why a fixed `now` on our side is honest: OPA's clock is never consulted."""
    readers = [
        str(p)
        for p in POLICIES.rglob("*.rego")
        if not p.name.endswith("_test.rego") and re.search(r"\btime\.[a-z_]+\(", p.read_text())
    ]
    assert readers == []


@pytest.mark.parametrize("bundle", sorted(BUNDLES))
def test_generated_inputs_are_compared(
    bundle: str,
    servers: dict[str, OpaServer],
    runs: dict[str, ParityRun],
    record_testsuite_property: Any,
) -> None:
    run = _run(bundle, servers, runs)
    record_testsuite_property(f"parity_inputs_{bundle}", run.total)
    record_testsuite_property(f"parity_mismatches_{bundle}", run.found())
    print(
        f"parity {bundle}: {run.total} inputs compared, {run.found()} mismatches "
        f"({run.found('decision')} decision, {run.found('message')} message text, "
        f"{run.found('format')} number/escape formatting only); "
        f"per action {run.compared}"
    )
    for category, cases in sorted(run.mismatches.items()):
        print(f"  {len(cases):6d}  {category}")
    assert run.total >= INPUTS_PER_BUNDLE
    assert set(run.compared) == set(BUNDLES[bundle][0]), "every governed action was exercised"


@pytest.mark.parametrize("bundle", sorted(BUNDLES))
def test_decisions_agree(
    bundle: str, servers: dict[str, OpaServer], runs: dict[str, ParityRun]
) -> None:
    """Same rule ids, obligations and errors for every input."""
    run = _run(bundle, servers, runs)
    shown = run.report("decision")
    assert not shown, f"{run.found('decision')} of {run.total} inputs decide differently:\n" + (
        "\n".join(shown)
    )


@pytest.mark.parametrize("bundle", sorted(BUNDLES))
def test_messages_agree(
    bundle: str, servers: dict[str, OpaServer], runs: dict[str, ParityRun]
) -> None:
    """Where the same rules fire, the same message text (up to how `sprintf` writes a
    number or an escape: counted and printed by the test above, not a failure)."""
    run = _run(bundle, servers, runs)
    shown = run.report("message")
    assert not shown, f"{run.found('message')} of {run.total} inputs differ in text only:\n" + (
        "\n".join(shown)
    )


@pytest.mark.parametrize("bundle", sorted(BUNDLES))
def test_shipped_tests_pass_and_fail_alike(bundle: str, opa_bin: Path) -> None:
    embedded = discover_and_run([POLICIES / bundle]).results
    in_opa = run_in_opa([POLICIES / bundle], opa_bin).report.results

    def rego(results: list[Any]) -> dict[str, Outcome]:
        return {r.name: r.outcome for r in results if r.name.startswith("data.")}

    assert len(rego(embedded)) > 0
    differ = {
        name: (outcome.value, rego(in_opa).get(name, "missing"))
        for name, outcome in rego(embedded).items()
        if rego(in_opa).get(name) is not outcome
    }
    assert differ == {}, "test name: (embedded, OPA)"
    assert set(rego(in_opa)) == set(rego(embedded))
