"""`aion policy fmt`: Cedar formatted with cedarpy's formatter (Cedar's own conventions).

Rego is not formatted: no maintained Rego formatter exists for Python, and
regorus has none. Rego files are listed as skipped so nobody mistakes silence
for a check.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from pathlib import Path
from typing import Any

import cedarpy

from server.cli.common import EXIT_FAIL, EXIT_OK, fail


def _files(paths: list[str], suffix: str) -> list[Path]:
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            fail(f"`{path}`: no such file or directory")
        found += [path] if path.is_file() else sorted(path.rglob(f"*{suffix}"))
    return [p for p in found if p.suffix == suffix and ".venv" not in p.parts]


def cmd_fmt(args: argparse.Namespace) -> int:
    """Format Cedar files in place, or with --check report the ones that would change."""
    changed = 0
    for path in _files(args.paths, ".cedar"):
        text = path.read_text()
        try:
            formatted = cedarpy.format_policies(text, args.line_width, 2)
        except ValueError as exc:
            fail(f"`{path}`: cannot format, it does not parse ({str(exc).splitlines()[0]})")
        if not formatted.endswith("\n"):
            formatted += "\n"
        if formatted == text:
            continue
        changed += 1
        if args.check:
            print(f"would reformat {path}")
            if args.diff:
                sys.stdout.writelines(
                    difflib.unified_diff(
                        text.splitlines(True), formatted.splitlines(True), str(path), str(path)
                    )
                )
        else:
            path.write_text(formatted)
            print(f"reformatted {path}")
    skipped = _files(args.paths, ".rego")
    if skipped:
        print(
            f"skipped {len(skipped)} Rego file(s): no Rego formatter is available", file=sys.stderr
        )
    return EXIT_FAIL if args.check and changed else EXIT_OK


def register(sub: Any) -> None:
    """Add `aion policy fmt`."""
    p = sub.add_parser("fmt", help="format Cedar policies (Rego is not formatted)")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument(
        "--check", action="store_true", help="change nothing; exit 1 if a file would change"
    )
    p.add_argument("--diff", action="store_true", help="with --check, show the changes")
    p.add_argument("--line-width", type=int, default=80)
    p.set_defaults(handler=cmd_fmt)
