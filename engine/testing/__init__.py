"""Policy test runners (Rego and Cedar) and their reports."""

from engine.testing.report import Outcome, Report, TestResult, render
from engine.testing.runner import discover_and_run

__all__ = ["Outcome", "Report", "TestResult", "discover_and_run", "render"]
