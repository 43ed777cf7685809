"""Compile bundles into one immutable policy set: compile once, evaluate many."""

from __future__ import annotations

import copy
import hashlib
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from engine.bundle.bundle import Bundle
from engine.bundle.manifest import check_disjoint
from engine.cedar import CedarBundle, CompiledCedar, compile_cedar
from engine.errors import BundleError
from engine.opa_remote import (
    RemoteRego,
    RemoteRegoEvaluator,
    bundle_evaluator,
    remote_bundle_names,
)
from engine.rego import DEFAULT_REGO_OPTIONS, CompiledRego, RegoOptions, compile_rego, new_engine
from engine.regolint import undefined_under_not
from engine.verdict import EngineVerdict


class Evaluator(Protocol):
    """One policy engine over a compiled policy set.

    The in-process Rego and Cedar evaluators implement it; a remote OPA
    evaluator answers the same way (an engine that cannot answer returns a
    verdict with errors, which deny).
    """

    engine_name: str

    def participates(self, action: str) -> bool:
        """Whether this engine has rules for ``action``."""
        ...

    def evaluate(self, action: str, doc: dict[str, Any], now_ns: int) -> EngineVerdict:
        """Evaluate the request document ``doc`` at time ``now_ns``."""
        ...


class AsyncEvaluator(Evaluator, Protocol):
    """An engine that answers over I/O (an OPA sidecar): :func:`~engine.decide.decide_async`
    awaits ``evaluate_async``; its synchronous ``evaluate`` must fail closed."""

    async def evaluate_async(self, action: str, doc: dict[str, Any], now_ns: int) -> EngineVerdict:
        """Evaluate ``doc`` without blocking the event loop; never raises."""
        ...


def is_async(evaluator: Evaluator) -> bool:
    """Whether ``evaluator`` must be awaited (it has ``evaluate_async``)."""
    return callable(getattr(evaluator, "evaluate_async", None))


def merge_data(into: dict[str, Any], data: dict[str, Any], bundle: str) -> None:
    """Merge one bundle's data into ``into``; a value defined twice is a :class:`BundleError`."""
    for key, value in data.items():
        if key in into:
            if isinstance(into[key], dict) and isinstance(value, dict):
                merge_data(into[key], value, bundle)
                continue
            raise BundleError(
                f"bundle `{bundle}`: data key `{key}` is already defined by another bundle"
            )
        # A copy: merging a later bundle must never write into this bundle's own data.
        into[key] = copy.deepcopy(value)


@dataclass(frozen=True)
class PolicySet:
    """The compiled, active policy set of one tenant (global and tenant bundles).

    ``rego`` holds the Rego of every bundle (introspection, the Data API);
    ``evaluators`` decide: the in-process Rego of the bundles evaluated here,
    ``remote`` for those an OPA sidecar evaluates, and Cedar.
    """

    revisions: dict[str, str]
    digest: str
    evaluators: tuple[Evaluator, ...]
    rego: CompiledRego | None
    cedar: CompiledCedar | None
    remote: RemoteRegoEvaluator | None = None

    def participating(self, action: str) -> list[str]:
        """Names of the engines that have rules for ``action``."""
        return [e.engine_name for e in self.evaluators if e.participates(action)]


def compile_bundles(
    bundles: Sequence[Bundle],
    rego_options: RegoOptions = DEFAULT_REGO_OPTIONS,
    remote: RemoteRego | None = None,
) -> PolicySet:
    """Compile ``bundles`` together; raises on conflicts and on policies that do not compile.

    Bundles that put Rego or data into the data tree must have disjoint roots.
    With ``remote``, the Rego of the bundles it selects is evaluated by an OPA
    sidecar: it is still compiled here with every bundle (validation, and which
    actions have rules), and the in-process engine gets the other bundles' Rego
    (with all the data). Without it, every bundle is evaluated in process
    whatever its manifest asks.
    """
    names = [b.name for b in bundles]
    if len(set(names)) != len(names):
        raise BundleError(f"bundle names must be unique: {', '.join(sorted(names))}")
    check_disjoint({b.name: b.manifest.roots for b in bundles if b.rego or b.data})
    for bundle in bundles:
        bundle_evaluator(bundle)  # an unknown evaluator is refused, remote or not
    data: dict[str, Any] = {}
    for bundle in bundles:
        merge_data(data, bundle.data, bundle.name)
    if any(b.manifest.rego_version == 0 for b in bundles if b.rego):
        rego_options = RegoOptions(True, rego_options.capabilities)
    rego = _compile_rego(bundles, data, rego_options)
    local, remote_eval = rego, None
    chosen = remote_bundle_names(rego, bundles, remote) if rego and remote else frozenset()
    if rego is not None and remote is not None and chosen:
        _refuse_divergent_rego([b for b in bundles if b.name in chosen], data, rego_options)
        remote_eval = RemoteRegoEvaluator(
            rego,
            chosen,
            remote.querier,
            remote.timeout_s,
            expected={b.name: b.revision for b in bundles if b.rego or b.data},
            known=(b.name for b in bundles),
            refusal=remote.refusal,
        )
        local = _compile_rego([b for b in bundles if b.name not in chosen], data, rego_options)
    cedar = compile_cedar(
        CedarBundle(b.name, b.cedar, b.cedar_schema, b.cedar_links)
        for b in bundles
        if b.cedar or b.cedar_schema
    )
    evaluators: tuple[Evaluator, ...] = tuple(
        e for e in (local, remote_eval, cedar) if e is not None
    )
    digest = hashlib.sha256("|".join(sorted(b.digest for b in bundles)).encode()).hexdigest()
    return PolicySet(
        {b.name: b.revision for b in bundles}, digest, evaluators, rego, cedar, remote_eval
    )


def _refuse_divergent_rego(
    bundles: Sequence[Bundle], data: dict[str, Any], options: RegoOptions
) -> None:
    """Rego sent to OPA must mean there what it means here (engine.regolint): a `not` over an
    argument that may be undefined fires here and not in OPA, so it is refused, not guessed."""
    sources = {m.path: m.text for b in bundles for m in b.rego}
    _, ast = new_engine([m for b in bundles for m in b.rego], data, options)
    problems = undefined_under_not(ast, sources)
    if problems:
        shown = "; ".join(str(p) for p in problems[:3])
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise BundleError(
            "Rego evaluated by OPA must mean the same as in process "
            f"(`aion policy validate` shows where it does not): {shown}{more}"
        )


def _compile_rego(
    bundles: Sequence[Bundle], data: dict[str, Any], options: RegoOptions
) -> CompiledRego | None:
    if not any(b.rego for b in bundles):
        return None
    return compile_rego({b.name: (b.manifest.roots, list(b.rego)) for b in bundles}, data, options)


class PolicySetCache:
    """Compiled policy sets keyed by their bundles' digests: compile once per revision set.

    Bounded (least recently used goes first) and safe to share between threads.
    """

    def __init__(
        self, max_entries: int = 64, rego_options: RegoOptions = DEFAULT_REGO_OPTIONS
    ) -> None:
        self._max = max_entries
        self._options = rego_options
        self._entries: OrderedDict[tuple[str, ...], PolicySet] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, bundles: Sequence[Bundle], remote: RemoteRego | None = None) -> PolicySet:
        """The compiled set for ``bundles`` (and where its Rego is evaluated), compiled on
        first use."""
        key = (*sorted(f"{b.name}@{b.digest}" for b in bundles), remote.key if remote else "")
        with self._lock:
            found = self._entries.get(key)
            if found is not None:
                self._entries.move_to_end(key)
                return found
        compiled = compile_bundles(bundles, self._options, remote)
        with self._lock:
            self._entries[key] = compiled
            self._entries.move_to_end(key)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)
        return compiled
