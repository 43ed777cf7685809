"""Rego evaluated by an OPA sidecar instead of in process, failing closed.

The sidecar is reached through :class:`OpaQuerier`, a port with a real
implementation over ``opa-python-client`` (:mod:`engine.opa_client_aiohttp`,
not imported here: ``import engine`` loads no HTTP stack) and an in-memory
twin, :class:`InMemoryOpa`, for tests.

:class:`RemoteRegoEvaluator` is engine ``opa``: the bundles it serves are
compiled locally too (validation, and which actions have rules), then each
decision asks the sidecar for the documents of ``aion/<action>`` and
``aion/common`` concurrently, with ``?provenance=true``. Whatever goes wrong
denies, named::

    opa_not_configured     no sidecar URL is configured
    opa_unreachable        connection refused, reset, DNS failure ...
    opa_timeout            no answer within the time limit
    opa_http_error         any status but 200 (a 500 for a conflict error ...)
    opa_undefined          200 without `result` for a package that has rules here,
                           or an action package without `deny`
    opa_bad_result         not JSON, a result that is not an object, `deny` that is
                           not a boolean or a list of strings or objects ...
    opa_revision_mismatch  the sidecar serves another revision of a bundle (any bundle of the
                           set with Rego or data), lacks one, or serves one the set lacks
    opa_wrong_tenant       the sidecar serves another tenant's bundles (AION_OPA_TENANT)
    opa_requires_async     the synchronous ``evaluate`` was called (use ``decide_async``)
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from engine.actions import REGO_COMMON_PACKAGE, rego_package
from engine.bundle.bundle import Bundle
from engine.errors import BundleError
from engine.model import EvalError
from engine.opa_querier import (
    InMemoryOpa,
    OpaAnswer,
    OpaBadAnswer,
    OpaQuerier,
    OpaUnreachable,
    answer_from_body,
)
from engine.opaquery import parse_data_path, rego_ref
from engine.rego import CompiledRego
from engine.verdict import EngineVerdict, jsonable, reasons_of

__all__ = [
    "EVALUATORS",
    "InMemoryOpa",
    "OpaAnswer",
    "OpaBadAnswer",
    "OpaQuerier",
    "OpaUnreachable",
    "RemoteRego",
    "RemoteRegoEvaluator",
    "answer_from_body",
    "bundle_evaluator",
    "remote_bundle_names",
]

ENGINE = "opa"
#: Values of a bundle's ``metadata.aion.evaluator`` and of a tenant's ``rego_evaluator``.
EVALUATORS = ("embedded", "opa")


def bundle_evaluator(bundle: Bundle) -> str:
    """Where a bundle asks its Rego to be evaluated: ``metadata.aion.evaluator`` (``embedded``
    when absent); :class:`BundleError` for any other value than ``embedded`` or ``opa``."""
    aion = bundle.manifest.metadata.get("aion")
    value = aion.get("evaluator", "embedded") if isinstance(aion, dict) else "embedded"
    if value not in EVALUATORS:
        raise BundleError(
            f"bundle `{bundle.name}`: `metadata.aion.evaluator` is `{value}`; "
            f"expected one of {', '.join(EVALUATORS)}"
        )
    return str(value)


@dataclass(frozen=True)
class RemoteRego:
    """Which bundles' Rego an OPA sidecar evaluates, and through which querier.

    ``all_bundles`` (a tenant configured ``rego_evaluator: opa``) sends every
    bundle's Rego there; otherwise only bundles whose manifest says
    ``{"metadata": {"aion": {"evaluator": "opa"}}}``. ``querier`` None (no
    sidecar URL configured) denies every decision those bundles take part in.
    """

    querier: OpaQuerier | None
    all_bundles: bool = False
    timeout_s: float = 0.1
    refusal: str = ""
    """Why this tenant may not be decided by the sidecar (it serves another tenant's
    bundles): every decision that would go there denies with ``opa_wrong_tenant``."""

    @property
    def key(self) -> str:
        """What distinguishes two configurations in a compiled-set cache."""
        return f"opa:{id(self.querier)}:{int(self.all_bundles)}:{self.timeout_s}:{self.refusal}"

    def wants(self, bundle: Bundle) -> bool:
        """Whether ``bundle``'s Rego is evaluated remotely."""
        return self.all_bundles or bundle_evaluator(bundle) == "opa"


@dataclass(frozen=True, slots=True)
class _Query:
    """One package the sidecar is asked for, for one action."""

    package: str
    path: str
    bundle: str
    rules: frozenset[str]
    """Rules of the package this set defines (deny, warn, obligations)."""
    main: bool
    """The action's own package (its ``deny`` must be defined), not ``aion.common``."""


def _plan(compiled: CompiledRego, remote: frozenset[str]) -> dict[str, tuple[_Query, ...]]:
    # Read from the locally compiled set of every bundle: which actions have rules,
    # which rules each package defines and which bundle owns it.
    eval_rules = compiled.decision_rules
    owners = compiled.package_owners
    plan: dict[str, tuple[_Query, ...]] = {}
    for action, pairs in eval_rules.items():
        queries = []
        for package, prefix, main in (
            (rego_package(action), "", True),
            (REGO_COMMON_PACKAGE, "common_", False),
        ):
            if owners.get(package) not in remote:
                continue
            rules = frozenset(
                key.removeprefix(prefix)
                for key, _ in pairs
                if key.startswith("common_") == (not main)
            )
            if not main and not rules:
                continue  # an `aion.common` without decision rules has nothing to say
            path = "/".join(parse_data_path(package.replace(".", "/")))
            queries.append(_Query(package, path, owners[package], rules, main))
        if queries:
            plan[action] = tuple(queries)
    return plan


def remote_bundle_names(
    compiled: CompiledRego, bundles: Iterable[Bundle], remote: RemoteRego
) -> frozenset[str]:
    """The bundles with Rego that ``remote`` sends to the sidecar.

    The bundle holding ``aion.common`` goes along as soon as any bundle does:
    its rules apply to every action, so they are evaluated once, in one place.
    """
    chosen = {b.name for b in bundles if b.rego and remote.wants(b)}
    common = compiled.package_owners.get(REGO_COMMON_PACKAGE)
    if chosen and common:
        chosen.add(common)
    return frozenset(chosen)


def _error(code: str, message: str) -> EvalError:
    return EvalError(ENGINE, code, message)


def _bad_type(value: Any) -> bool:
    """Whether a deny/warn value is not `true`/`false` nor a list of strings or objects."""
    if isinstance(value, bool):
        return False
    if not isinstance(value, list):
        return True
    return not all(isinstance(item, str | dict) for item in value)


def _loaded_name(key: str) -> str:
    """A bundle's name from the path OPA was given (``opa run -b dir/name.tar.gz``)."""
    base = PurePosixPath(key).name
    for suffix in (".tar.gz", ".tgz", ".tar"):
        if base.endswith(suffix):
            return base[: -len(suffix)]
    return base


def _sidecar_revision(served: Mapping[str, str], name: str) -> list[str]:
    """Revisions the sidecar reports for bundle ``name``: under its configured name (a
    ``bundles:`` entry), else under the file it was loaded from (``opa run -b`` names a
    bundle by its path)."""
    exact = [rev for key, rev in served.items() if key == name]
    return exact or [rev for key, rev in served.items() if _loaded_name(key) == name]


class RemoteRegoEvaluator:
    """Engine ``opa``: the Rego of some bundles, evaluated by an OPA sidecar.

    Reasons, warnings and obligations have the shape the in-process engine
    gives them (``policy`` ``aion.<action>.deny``, the owning bundle), under
    engine ``opa``. The sidecar reads its own clock for ``time.now_ns``.
    """

    engine_name = ENGINE

    def __init__(
        self,
        compiled: CompiledRego,
        remote: Iterable[str],
        querier: OpaQuerier | None,
        timeout_s: float,
        *,
        expected: Mapping[str, str],
        known: Iterable[str] = (),
        refusal: str = "",
    ) -> None:
        self._revisions = dict(expected)
        self._known = frozenset(known) | frozenset(expected)
        self._plan = _plan(compiled, frozenset(remote))
        self._querier = querier
        self._timeout_s = timeout_s
        self._refusal = refusal

    @property
    def bundles(self) -> dict[str, str]:
        """Name → revision of every bundle the sidecar must serve: each one with Rego or data
        in the set (remote Rego reads all the data, and a local bundle's data is data too)."""
        return dict(self._revisions)

    def participates(self, action: str) -> bool:
        """Whether a remotely evaluated package has rules for ``action``."""
        return action in self._plan

    def evaluate(self, action: str, doc: dict[str, Any], now_ns: int) -> EngineVerdict:
        """Fail closed: a remote evaluation needs an event loop (``decide_async``)."""
        verdict = EngineVerdict(ENGINE, participated=self.participates(action), permitted=False)
        if verdict.participated:
            verdict.errors.append(
                _error(
                    "opa_requires_async",
                    "the OPA evaluator answers only through `decide_async`, not `decide`",
                )
            )
        return verdict

    async def evaluate_async(self, action: str, doc: dict[str, Any], now_ns: int) -> EngineVerdict:
        """Ask the sidecar for every remote package of ``action``; never raises."""
        started = time.perf_counter()
        queries = self._plan.get(action)
        verdict = EngineVerdict(ENGINE, participated=queries is not None)
        if queries is None:
            return verdict
        if self._refusal:
            verdict.errors.append(_error("opa_wrong_tenant", self._refusal))
        elif self._querier is None:
            verdict.errors.append(
                _error(
                    "opa_not_configured",
                    "Rego of this policy set is evaluated by an OPA sidecar, "
                    "but no sidecar URL is configured (AION_OPA_URL)",
                )
            )
        else:
            answers = await self._ask_all(self._querier, queries, doc)
            for query, answer in zip(queries, answers, strict=True):
                self._read(verdict, query, answer)
        if verdict.errors:
            verdict.permitted = False
            verdict.denies.clear()
            verdict.warns.clear()
            verdict.obligations.clear()
        verdict.duration_us = (time.perf_counter() - started) * 1e6
        return verdict

    async def _ask_all(
        self, querier: OpaQuerier, queries: tuple[_Query, ...], doc: dict[str, Any]
    ) -> list[OpaAnswer | BaseException]:
        async def ask(query: _Query) -> OpaAnswer:
            async with asyncio.timeout(self._timeout_s):
                return await querier.query(query.path, doc, timeout_s=self._timeout_s)

        return await asyncio.gather(*(ask(q) for q in queries), return_exceptions=True)

    def _read(
        self, verdict: EngineVerdict, query: _Query, answer: OpaAnswer | BaseException
    ) -> None:
        where = f"`{query.path}`"
        if isinstance(answer, BaseException):
            verdict.errors.append(self._failure(answer, where))
            return
        if answer.status != 200:
            detail = f": {answer.detail}" if answer.detail else ""
            verdict.errors.append(
                _error("opa_http_error", f"OPA answered HTTP {answer.status} for {where}{detail}")
            )
            return
        mismatch = self._revision_problem(answer.revisions)
        if mismatch:
            verdict.errors.append(_error("opa_revision_mismatch", mismatch))
            return
        if not answer.defined:
            verdict.errors.append(
                _error("opa_undefined", f"OPA has no document at {where} (package not loaded?)")
            )
            return
        self._collect(verdict, query, answer.result)

    def _failure(self, exc: BaseException, where: str) -> EvalError:
        if isinstance(exc, TimeoutError):
            return _error(
                "opa_timeout", f"OPA did not answer {where} within {self._timeout_s * 1000:.0f} ms"
            )
        if isinstance(exc, OpaUnreachable):
            return _error("opa_unreachable", f"OPA is unreachable for {where}: {exc}")
        if isinstance(exc, OpaBadAnswer):
            return _error("opa_bad_result", f"OPA's answer for {where} is malformed: {exc}")
        return _error(
            "opa_unreachable", f"querying OPA for {where} failed: {type(exc).__name__}: {exc}"
        )

    def _revision_problem(self, served: Mapping[str, str] | None) -> str:
        if served is None:
            return "OPA reported no bundle provenance; the revisions it decides with are unknown"
        problems = []
        extra = sorted(
            k for k in served if k not in self._known and _loaded_name(k) not in self._known
        )
        if extra:
            shown = ", ".join(f"`{k}`" for k in extra)
            problems.append(f"OPA also serves bundles this policy set does not have: {shown}")
        for name, revision in sorted(self._revisions.items()):
            found = _sidecar_revision(served, name)
            if not found:
                problems.append(f"OPA does not serve bundle `{name}`")
            elif any(r != revision for r in found):
                shown = ", ".join(f"`{r}`" for r in sorted(set(found)))
                problems.append(f"OPA serves bundle `{name}` at revision {shown}, not `{revision}`")
        return "; ".join(problems)

    def _collect(self, verdict: EngineVerdict, query: _Query, result: Any) -> None:
        ref = rego_ref(query.path.split("/"))
        if not isinstance(result, dict):
            verdict.errors.append(
                _error(
                    "opa_bad_result",
                    f"`{ref}` is a {type(result).__name__}, not the package's object of rules",
                )
            )
            return
        if query.main and result.get("deny") is None:
            verdict.errors.append(_error("opa_undefined", f"`{ref}.deny` is undefined"))
            return
        for rule in ("deny", "warn"):
            value = result.get(rule)
            if value is not None and _bad_type(value):
                verdict.errors.append(
                    _error(
                        "opa_bad_result",
                        f"`{ref}.{rule}` must be a boolean or a list of strings or objects, "
                        f"not {type(value).__name__}",
                    )
                )
        obligations = result.get("obligations")
        if obligations is not None and not isinstance(obligations, list):
            verdict.errors.append(
                _error(
                    "opa_bad_result",
                    f"`{ref}.obligations` must be a list, not {type(obligations).__name__}",
                )
            )
        if verdict.errors:
            return
        if "deny" in query.rules:
            verdict.denies += reasons_of(
                result.get("deny"), ENGINE, f"{query.package}.deny", query.bundle
            )
        if "warn" in query.rules:
            verdict.warns += reasons_of(
                result.get("warn"), ENGINE, f"{query.package}.warn", query.bundle
            )
        if "obligations" in query.rules:
            for item in sorted(obligations or [], key=str):
                verdict.obligations.append(
                    jsonable(item) if isinstance(item, dict) else {"value": jsonable(item)}
                )
