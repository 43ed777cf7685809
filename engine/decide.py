"""From a request and a compiled policy set to one :class:`Decision`.

Combination is deny-overrides across engines and fail-closed: an engine
error, an undefined result or an evaluation over the time limit denies, in
every enforcement mode. Modes relax policy verdicts, never failures.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, cast

import msgspec

from engine.actions import check_action
from engine.model import Decision, DecisionRequest, EngineResult, EvalError, Mode, Outcome, Reason
from engine.policyset import AsyncEvaluator, Evaluator, PolicySet, is_async
from engine.verdict import EngineVerdict

DEFAULT_TIME_LIMIT_US = 50_000.0

NO_POLICY = Reason(
    "engine", "no_policy", "no policy governs this action: a governed action needs a policy"
)


def _sort(reasons: list[Reason]) -> list[Reason]:
    return sorted(reasons, key=lambda r: (r.engine, r.bundle, r.policy, r.message))


def _engine_result(v: EngineVerdict) -> EngineResult:
    return EngineResult(
        engine=v.engine,
        participated=v.participated,
        allowed=v.allowed,
        deny_count=len(v.denies),
        warn_count=len(v.warns),
        errors=list(v.errors),
        duration_us=round(v.duration_us, 1),
    )


def combine(
    verdicts: Sequence[EngineVerdict],
    *,
    action: str,
    decision_id: str,
    revisions: dict[str, str],
    mode: Mode = Mode.ENFORCE,
    duration_us: float = 0.0,
    time_limit_us: float = DEFAULT_TIME_LIMIT_US,
) -> Decision:
    """Combine engine verdicts into one decision (pure; order of ``verdicts`` is irrelevant)."""
    taking_part = [v for v in verdicts if v.participated]
    errors = sorted(
        (e for v in verdicts for e in v.errors), key=lambda e: (e.engine, e.code, e.message)
    )
    if duration_us > time_limit_us:
        errors.append(
            EvalError(
                "engine",
                "evaluation_timeout",
                f"evaluation took {duration_us:.0f} µs, over the limit of {time_limit_us:.0f} µs",
            )
        )
    reasons = [r for v in verdicts for r in v.denies]
    reasons += [
        Reason(v.engine, f"{v.engine}.not_permitted", f"`{v.engine}` did not permit `{action}`")
        for v in taking_part
        if not v.permitted and not v.denies and not v.errors
    ]
    reasons = _sort(reasons)
    if not taking_part:
        reasons = [NO_POLICY]
    verdict_allowed = bool(taking_part) and not errors and all(v.allowed for v in taking_part)
    for error in errors:
        reasons.append(Reason(error.engine, error.code, error.message))
    allowed, outcome = _apply_mode(mode, verdict_allowed, bool(errors) or not taking_part)
    obligations = sorted(
        (o for v in verdicts for o in v.obligations),
        key=lambda o: msgspec.json.encode(o, order="sorted"),
    )
    return Decision(
        decision_id=decision_id,
        action=action,
        allowed=allowed,
        outcome=outcome,
        mode=mode,
        verdict_allowed=verdict_allowed,
        reasons=reasons,
        warnings=_sort([w for v in verdicts for w in v.warns]),
        # Kept on a deny too (not on an error): per-bundle modes and approvals applied
        # later can still let the request through, and then its obligations bind.
        obligations=obligations if not errors else [],
        engines=sorted((_engine_result(v) for v in verdicts), key=msgspec.json.encode),
        revisions=dict(revisions),
        errors=errors,
        duration_us=round(duration_us, 1),
    )


def _apply_mode(mode: Mode, verdict_allowed: bool, failed: bool) -> tuple[bool, Outcome]:
    if verdict_allowed:
        return True, Outcome.ALLOW
    if failed or mode is Mode.ENFORCE:
        return False, Outcome.DENY
    if mode is Mode.REQUIRE_APPROVAL:
        return False, Outcome.PENDING_APPROVAL
    return True, Outcome.ALLOW  # warn and audit: the deny is recorded, the request proceeds


def _guarded(evaluator: Evaluator, action: str, doc: dict[str, Any], now_ns: int) -> EngineVerdict:
    """Run one engine; whatever goes wrong inside it becomes an error on its verdict."""
    name = getattr(evaluator, "engine_name", type(evaluator).__name__)
    try:
        verdict = evaluator.evaluate(action, doc, now_ns)
    except Exception as exc:  # fail closed on any engine fault, never escape
        failed = EngineVerdict(name, participated=True, permitted=False)
        failed.errors.append(EvalError(name, "engine_failure", f"{type(exc).__name__}: {exc}"))
        return failed
    if not isinstance(verdict, EngineVerdict):
        failed = EngineVerdict(name, participated=True, permitted=False)
        failed.errors.append(EvalError(name, "engine_failure", "engine returned no verdict"))
        return failed
    return verdict


async def _guarded_async(
    evaluator: Evaluator, action: str, doc: dict[str, Any], now_ns: int, budget_s: float
) -> EngineVerdict:
    """Await a remote engine within ``budget_s``; a fault or the deadline becomes an error."""
    name = getattr(evaluator, "engine_name", type(evaluator).__name__)
    run = cast(AsyncEvaluator, evaluator).evaluate_async
    started = time.perf_counter()
    failed = EngineVerdict(name, participated=True, permitted=False)
    try:
        async with asyncio.timeout(budget_s):
            verdict = await run(action, doc, now_ns)
    except TimeoutError:
        failed.errors.append(
            EvalError(
                name,
                f"{name}_timeout",
                f"`{name}` did not answer within the decision's time limit "
                f"({budget_s * 1e6:.0f} µs left)",
            )
        )
        failed.duration_us = (time.perf_counter() - started) * 1e6
        return failed
    except Exception as exc:  # fail closed on any engine fault, never escape
        failed.errors.append(EvalError(name, "engine_failure", f"{type(exc).__name__}: {exc}"))
        return failed
    if not isinstance(verdict, EngineVerdict):
        failed.errors.append(EvalError(name, "engine_failure", "engine returned no verdict"))
        return failed
    return verdict


def _now_ns(now: datetime) -> int:
    # Whole seconds and microseconds apart: a float of nanoseconds since 1970 is not exact.
    return int(now.replace(microsecond=0).timestamp()) * 1_000_000_000 + now.microsecond * 1000


def _prepare(policy_set: PolicySet) -> None:
    """Ready each engine for this thread outside the timed evaluation (the first use on a
    new thread compiles there); a failure here shows again, guarded, when it evaluates."""
    for evaluator in policy_set.evaluators:
        prepare = getattr(evaluator, "prepare", None)
        if prepare is not None:
            with contextlib.suppress(Exception):
                prepare()


def _combined(
    policy_set: PolicySet,
    request: DecisionRequest,
    verdicts: list[EngineVerdict],
    started: float,
    mode: Mode,
    decision_id: str | None,
    time_limit_us: float,
) -> Decision:
    """The decision of ``verdicts``, timed from ``started`` (``time.perf_counter``)."""
    return combine(
        verdicts,
        action=request.action,
        decision_id=decision_id or str(uuid.uuid4()),
        revisions=policy_set.revisions,
        mode=mode,
        duration_us=(time.perf_counter() - started) * 1e6,
        time_limit_us=time_limit_us,
    )


def decide(
    policy_set: PolicySet,
    request: DecisionRequest,
    *,
    now: datetime,
    mode: Mode = Mode.ENFORCE,
    decision_id: str | None = None,
    time_limit_us: float = DEFAULT_TIME_LIMIT_US,
) -> Decision:
    """Evaluate ``request`` against ``policy_set`` at time ``now``.

    An in-process engine call cannot be pre-empted; an evaluation that
    overruns ``time_limit_us`` is denied when it returns.
    """
    check_action(request.action)
    _prepare(policy_set)
    started = time.perf_counter()
    doc: dict[str, Any] = msgspec.to_builtins(request)
    now_ns = _now_ns(now)
    verdicts = [_guarded(e, request.action, doc, now_ns) for e in policy_set.evaluators]
    return _combined(policy_set, request, verdicts, started, mode, decision_id, time_limit_us)


async def decide_async(
    policy_set: PolicySet,
    request: DecisionRequest,
    *,
    now: datetime,
    mode: Mode = Mode.ENFORCE,
    decision_id: str | None = None,
    time_limit_us: float = DEFAULT_TIME_LIMIT_US,
) -> Decision:
    """:func:`decide` for sets with remote engines (those with ``evaluate_async``).

    Remote engines are awaited concurrently while the in-process ones run
    inline; what remains of ``time_limit_us`` is a hard bound on the remote
    calls (an engine that has not answered by then denies with
    ``<engine>_timeout``), and an evaluation over the limit still denies with
    ``evaluation_timeout``. For a set without remote engines it decides exactly
    as :func:`decide`.
    """
    check_action(request.action)
    _prepare(policy_set)
    started = time.perf_counter()
    doc: dict[str, Any] = msgspec.to_builtins(request)
    now_ns = _now_ns(now)
    remote = [e for e in policy_set.evaluators if is_async(e)]
    budget_s = max(time_limit_us / 1e6 - (time.perf_counter() - started), 0.0)
    pending = [
        asyncio.ensure_future(_guarded_async(e, request.action, doc, now_ns, budget_s))
        for e in remote
    ]
    verdicts = [
        _guarded(e, request.action, doc, now_ns) for e in policy_set.evaluators if not is_async(e)
    ]
    verdicts += await asyncio.gather(*pending)
    return _combined(policy_set, request, verdicts, started, mode, decision_id, time_limit_us)


def apply_approval_obligations(decision: Decision, *, approved: bool = False) -> Decision:
    """Park an allowing decision that carries a ``require_approval`` obligation.

    A policy can allow a request on condition that a person approves it
    (``obligations contains {"type": "require_approval", ...}``, as the shipped
    ``deploy-gates`` and ``registry-admission`` bundles do for models with
    ``admin_approval_required``). Until ``approved``, such a decision is
    ``pending_approval`` and not allowed: an obligation the enforcement point
    does not honour would be an allow by omission.
    """
    if approved or decision.outcome is not Outcome.ALLOW:
        return decision
    if not any(o.get("type") == "require_approval" for o in decision.obligations):
        return decision
    return msgspec.structs.replace(decision, allowed=False, outcome=Outcome.PENDING_APPROVAL)


def apply_bundle_modes(
    decision: Decision, modes: Mapping[str, Mode], *, approved: bool = False
) -> Decision:
    """Apply per-bundle enforcement modes (an agent's attached policies) to a decision.

    A deny reason blocks when its bundle is in ``enforce`` mode (the default,
    and always for reasons that name no bundle, like ``no_policy`` or Cedar's
    default deny). When every deny reason comes from bundles in other modes:
    ``require_approval`` parks the request; otherwise ``warn`` lets it through
    with the reasons as warnings and ``audit`` lets it through with the reasons
    recorded. With ``approved`` (a human approved the parked request), the
    ``require_approval`` reasons are satisfied and recorded. Evaluation errors
    always deny.
    """
    if decision.verdict_allowed or decision.errors or not modes:
        return decision
    applied = {
        modes.get(r.bundle, Mode.ENFORCE) if r.bundle else Mode.ENFORCE for r in decision.reasons
    }
    if not applied or Mode.ENFORCE in applied:
        return decision
    if Mode.REQUIRE_APPROVAL in applied and approved:
        return msgspec.structs.replace(
            decision, allowed=True, outcome=Outcome.ALLOW, mode=Mode.REQUIRE_APPROVAL
        )
    if Mode.REQUIRE_APPROVAL in applied:
        return msgspec.structs.replace(
            decision, allowed=False, outcome=Outcome.PENDING_APPROVAL, mode=Mode.REQUIRE_APPROVAL
        )
    if Mode.WARN in applied:
        warnings = _sort([*decision.warnings, *decision.reasons])
        return msgspec.structs.replace(
            decision, allowed=True, outcome=Outcome.ALLOW, mode=Mode.WARN, warnings=warnings
        )
    return msgspec.structs.replace(decision, allowed=True, outcome=Outcome.ALLOW, mode=Mode.AUDIT)
