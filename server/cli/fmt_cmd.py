"""`aion policy fmt`: Cedar formatted with cedarpy's formatter (Cedar's conventions),
Rego with `opa fmt` when an OPA binary is available (`--opa`, `AION_OPA_BIN`, or
`opa` on PATH; `make test` builds one). There is no maintained Rego formatter
for Python and regorus has none, so without OPA Rego files are listed as
skipped: silence must never pass for a check.
"""

from __future__ import annotations

import argparse
import difflib
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
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


def _cedar(line_width: int) -> Callable[[Path, str], str]:
    def format_cedar(path: Path, text: str) -> str:
        try:
            formatted = cedarpy.format_policies(text, line_width, 2)
        except ValueError as exc:
            fail(f"`{path}`: cannot format, it does not parse ({str(exc).splitlines()[0]})")
        return formatted if formatted.endswith("\n") else formatted + "\n"

    return format_cedar


def _rego(opa: str) -> Callable[[Path, str], str]:
    def format_rego(path: Path, _text: str) -> str:
        done = subprocess.run([opa, "fmt", str(path)], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            fail(
                f"`{path}`: cannot format, it does not parse ({(done.stdout + done.stderr).strip()})"
            )
        return done.stdout

    return format_rego


def _apply(
    files: list[Path], formatter: Callable[[Path, str], str], args: argparse.Namespace
) -> int:
    changed = 0
    for path in files:
        text = path.read_text()
        formatted = formatter(path, text)
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
    return changed


def cmd_fmt(args: argparse.Namespace) -> int:
    """Format Cedar (and Rego with OPA) in place, or with --check report what would change."""
    changed = _apply(_files(args.paths, ".cedar"), _cedar(args.line_width), args)
    rego = _files(args.paths, ".rego")
    opa = args.opa or os.environ.get("AION_OPA_BIN") or shutil.which("opa")
    if rego and opa:
        changed += _apply(rego, _rego(opa), args)
    elif rego:
        print(
            f"skipped {len(rego)} Rego file(s): no OPA binary for `opa fmt` (see --opa)",
            file=sys.stderr,
        )
    return EXIT_FAIL if args.check and changed else EXIT_OK


def register(sub: Any) -> None:
    """Add `aion policy fmt`."""
    p = sub.add_parser(
        "fmt", help="format Cedar policies, and Rego with `opa fmt` when OPA is available"
    )
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument(
        "--check", action="store_true", help="change nothing; exit 1 if a file would change"
    )
    p.add_argument("--diff", action="store_true", help="with --check, show the changes")
    p.add_argument("--line-width", type=int, default=80, help="Cedar line width")
    p.add_argument(
        "--opa", metavar="PATH", help="OPA binary for Rego (default: $AION_OPA_BIN, then PATH)"
    )
    p.set_defaults(handler=cmd_fmt)
