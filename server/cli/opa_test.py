"""`aion policy test --engine opa`: the same Rego tests, run by the real OPA binary.

Each bundle found under the paths (as `aion policy test` finds them) is written
to a scratch directory as an OPA bundle (its Rego, its tests, its data merged
into one root `data.json`, its `.manifest`) and run there with
``opa test --format json --bundle .``. Writing the bundle out keeps OPA from
loading files that are not bundle data (Cedar test cases, `entities.json`),
which it would otherwise merge into `data`. OPA's results are mapped into the
same :class:`~engine.testing.report.Report` the embedded runner produces, so
``--format``, ``--run`` and ``-v`` behave the same. OPA cannot run Cedar: Cedar
tests are reported as skipped, with that reason, and counted separately.

This module runs processes: it belongs to the CLI layer, never to `engine`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.bundle.bundle import Bundle
from engine.bundle.files import MANIFEST_FILE
from engine.testing import Outcome, Report, TestResult
from engine.testing.cedar_runner import run_folder, run_json_file
from engine.testing.report import FileCoverage
from engine.testing.sources import discover
from server.cli.common import fail

CEDAR_SKIP_REASON = "Cedar test: OPA runs Rego only"
_TIMEOUT_S = 600.0


class OpaLoadError(Exception):
    """OPA could not load or compile the policies (a usage error, exit 2)."""


@dataclass(frozen=True, slots=True)
class OpaRun:
    """The outcome of one ``aion policy test --engine opa``."""

    report: Report
    cedar_skipped: int
    opa_version: str
    notes: tuple[str, ...] = ()


def find_opa(explicit: str | None) -> Path:
    """The OPA binary: ``--opa-bin``, else ``AION_OPA_BIN``, else `opa` on PATH.

    A missing binary is a usage error (exit 2) naming where it was looked for.
    """
    candidate = explicit or os.environ.get("AION_OPA_BIN") or shutil.which("opa")
    if not candidate:
        fail("the OPA binary was not found: pass --opa-bin, set AION_OPA_BIN, or put `opa` on PATH")
    path = Path(candidate)
    if not path.is_file() or not os.access(path, os.X_OK):
        fail(f"the OPA binary `{path}` does not exist or is not executable")
    return path.resolve()  # OPA runs from a scratch directory: a relative path would break


def opa_version(opa: Path) -> str:
    """The first line of ``opa version`` (for example ``Version: 1.22.3``)."""
    done = subprocess.run(
        [str(opa), "version"], capture_output=True, text=True, timeout=60, check=False
    )
    return done.stdout.splitlines()[0].strip() if done.stdout else "unknown"


def _write_bundle(bundle: Bundle, into: Path) -> dict[str, str]:
    """Write ``bundle`` as an OPA bundle under ``into``.

    Returns each written path (relative to ``into``) → the file's path in the bundle.
    """
    written: dict[str, str] = {}
    for source in (*bundle.rego, *bundle.rego_tests):
        relative = source.path.lstrip("/")
        target = into / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(source.text)
        written[relative] = source.path
    if bundle.data:
        (into / "data.json").write_text(json.dumps(bundle.data))
    manifest = bundle.files.get(MANIFEST_FILE)
    if manifest is not None:
        (into / MANIFEST_FILE).write_bytes(manifest)
    return written


def _shown(file: str, written: dict[str, str], root: Path) -> str:
    original = written.get(file, file)
    return str(root / original) if root != Path(".") else original


def _run_opa(opa: Path, args: Sequence[str], cwd: Path, written: dict[str, str], root: Path) -> Any:
    # OPA runs inside the bundle (`--bundle .`): its coverage report doubles absolute paths.
    done = subprocess.run(
        [str(opa), *args, "--bundle", "."],
        capture_output=True,
        text=True,
        timeout=_TIMEOUT_S,
        check=False,
        cwd=cwd,
    )
    # Exit 0: all passed, 2: some failed; anything else (1: load or compile error) is no run.
    if done.returncode in (0, 2):
        try:
            return json.loads(done.stdout)
        except ValueError:
            pass
    text = (done.stderr + done.stdout).strip()
    for path in sorted(written, key=len, reverse=True):
        text = re.sub(rf"(?m)^{re.escape(path)}:", f"{_shown(path, written, root)}:", text)
    raise OpaLoadError(text or f"opa exited with status {done.returncode}")


def _case_name(key: str) -> str:
    return json.dumps(key)


def _sub_results(
    name: str, subs: dict[str, Any], file: str, duration_us: float
) -> Iterator[TestResult]:
    for key in sorted(subs):
        sub = subs[key]
        full = f"{name}[{_case_name(key)}]"
        nested = sub.get("sub_results")
        if nested:
            yield from _sub_results(full, nested, file, duration_us)
        elif sub.get("fail"):
            yield TestResult(full, file, Outcome.FAILED, "case failed in OPA", duration_us)
        else:
            yield TestResult(full, file, Outcome.PASSED, "", duration_us)


def map_results(
    entries: list[dict[str, Any]], written: dict[str, str], root: Path
) -> list[TestResult]:
    """OPA's ``opa test --format json`` entries as our test results.

    A parameterised test reports one result per case, named as the embedded
    runner names them (``data.pkg.test_x["case"]``).
    """
    out: list[TestResult] = []
    for entry in entries:
        name = f"{entry['package']}.{entry['name']}"
        file = _shown(entry.get("location", {}).get("file", ""), written, root)
        duration_us = entry.get("duration", 0) / 1000
        error = entry.get("error")
        if entry.get("skip"):
            out.append(TestResult(name, file, Outcome.SKIPPED))
        elif error:
            message = f"{error.get('code', 'error')}: {error.get('message', '')}"
            out.append(TestResult(name, file, Outcome.ERRORED, message, duration_us))
        elif entry.get("sub_results"):
            out += _sub_results(name, entry["sub_results"], file, duration_us)
        elif entry.get("fail"):
            out.append(TestResult(name, file, Outcome.FAILED, "test failed in OPA", duration_us))
        else:
            out.append(TestResult(name, file, Outcome.PASSED, "", duration_us))
    return out


def _lines(ranges: list[dict[str, Any]]) -> tuple[int, ...]:
    rows: set[int] = set()
    for r in ranges:
        rows.update(range(r["start"]["row"], r["end"]["row"] + 1))
    return tuple(sorted(rows))


def map_coverage(report: dict[str, Any], written: dict[str, str], root: Path) -> list[FileCoverage]:
    """Line coverage of the non-test files from ``opa test --coverage --format json``."""
    out = []
    for path, entry in sorted(report.get("files", {}).items()):
        if path.endswith("_test.rego"):
            continue
        covered = _lines(entry.get("covered", []))
        missed = _lines(entry.get("not_covered", []))
        out.append(FileCoverage(_shown(path, written, root), covered, missed))
    return out


def _opa_flags(v0_compatible: bool) -> list[str]:
    return ["--v0-compatible"] if v0_compatible else []


def run_in_opa(
    paths: Sequence[Path],
    opa: Path,
    *,
    run: str | None = None,
    coverage: bool = False,
    v0_compatible: bool = False,
) -> OpaRun:
    """Run the Rego tests under ``paths`` in OPA; Cedar tests are reported as skipped.

    Raises :class:`OpaLoadError` when OPA cannot load the policies, and the
    engine's bundle errors when our discovery cannot read them.
    """
    pattern = re.compile(run) if run else None
    workspace = discover(paths)
    report = Report()
    notes: list[str] = []
    for bundle, root in zip(workspace.bundles, workspace.roots, strict=True):
        if not bundle.rego_tests and not (coverage and bundle.rego):
            continue
        with tempfile.TemporaryDirectory(prefix="aion-opa-test-") as scratch:
            into = Path(scratch)
            written = _write_bundle(bundle, into)
            base = ["test", "--format", "json", *_opa_flags(v0_compatible)]
            results = map_results(_run_opa(opa, base, into, written, root), written, root)
            report.results += [r for r in results if not pattern or pattern.search(r.name)]
            if not coverage:
                continue
            # With --coverage, OPA prints a failing run as text, not a coverage report.
            if any(r.outcome in (Outcome.FAILED, Outcome.ERRORED) for r in results):
                notes.append(f"no OPA coverage for `{root}`: some of its tests failed")
                continue
            cover = _run_opa(opa, [*base, "--coverage"], into, written, root)
            report.coverage += map_coverage(cover, written, root)
    cedar = _cedar_tests(workspace.cedar_test_files, workspace.cedar_test_dirs, pattern)
    report.results += cedar
    return OpaRun(report, len(cedar), opa_version(opa), tuple(notes))


def _cedar_tests(
    files: Sequence[Path], dirs: Sequence[Path], pattern: re.Pattern[str] | None
) -> list[TestResult]:
    """The Cedar tests OPA cannot run, as skipped results.

    They are listed by our Cedar runner so that the names are exactly the
    embedded run's; their outcome there is not used.
    """
    found = [r for f in files for r in run_json_file(f)] + [r for d in dirs for r in run_folder(d)]
    return [
        TestResult(r.name, r.file, Outcome.SKIPPED, CEDAR_SKIP_REASON)
        for r in found
        if not pattern or pattern.search(f"{r.file}::{r.name}")
    ]
