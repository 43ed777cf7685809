"""`aion policy validate`: every problem of a bundle, collected at once."""

from __future__ import annotations

from engine.bundle.bundle import Bundle
from engine.bundle.manifest import check_path_in_roots
from engine.cedar import CedarBundle, compile_cedar
from engine.errors import BundleError, PolicyError, PolicyProblem
from engine.rego import DEFAULT_REGO_OPTIONS, RegoOptions, new_engine, unknown_action_packages
from engine.regoast import package_of
from engine.regolint import undefined_under_not


def _rego_problems(bundle: Bundle, options: RegoOptions) -> list[PolicyProblem]:
    if not (bundle.rego or bundle.rego_tests):
        return []
    if bundle.manifest.rego_version == 0:
        options = RegoOptions(True, options.capabilities)
    try:
        _, ast = new_engine([*bundle.rego, *bundle.rego_tests], bundle.data, options)
    except PolicyError as exc:
        return list(exc.problems)
    problems = unknown_action_packages(ast)
    # Only the policies: a test may well negate over an undefined value on purpose.
    sources = {f.path: f.text for f in bundle.rego}
    problems += undefined_under_not(
        [m for m in ast if m.get("source", {}).get("file") in sources], sources
    )
    for module in ast:
        file = module.get("source", {}).get("file", "")
        try:
            check_path_in_roots(
                package_of(module).replace(".", "/"), bundle.manifest.roots, "package"
            )
        except BundleError as exc:
            problems.append(PolicyProblem(file, exc.message, exc.code))
    return problems


def validate_bundle(
    bundle: Bundle, options: RegoOptions = DEFAULT_REGO_OPTIONS
) -> list[PolicyProblem]:
    """Rego compile problems, root violations and Cedar parse/schema problems of ``bundle``."""
    problems = _rego_problems(bundle, options)
    if bundle.cedar or bundle.cedar_schema:
        try:
            compile_cedar(
                [CedarBundle(bundle.name, bundle.cedar, bundle.cedar_schema, bundle.cedar_links)]
            )
        except PolicyError as exc:
            problems += exc.problems
    return problems
