"""`aion worker` (runs approved tasks from Redis) and `aion relay` (the outbox relay alone)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import logging.config
import signal
from pathlib import Path
from typing import Any

from server.cli.common import EXIT_OK, fail
from server.logs import logging_config
from server.settings import Settings

log = logging.getLogger("aion.worker")


def _settings(args: argparse.Namespace) -> Settings:
    settings = Settings.from_env(
        data_dir=Path(args.data_dir) if args.data_dir else None,
        database_url=args.database_url,
    )
    if not settings.redis_url:
        fail(
            f"`aion {args.command}` needs Redis: set AION_REDIS_URL (redis://host:port/db); "
            "without Redis, `aion serve` runs tasks in process"
        )
    logging.config.dictConfig(logging_config(settings))
    return settings


def _stop_on_signals() -> asyncio.Event:
    """An event set by SIGTERM or SIGINT (a second signal changes nothing: use SIGKILL)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop


def cmd_worker(args: argparse.Namespace) -> int:
    """Run a scheduler on jobs from Redis until SIGTERM."""
    settings = _settings(args)
    if args.concurrency is not None and args.concurrency < 1:
        fail("--concurrency must be at least 1")

    async def main() -> None:
        from server.dispatch.worker import run_worker  # noqa: PLC0415

        stop = _stop_on_signals()
        await run_worker(settings, stop, concurrency=args.concurrency, drain_s=args.drain_s)

    asyncio.run(main())
    return EXIT_OK


def cmd_relay(args: argparse.Namespace) -> int:
    """Move committed outbox rows to Redis (and re-send lost ones) until SIGTERM."""
    settings = _settings(args)

    async def main() -> None:
        from piccolo.engine.postgres import PostgresEngine  # noqa: PLC0415

        from server.db.engine import bind, engine_for  # noqa: PLC0415
        from server.dispatch.arqqueue import ArqJobQueue  # noqa: PLC0415
        from server.dispatch.outbox import OutboxRelay  # noqa: PLC0415

        stop = _stop_on_signals()
        db = engine_for(settings.database_url, settings.data_dir)
        bind(db)
        if isinstance(db, PostgresEngine):
            await db.start_connection_pool(min_size=1, max_size=4)
        queue = ArqJobQueue(settings.redis_url)
        log.info("outbox relay running")
        try:
            await OutboxRelay(queue, settings).run(stop)
        finally:
            await queue.close()
            if isinstance(db, PostgresEngine):
                await db.close_connection_pool()

    asyncio.run(main())
    return EXIT_OK


def _flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", help="embedded default state (default ./.aion or $AION_DATA_DIR)")
    p.add_argument(
        "--database-url", help="postgresql://... (default $AION_DATABASE_URL, else SQLite)"
    )


def register(commands: Any) -> None:
    """Add `aion worker` and `aion relay`."""
    p = commands.add_parser("worker", help="run approved tasks from Redis (needs AION_REDIS_URL)")
    _flags(p)
    p.add_argument(
        "--concurrency", type=int, help="runs at once (default $AION_WORKER_CONCURRENCY or 8)"
    )
    p.add_argument(
        "--drain-s",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="on SIGTERM, how long running runs may finish before the worker exits (default 30)",
    )
    p.set_defaults(handler=cmd_worker)
    p = commands.add_parser("relay", help="send committed tasks to Redis (the outbox relay alone)")
    _flags(p)
    p.set_defaults(handler=cmd_relay)
