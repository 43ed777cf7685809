"""Rego evaluation in process through regorus, compiled once per policy set.

The request is ``input``; per action a generated rule gathers ``deny``,
``warn`` and ``obligations`` of ``aion.<action>`` (and of ``aion.common``)
in one evaluation. Impure builtins that reach the network or the host are
refused at compile time, wherever they are referenced (calls and `with`
targets alike), unless a capability enables them; ``time.now_ns`` answers the
time the caller passed in, never the host clock.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
import regorus

from engine.actions import (
    ACTIONS,
    REGO_COMMON_PACKAGE,
    package_action,
    rego_package,
    unknown_action,
)
from engine.bundle.bundle import SourceFile
from engine.bundle.manifest import check_path_in_roots
from engine.errors import InvalidInput, PolicyError, PolicyProblem
from engine.model import EvalError
from engine.opaquery import parse_data_path, rego_ref
from engine.regoast import builtin_uses, package_of, rule_names
from engine.regodata import DataTree, RegoQueryError, assemble, document_rules, rule_value
from engine.verdict import EngineVerdict, clean_engine_message, jsonable, reasons_of

#: Builtins that reach the network or the host; refused unless a capability allows them.
IMPURE_BUILTINS = frozenset({"http.send", "net.lookup_ip_addr", "opa.runtime"})
_IMPURE_ARITY = {"http.send": 1, "net.lookup_ip_addr": 1, "opa.runtime": 0}
DECISION_RULES = ("deny", "warn", "obligations")
_LOCATION = re.compile(r"-->\s*(?P<file>[^:\s]+):(?P<line>\d+):(?P<col>\d+)")


@dataclass(frozen=True, slots=True)
class RegoOptions:
    """How Rego is compiled."""

    v0_compatible: bool = False
    """Parse modules as Rego v0 (pre-1.0 syntax)."""
    capabilities: frozenset[str] = frozenset()
    """Impure builtins explicitly allowed (for example ``http.send``)."""


DEFAULT_REGO_OPTIONS = RegoOptions()


def problem_from_error(
    file: str, exc: BaseException, code: str = "rego_parse_error"
) -> PolicyProblem:
    """A :class:`PolicyProblem` from a regorus error, with its location when it names one."""
    text = clean_engine_message(str(exc))
    match = _LOCATION.search(str(exc))
    if match:
        return PolicyProblem(match["file"], text, code, int(match["line"]), int(match["col"]))
    return PolicyProblem(file, text, code)


_UNDEFINED_JSON = '"<undefined>"'


def eval_json(engine: regorus.Engine, rule: str) -> Any:
    """Evaluate a rule through JSON: regorus cannot hand Python a set of objects.

    An undefined rule comes back as the JSON string ``"<undefined>"``; it is
    None here, as with ``eval_rule``, unless the rule really has that value.
    """
    text = engine.eval_rule_as_json(rule)
    if text == _UNDEFINED_JSON and engine.eval_rule(rule) is None:
        return None
    return msgspec.json.decode(text)


class _Clock(threading.local):
    now_ns: int = 0


def _refuse(name: str) -> Any:
    def call(*_args: Any) -> Any:
        raise RuntimeError(f"builtin `{name}` is disabled by the capability list")

    return call


def new_engine(
    modules: Iterable[SourceFile],
    data: Mapping[str, Any],
    options: RegoOptions,
    clock: _Clock | None = None,
) -> tuple[regorus.Engine, list[dict[str, Any]]]:
    """A regorus engine holding ``modules`` and ``data``; raises :class:`PolicyError`.

    Every parse error and every refused builtin is collected before raising.
    Returns the engine and the modules' AST.
    """
    engine = regorus.Engine()
    engine.set_rego_v0(options.v0_compatible)
    problems: list[PolicyProblem] = []
    for module in modules:
        try:
            engine.add_policy(module.path, module.text)
        except (RuntimeError, ValueError) as exc:
            problems.append(problem_from_error(module.path, exc))
    ast: list[dict[str, Any]] = json.loads(engine.get_ast_as_json())
    denied = IMPURE_BUILTINS - options.capabilities
    for use in builtin_uses(ast, frozenset(denied)):
        problems.append(
            PolicyProblem(
                use.file,
                f"builtin `{use.name}` is not allowed by the capabilities",
                "rego_capability_error",
                use.line,
                use.col,
            )
        )
    if problems:
        raise PolicyError(problems)
    for name in denied:
        engine.add_extension(name, _IMPURE_ARITY[name], _refuse(name))
    cell = clock or _Clock()
    engine.add_extension("time.now_ns", 0, lambda: cell.now_ns)
    engine.add_data(dict(data))
    return engine, ast


def _decision_rules(
    action: str, rules: Mapping[str, set[str]]
) -> tuple[tuple[str, str], ...] | None:
    """The (key, rule path) pairs one decision evaluates, or None without a package.

    Each rule is evaluated on its own: cheaper in regorus than one generated
    rule gathering them (an object over three references cost about a third more).
    """
    package = rego_package(action)
    if package not in rules:
        return None
    return tuple(
        (f"{prefix}{rule}", f"data.{source}.{rule}")
        for prefix, source in (("", package), ("common_", REGO_COMMON_PACKAGE))
        for rule in DECISION_RULES
        if rule in rules.get(source, set())
    )


class CompiledRego:
    """Rego policies compiled once; evaluate many times, from any thread.

    Each thread evaluates on an engine of its own. regorus engines may not
    cross threads (even a clone made on another thread panics), so the
    compiling thread clones its engine and any other thread compiles the same
    sources once, on first use (``rebuild``).
    """

    engine_name = "rego"

    def __init__(
        self,
        engine: regorus.Engine,
        clock: _Clock,
        eval_rules: dict[str, tuple[tuple[str, str], ...]],
        package_bundles: dict[str, str],
        tree: DataTree | None = None,
        rebuild: Callable[[], regorus.Engine] | None = None,
    ) -> None:
        self._base = engine
        self._owner = threading.get_ident()
        self._rebuild = rebuild
        self._tree = tree or DataTree({}, {})
        self._clock = clock
        self._eval_rules = eval_rules
        self._package_bundles = package_bundles
        self._local = threading.local()

    @property
    def decision_rules(self) -> Mapping[str, tuple[tuple[str, str], ...]]:
        """Per action: (key, rule path) pairs a decision evaluates (``deny``, ``common_deny``...)."""
        return self._eval_rules

    @property
    def package_owners(self) -> Mapping[str, str]:
        """Package (``aion.agent.deploy``) → the bundle that owns it."""
        return self._package_bundles

    @property
    def packages(self) -> list[str]:
        """Packages of the compiled policies."""
        return sorted(self._package_bundles)

    def participates(self, action: str) -> bool:
        """Whether a package for ``action`` exists."""
        return action in self._eval_rules

    def prepare(self) -> None:
        """Make this thread's engine now (compiling on a thread that did not compile)."""
        self._engine()

    def _fresh(self) -> regorus.Engine:
        if self._rebuild is None or threading.get_ident() == self._owner:
            return self._base.clone()
        return self._rebuild()

    def _engine(self) -> regorus.Engine:
        engine: regorus.Engine | None = getattr(self._local, "engine", None)
        if engine is None:
            engine = self._fresh()
            self._local.engine = engine
        return engine

    def _bare_engine(self) -> regorus.Engine:
        """This thread's engine that never holds an input (a query without one)."""
        engine: regorus.Engine | None = getattr(self._local, "bare", None)
        if engine is None:
            engine = self._fresh()
            self._local.bare = engine
        return engine

    def evaluate_path(
        self, segments: Sequence[str], input_doc: Any, now_ns: int
    ) -> tuple[bool, Any]:
        """The value of ``data.<segments>`` (a rule, a package or data) for ``input_doc``.

        Returns ``(defined, value)``; sets come back as arrays, as in OPA's
        JSON. ``input_doc`` None means no input (OPA reads ``"input": null`` the
        same way): ``input`` is then undefined, not null. The segments must be a
        plain reference (:func:`~engine.opaquery.parse_data_path`); anything else
        is :class:`~engine.errors.InvalidInput`, never spliced into a query. An
        evaluation error raises :class:`RegoQueryError`.

        A path at or below a rule is one evaluation. A package (or a prefix of
        packages) is assembled from its data and one evaluation per rule: regorus
        evaluates a whole package object wrongly (rule definitions go missing).
        """
        path = tuple(segments)
        if parse_data_path("/".join(path)) != path:
            raise InvalidInput("a data path is a sequence of plain segments")
        engine = self._bare_engine() if input_doc is None else self._engine()
        self._clock.now_ns = now_ns
        try:
            if input_doc is not None:
                engine.set_input(input_doc)
            if self._tree.below_rule(path):
                return rule_value(engine, rego_ref(path))
            return assemble(self._tree, engine, path)
        except RegoQueryError:
            raise
        except Exception as exc:  # regorus raises RuntimeError and ValueError alike
            raise RegoQueryError(clean_engine_message(str(exc))) from exc

    def evaluate(self, action: str, doc: dict[str, Any], now_ns: int) -> EngineVerdict:
        """Evaluate ``doc`` (the request as ``input``) for ``action``."""
        started = time.perf_counter()
        paths = self._eval_rules.get(action)
        verdict = EngineVerdict(self.engine_name, participated=paths is not None)
        if paths is None:
            return verdict
        package = rego_package(action)
        bundle = self._package_bundles.get(package, "")
        engine = self._engine()
        self._clock.now_ns = now_ns
        try:
            engine.set_input(doc)
            result = {key: eval_json(engine, path) for key, path in paths}
        except Exception as exc:  # an engine fault of any kind denies, named
            verdict.errors.append(
                EvalError("rego", "rego_eval_error", clean_engine_message(str(exc)))
            )
            result = None
        if not verdict.errors:
            self._collect(verdict, result, package, bundle)
        verdict.duration_us = (time.perf_counter() - started) * 1e6
        return verdict

    def _collect(self, verdict: EngineVerdict, result: Any, package: str, bundle: str) -> None:
        if not isinstance(result, dict) or result.get("deny") is None:
            verdict.errors.append(
                EvalError("rego", "undefined_result", f"`data.{package}.deny` is undefined")
            )
            return
        common_bundle = self._package_bundles.get(REGO_COMMON_PACKAGE, "")
        verdict.denies += reasons_of(result["deny"], "rego", f"{package}.deny", bundle)
        verdict.denies += reasons_of(
            result.get("common_deny"), "rego", f"{REGO_COMMON_PACKAGE}.deny", common_bundle
        )
        verdict.warns += reasons_of(result.get("warn"), "rego", f"{package}.warn", bundle)
        verdict.warns += reasons_of(
            result.get("common_warn"), "rego", f"{REGO_COMMON_PACKAGE}.warn", common_bundle
        )
        for key in ("obligations", "common_obligations"):
            value = result.get(key)
            if value is None:
                continue
            items = value if isinstance(value, list | set | frozenset) else [value]
            for item in sorted(items, key=str):
                verdict.obligations.append(
                    jsonable(item) if isinstance(item, dict) else {"value": jsonable(item)}
                )


def unknown_action_packages(ast: list[dict[str, Any]]) -> list[PolicyProblem]:
    """A problem for each package shaped like an action package whose action is not governed."""
    problems = []
    for module in ast:
        package = package_of(module)
        action = package_action(package)
        if action is not None and unknown_action(action):
            file = module.get("source", {}).get("file", "")
            problems.append(
                PolicyProblem(
                    file,
                    f"package `{package}` is for unknown action `{action}`",
                    "unknown_action",
                    1,
                )
            )
    return problems


def compile_rego(
    bundles: Mapping[str, tuple[list[str], list[SourceFile]]],
    data: Mapping[str, Any],
    options: RegoOptions = DEFAULT_REGO_OPTIONS,
) -> CompiledRego:
    """Compile the Rego of several bundles (name → (roots, modules)) with merged ``data``.

    Packages must lie inside their bundle's roots.
    """
    modules = [m for _, mods in bundles.values() for m in mods]
    clock = _Clock()
    engine, ast = new_engine(modules, data, options, clock)
    owner = {m.path: name for name, (_, mods) in bundles.items() for m in mods}
    rules: dict[str, set[str]] = {}
    documents: dict[tuple[str, ...], frozenset[str]] = {}
    package_bundles: dict[str, str] = {}
    unknown = unknown_action_packages(ast)
    if unknown:
        raise PolicyError(unknown)
    for module in ast:
        package = package_of(module)
        file = module.get("source", {}).get("file", "")
        bundle = owner.get(file, "")
        if bundle:
            check_path_in_roots(
                package.replace(".", "/"), bundles[bundle][0], f"package in `{file}`"
            )
        rules.setdefault(package, set()).update(rule_names(module))
        key = tuple(package.split("."))
        documents[key] = documents.get(key, frozenset()) | document_rules(module)
        package_bundles.setdefault(package, bundle)
    eval_rules: dict[str, tuple[tuple[str, str], ...]] = {}
    for action in ACTIONS:
        paths = _decision_rules(action, rules)
        if paths is not None:
            eval_rules[action] = paths
    return CompiledRego(
        engine,
        clock,
        eval_rules,
        package_bundles,
        DataTree(documents, data),
        rebuild=lambda: new_engine(modules, data, options, clock)[0],
    )
