"""Test results and their text, JSON and JUnit renderings."""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field
from xml.etree import ElementTree as ET


class Outcome(enum.StrEnum):
    """How one test ended."""

    PASSED = "passed"
    FAILED = "failed"
    ERRORED = "errored"
    SKIPPED = "skipped"


@dataclass(frozen=True, slots=True)
class TestResult:
    """One test case."""

    name: str
    file: str
    outcome: Outcome
    message: str = ""
    duration_us: float = 0.0


@dataclass(frozen=True, slots=True)
class FileCoverage:
    """Line coverage of one non-test Rego file."""

    file: str
    covered: tuple[int, ...]
    not_covered: tuple[int, ...]

    @property
    def percent(self) -> float:
        """Covered lines over coverable lines, in percent (100 when nothing is coverable)."""
        total = len(self.covered) + len(self.not_covered)
        return 100.0 if total == 0 else 100.0 * len(self.covered) / total


@dataclass
class Report:
    """Everything one `aion policy test` run found."""

    results: list[TestResult] = field(default_factory=list)
    coverage: list[FileCoverage] = field(default_factory=list)

    def count(self, outcome: Outcome) -> int:
        """Number of results with ``outcome``."""
        return sum(1 for r in self.results if r.outcome is outcome)

    @property
    def ok(self) -> bool:
        """True when nothing failed or errored."""
        return self.count(Outcome.FAILED) == 0 and self.count(Outcome.ERRORED) == 0

    @property
    def coverage_percent(self) -> float:
        """Line coverage over all covered files."""
        covered = sum(len(c.covered) for c in self.coverage)
        total = covered + sum(len(c.not_covered) for c in self.coverage)
        return 100.0 if total == 0 else 100.0 * covered / total


def _text(report: Report, verbose: bool) -> str:
    lines = []
    for r in report.results:
        if verbose or r.outcome in (Outcome.FAILED, Outcome.ERRORED):
            suffix = f": {r.message}" if r.message else ""
            lines.append(f"{r.outcome.value.upper():8} {r.file}: {r.name}{suffix}")
    if report.coverage:
        lines.append("")
        lines.append("coverage:")
        for c in report.coverage:
            missing = (
                f" (not covered: {', '.join(map(str, c.not_covered))})" if c.not_covered else ""
            )
            lines.append(f"  {c.percent:6.2f}%  {c.file}{missing}")
        lines.append(f"  {report.coverage_percent:6.2f}%  total")
    lines.append("-" * 40)
    lines.append(
        f"{report.count(Outcome.PASSED)} passed, {report.count(Outcome.FAILED)} failed, "
        f"{report.count(Outcome.ERRORED)} errored, {report.count(Outcome.SKIPPED)} skipped"
    )
    return "\n".join(lines)


def _json(report: Report) -> str:
    doc: dict[str, object] = {
        "passed": report.count(Outcome.PASSED),
        "failed": report.count(Outcome.FAILED),
        "errored": report.count(Outcome.ERRORED),
        "skipped": report.count(Outcome.SKIPPED),
        "results": [
            {"name": r.name, "file": r.file, "outcome": r.outcome.value, "message": r.message}
            for r in report.results
        ],
    }
    if report.coverage:
        doc["coverage"] = {
            "percent": round(report.coverage_percent, 2),
            "files": [
                {"file": c.file, "percent": round(c.percent, 2), "not_covered": list(c.not_covered)}
                for c in report.coverage
            ],
        }
    return json.dumps(doc, indent=2)


def _junit(report: Report) -> str:
    suite = ET.Element(
        "testsuite",
        name="aion policy test",
        tests=str(len(report.results)),
        failures=str(report.count(Outcome.FAILED)),
        errors=str(report.count(Outcome.ERRORED)),
        skipped=str(report.count(Outcome.SKIPPED)),
    )
    for r in report.results:
        case = ET.SubElement(
            suite, "testcase", classname=r.file, name=r.name, time=f"{r.duration_us / 1e6:.6f}"
        )
        if r.outcome is Outcome.FAILED:
            ET.SubElement(case, "failure", message=r.message or "failed")
        elif r.outcome is Outcome.ERRORED:
            ET.SubElement(case, "error", message=r.message or "error")
        elif r.outcome is Outcome.SKIPPED:
            ET.SubElement(case, "skipped")
    root = ET.Element("testsuites")
    root.append(suite)
    return ET.tostring(root, encoding="unicode", xml_declaration=True)


def render(report: Report, fmt: str, verbose: bool = False) -> str:
    """``report`` as ``text``, ``json`` or ``junit``."""
    if fmt == "json":
        return _json(report)
    if fmt == "junit":
        return _junit(report)
    return _text(report, verbose)
