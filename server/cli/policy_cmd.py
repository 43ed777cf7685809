"""`aion policy test | eval | check | validate | fmt`."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import msgspec

from engine import DecisionRequest, Mode, compile_bundles, decide, load_bundle
from engine.check import Checker
from engine.rego import RegoOptions
from engine.testing import Report, discover_and_run, render
from engine.testing.sources import discover
from engine.validate import validate_bundle
from server.cli import check_output, fmt_cmd, opa_test
from server.cli.common import EXIT_FAIL, EXIT_OK, fail, read_documents


def _options(args: argparse.Namespace) -> RegoOptions:
    return RegoOptions(
        v0_compatible=getattr(args, "v0_compatible", False),
        capabilities=frozenset(getattr(args, "capability", None) or ()),
    )


def _rego_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--v0-compatible", action="store_true", help="parse Rego as v0 (pre-1.0 syntax)"
    )
    parser.add_argument(
        "--capability",
        action="append",
        metavar="BUILTIN",
        help="allow an impure builtin such as http.send (repeatable)",
    )


def _test_in_opa(args: argparse.Namespace) -> tuple[Report, int]:
    """Run the Rego tests in the real OPA; returns the report and the Cedar tests skipped."""
    if getattr(args, "capability", None):
        fail("--capability applies to the embedded engine; OPA allows its builtins by default")
    try:
        done = opa_test.run_in_opa(
            [Path(p) for p in args.paths],
            opa_test.find_opa(args.opa_bin),
            run=args.run,
            coverage=args.coverage,
            v0_compatible=args.v0_compatible,
        )
    except opa_test.OpaLoadError as exc:
        fail(f"OPA could not load the policies:\n{exc}")
    print(f"engine: opa ({done.opa_version})", file=sys.stderr)
    for note in done.notes:
        print(f"note: {note}", file=sys.stderr)
    if done.cedar_skipped:
        print(
            f"note: {done.cedar_skipped} Cedar test(s) skipped: OPA runs Rego only",
            file=sys.stderr,
        )
    return done.report, done.cedar_skipped


def _render_opa(report: Report, fmt: str, verbose: bool, cedar_skipped: int) -> str:
    """The report as the embedded engine renders it, marked as OPA's, Cedar skips counted."""
    text = render(report, fmt, verbose=verbose)
    if fmt == "json":
        doc = json.loads(text)
        doc["engine"] = "opa"
        doc["cedar_skipped"] = cedar_skipped
        return json.dumps(doc, indent=2)
    if fmt == "junit":
        root = ET.fromstring(text)
        for suite in root.iter("testsuite"):
            suite.set("name", "aion policy test (opa)")
        messages = {(r.file, r.name): r.message for r in report.results}
        for case in root.iter("testcase"):
            skipped = case.find("skipped")
            message = messages.get((case.get("classname", ""), case.get("name", "")))
            if skipped is not None and message:
                skipped.set("message", message)
        return ET.tostring(root, encoding="unicode", xml_declaration=True)
    if not cedar_skipped:
        return text
    return f"{text}\n{cedar_skipped} Cedar test(s) not run: OPA runs Rego only"


def cmd_test(args: argparse.Namespace) -> int:
    """Run Rego and Cedar tests, in the embedded engine or (Rego only) in the real OPA."""
    if args.engine == "opa":
        report, cedar_skipped = _test_in_opa(args)
        print(_render_opa(report, args.format, args.verbose, cedar_skipped))
        if len(report.results) == cedar_skipped:
            print("error: no Rego tests found", file=sys.stderr)
            return EXIT_FAIL
    else:
        report = discover_and_run(
            [Path(p) for p in args.paths],
            options=_options(args),
            run=args.run,
            coverage=args.coverage,
        )
        print(render(report, args.format, verbose=args.verbose))
        if not report.results:
            print("error: no tests found", file=sys.stderr)
            return EXIT_FAIL
    if args.threshold is not None and report.coverage_percent < args.threshold:
        print(
            f"error: coverage {report.coverage_percent:.2f}% is below the threshold {args.threshold}%",
            file=sys.stderr,
        )
        return EXIT_FAIL
    return EXIT_OK if report.ok else EXIT_FAIL


def _request(path: Path, action: str | None) -> DecisionRequest:
    docs = read_documents(path)
    if len(docs) != 1 or not isinstance(docs[0], dict):
        fail(f"`{path}`: expected one decision request object")
    doc: dict[str, Any] = docs[0]
    if action:
        doc["action"] = action
    try:
        return msgspec.convert(doc, DecisionRequest)
    except msgspec.ValidationError as exc:
        fail(f"`{path}`: invalid decision request: {exc}")


def cmd_eval(args: argparse.Namespace) -> int:
    """Evaluate one request and print the Decision."""
    bundles = [load_bundle(Path(p)) for p in args.bundle]
    policy_set = compile_bundles(bundles, _options(args))
    request = _request(Path(args.input), args.action)
    decision = decide(policy_set, request, now=datetime.now(UTC), mode=Mode(args.mode))
    print(msgspec.json.format(msgspec.json.encode(decision), indent=2).decode())
    return EXIT_OK if decision.allowed else EXIT_FAIL


def cmd_check(args: argparse.Namespace) -> int:
    """Conftest-style check of documents."""
    bundles = [load_bundle(Path(p)) for p in args.bundle]
    checker = Checker(bundles, _options(args))
    namespaces = sorted(checker.rules) if args.all_namespaces else args.namespace or ["main"]
    results = []
    for file in args.files:
        for document in read_documents(Path(file)):
            results += checker.check(file, document, namespaces)
    print(check_output.render(results, args.output))
    failures = sum(len(r.failures) + len(r.exceptions) for r in results)
    warnings = sum(len(r.warnings) for r in results)
    if args.fail_on_warn:
        return 2 if failures else 1 if warnings else EXIT_OK
    return EXIT_FAIL if failures else EXIT_OK


def cmd_validate(args: argparse.Namespace) -> int:
    """Compile Rego and validate Cedar; print every problem."""
    workspace = discover([Path(p) for p in args.paths])
    problems = 0
    for bundle, root in zip(workspace.bundles, workspace.roots, strict=True):
        for problem in validate_bundle(bundle, _options(args)):
            problems += 1
            print(
                f"{root / problem.file if root != Path('.') else problem.file}"
                f"{f':{problem.line}' if problem.line else ''}"
                f"{f':{problem.col}' if problem.col else ''}: {problem.code}: {problem.message}"
            )
    checked = len(workspace.bundles)
    print(f"{checked} bundle(s) checked, {problems} problem(s)", file=sys.stderr)
    return EXIT_FAIL if problems else EXIT_OK


def register(commands: Any) -> None:
    """Add `aion policy ...` to the command tree."""
    policy = commands.add_parser(
        "policy", help="test, evaluate, check, validate and format policies"
    )
    sub = policy.add_subparsers(dest="policy_command", required=True, metavar="SUBCOMMAND")

    p = sub.add_parser("test", help="run Rego (*_test.rego) and Cedar tests")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--format", choices=("text", "json", "junit"), default="text")
    p.add_argument("--coverage", action="store_true", help="report Rego line coverage")
    p.add_argument("--threshold", type=float, help="fail when coverage is below this percentage")
    p.add_argument("--run", metavar="REGEX", help="only tests whose name matches")
    p.add_argument("-v", "--verbose", action="store_true", help="list passing tests too")
    p.add_argument(
        "--engine",
        choices=("embedded", "opa"),
        default="embedded",
        help="run the Rego tests in the embedded engine or in the real OPA (Cedar: embedded only)",
    )
    p.add_argument(
        "--opa-bin",
        metavar="PATH",
        help="OPA binary for --engine opa (default: $AION_OPA_BIN, else `opa` on PATH)",
    )
    _rego_flags(p)
    p.set_defaults(handler=cmd_test)

    p = sub.add_parser("eval", help="evaluate a decision request; prints the Decision as JSON")
    p.add_argument(
        "--bundle",
        action="append",
        required=True,
        metavar="PATH",
        help="bundle dir or .tar.gz (repeatable)",
    )
    p.add_argument("--input", required=True, metavar="FILE", help="decision request (JSON or YAML)")
    p.add_argument("--action", help="override the request's action")
    p.add_argument("--mode", choices=[m.value for m in Mode], default="enforce")
    _rego_flags(p)
    p.set_defaults(handler=cmd_eval)

    p = sub.add_parser(
        "check", help="check YAML/JSON documents against deny/warn rules (Conftest style)"
    )
    p.add_argument("--bundle", action="append", required=True, metavar="PATH")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument(
        "--namespace", action="append", help="package to check (default: main; repeatable)"
    )
    p.add_argument(
        "--all-namespaces", action="store_true", help="check every package with deny/warn rules"
    )
    p.add_argument("-o", "--output", choices=check_output.FORMATS, default="text")
    p.add_argument("--fail-on-warn", action="store_true", help="exit 1 on warnings, 2 on failures")
    _rego_flags(p)
    p.set_defaults(handler=cmd_check)

    p = sub.add_parser("validate", help="compile Rego and validate Cedar against its schema")
    p.add_argument("paths", nargs="+", metavar="PATH")
    _rego_flags(p)
    p.set_defaults(handler=cmd_validate)

    fmt_cmd.register(sub)
