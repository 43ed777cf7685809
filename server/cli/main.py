"""Entry point of `aion`: parse arguments, dispatch, map errors to exit codes."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from engine.errors import EngineError
from server.cli import bundle_cmd, decisions_cmd, policy_cmd, registry_cmd, server_cmd, worker_cmd
from server.cli.common import EXIT_USAGE, UsageError, report_error


def build_parser() -> argparse.ArgumentParser:
    """The whole `aion` command tree."""
    parser = argparse.ArgumentParser(
        prog="aion",
        description="AION Governance: policy-as-code for AI agents (Rego + Cedar, signed bundles).",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    policy_cmd.register(commands)
    bundle_cmd.register(commands)
    server_cmd.register(commands)
    decisions_cmd.register(commands)
    registry_cmd.register(commands)
    worker_cmd.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run `aion` and return its exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.handler(args)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except EngineError as exc:
        return report_error(exc)
    return code


if __name__ == "__main__":
    sys.exit(main())
