"""Helpers shared by the CLI commands: exit codes, reading documents, printing errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, NoReturn

import yaml

from engine.errors import EngineError, PolicyError

EXIT_OK = 0
EXIT_FAIL = 1
EXIT_USAGE = 2


class UsageError(Exception):
    """Bad arguments or unreadable input: exit 2 with a message."""


def fail(message: str) -> NoReturn:
    """Raise a usage error."""
    raise UsageError(message)


def report_error(exc: BaseException) -> int:
    """Print an error the way every command does and return the exit code."""
    if isinstance(exc, PolicyError):
        for problem in exc.problems:
            print(f"error: {problem}", file=sys.stderr)
    elif isinstance(exc, EngineError):
        print(f"error: {exc.code}: {exc.message}", file=sys.stderr)
    else:
        print(f"error: {exc}", file=sys.stderr)
    return EXIT_USAGE


def read_documents(path: Path) -> list[Any]:
    """The JSON or YAML documents in ``path`` (YAML may hold several)."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"`{path}`: cannot read ({exc})")
    try:
        if path.suffix == ".json":
            return [json.loads(text)]
        return [d for d in yaml.safe_load_all(text) if d is not None]
    except (ValueError, yaml.YAMLError) as exc:
        fail(f"`{path}`: not valid {'JSON' if path.suffix == '.json' else 'YAML'} ({exc})")


def read_key(path: str) -> str:
    """A PEM key (or HMAC secret) from a file."""
    try:
        return Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"cannot read key `{path}` ({exc})")
