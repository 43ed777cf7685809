"""`aion policy test`: discover Rego and Cedar tests under some paths and run them."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from engine.rego import DEFAULT_REGO_OPTIONS, RegoOptions
from engine.testing.cedar_runner import run_folder, run_json_file
from engine.testing.rego_runner import run_rego_tests
from engine.testing.report import Report
from engine.testing.sources import discover


def discover_and_run(
    paths: Sequence[Path],
    *,
    options: RegoOptions = DEFAULT_REGO_OPTIONS,
    run: str | None = None,
    coverage: bool = False,
) -> Report:
    """Run every test found under ``paths``.

    Raises :class:`~engine.errors.BundleError` or :class:`~engine.errors.PolicyError`
    when sources cannot be loaded or compiled (a usage error, not a test failure).
    """
    pattern = re.compile(run) if run else None
    workspace = discover(paths)
    report = Report()
    for bundle, root in zip(workspace.bundles, workspace.roots, strict=True):
        results, cover = run_rego_tests(bundle, root, options, pattern, coverage)
        report.results += results
        report.coverage += cover
    for file in workspace.cedar_test_files:
        report.results += [
            r for r in run_json_file(file) if not pattern or pattern.search(f"{r.file}::{r.name}")
        ]
    for folder in workspace.cedar_test_dirs:
        report.results += [
            r for r in run_folder(folder) if not pattern or pattern.search(f"{r.file}::{r.name}")
        ]
    return report
