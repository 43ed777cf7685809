"""`aion serve`, `aion db migrate`, `aion tenants create|set`, `aion tokens issue`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import logging.config
import os
import secrets
from dataclasses import replace
from pathlib import Path
from typing import Any

import uvicorn

from server.auth import ROLES, TokenService, hash_api_key, new_api_key, utcnow
from server.bootstrap import (
    DEFAULT_TENANT,
    ensure_keys,
    ensure_tenant,
    install_shipped_bundles,
    migrate,
    services,
)
from server.cli import tenant_settings_cmd
from server.cli.common import EXIT_OK, fail
from server.db.tables import ApiKey, Tenant
from server.logs import logging_config
from server.settings import Settings
from server.telemetry import prepare_multiproc_dir


def _settings(args: argparse.Namespace) -> Settings:
    return Settings.from_env(
        data_dir=Path(args.data_dir) if getattr(args, "data_dir", None) else None,
        database_url=getattr(args, "database_url", None),
        host=getattr(args, "host", None),
        port=getattr(args, "port", None),
        workers=getattr(args, "workers", None),
    )


async def _prepare(settings: Settings) -> str | None:
    """Default tenant and shipped bundles; the admin token when the tenant is new."""
    keys = ensure_keys(settings.data_dir)
    svc = services(settings, keys)
    tid, created = await ensure_tenant(DEFAULT_TENANT)
    installed = await install_shipped_bundles(settings, keys)
    for item in installed:
        print(f"activated bundle {item}")
    if not created:
        return None
    return svc.tokens.issue(
        tenant=tid, subject="admin", roles=["admin", "security"], now=utcnow(), ttl=24 * 3600
    )


def _observability(settings: Settings) -> Settings:
    """Check the log settings; with several workers, their shared (emptied) metrics directory."""
    if settings.log_format not in ("json", "text"):
        fail(f"AION_LOG_FORMAT must be `json` or `text`, not `{settings.log_format}`")
    if settings.log_level.upper() not in logging.getLevelNamesMapping():
        fail(f"AION_LOG_LEVEL `{settings.log_level}` is not a logging level (debug, info, ...)")
    if not settings.metrics_enabled or settings.workers <= 1:
        return settings
    directory = settings.metrics_multiproc_dir or str(settings.data_dir.resolve() / "metrics")
    prepare_multiproc_dir(Path(directory))
    return replace(settings, metrics_multiproc_dir=directory)


def cmd_serve(args: argparse.Namespace) -> int:
    """Prepare the embedded default (or the configured database) and run the server."""
    settings = _observability(_settings(args))
    log_config = logging_config(settings)
    logging.config.dictConfig(log_config)
    migrate(settings)
    token = asyncio.run(_prepare(settings))
    if token:
        print("one-time admin token for tenant `default` (valid 24 h; shown only now):")
        print(token)
    # Workers are separate processes: they read the same settings from the environment.
    os.environ.update(
        {
            "AION_DATA_DIR": str(settings.data_dir),
            "AION_DATABASE_URL": settings.database_url,
            "AION_METRICS_MULTIPROC_DIR": settings.metrics_multiproc_dir,
        }
    )
    if settings.metrics_multiproc_dir:
        # prometheus-client reads this itself when a worker imports it.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = settings.metrics_multiproc_dir
    print(f"serving on http://{settings.host}:{settings.port} ({settings.workers} worker(s))")
    uvicorn.run(
        "server.asgi:create",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        loop="uvloop",
        http="httptools",
        log_config=log_config,
        log_level=settings.log_level.lower(),
        access_log=settings.access_log,
    )
    return EXIT_OK


def cmd_migrate(args: argparse.Namespace) -> int:
    """Run the database migrations."""
    settings = _settings(args)
    migrate(settings)
    print(
        f"database is up to date ({'SQLite in ' + str(settings.data_dir) if settings.sqlite else 'PostgreSQL'})"
    )
    return EXIT_OK


def cmd_tenant_create(args: argparse.Namespace) -> int:
    """Create a tenant with the seed tools and models."""
    settings = _settings(args)
    migrate(settings)

    async def run() -> tuple[str, bool]:
        services(settings, ensure_keys(settings.data_dir))
        return await ensure_tenant(args.name)

    try:
        tid, created = asyncio.run(run())
    except ValueError as exc:
        fail(str(exc))
    print(f"tenant `{tid}` {'created' if created else 'already exists'}")
    return EXIT_OK


def cmd_token_issue(args: argparse.Namespace) -> int:
    """Print a signed token for a subject of a tenant."""
    settings = _settings(args)
    unknown = sorted(set(args.role) - set(ROLES))
    if unknown:
        fail(f"unknown role(s) {unknown}; roles are {', '.join(ROLES)}")

    async def run() -> bool:
        services(settings, ensure_keys(settings.data_dir))
        return bool(await Tenant.exists().where(Tenant.id == args.tenant))

    if not asyncio.run(run()):
        fail(f"no tenant `{args.tenant}` (create it with `aion tenants create`)")
    tokens = TokenService(settings, ensure_keys(settings.data_dir).jwt_secret)
    print(
        tokens.issue(
            tenant=args.tenant,
            subject=args.subject,
            roles=args.role,
            now=utcnow(),
            ttl=args.ttl,
            kind=args.kind,
        )
    )
    return EXIT_OK


def cmd_apikey_create(args: argparse.Namespace) -> int:
    """Create a service API key; the key is printed once and only its hash is stored."""
    settings = _settings(args)
    key = new_api_key()

    async def run() -> bool:
        services(settings, ensure_keys(settings.data_dir))
        if not await Tenant.exists().where(Tenant.id == args.tenant):
            return False
        await ApiKey.insert(
            ApiKey(
                id=f"key_{secrets.token_hex(8)}",
                tenant=args.tenant,
                subject=args.subject,
                roles=args.role,
                key_hash=hash_api_key(key),
                created_at=utcnow(),
                revoked=False,
            )
        )
        return True

    if not asyncio.run(run()):
        fail(f"no tenant `{args.tenant}` (create it with `aion tenants create`)")
    print(key)
    return EXIT_OK


def _db_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", help="embedded default state (default ./.aion or $AION_DATA_DIR)")
    p.add_argument(
        "--database-url", help="postgresql://... (default $AION_DATABASE_URL, else SQLite)"
    )


def register(commands: Any) -> None:
    """Add the server commands."""
    p = commands.add_parser("serve", help="run the governance API server")
    _db_flags(p)
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument("--workers", type=int)
    p.set_defaults(handler=cmd_serve)

    db = commands.add_parser("db", help="database maintenance").add_subparsers(
        dest="db_command", required=True
    )
    p = db.add_parser("migrate", help="run the migrations")
    _db_flags(p)
    p.set_defaults(handler=cmd_migrate)

    tenants = commands.add_parser("tenants", help="tenants").add_subparsers(
        dest="tenants_command", required=True
    )
    p = tenants.add_parser("create", help="create a tenant")
    p.add_argument("name")
    _db_flags(p)
    p.set_defaults(handler=cmd_tenant_create)
    tenant_settings_cmd.add_parser(tenants, _db_flags)

    keys = commands.add_parser("apikeys", help="service API keys").add_subparsers(
        dest="apikeys_command", required=True
    )
    p = keys.add_parser("create", help="create a service API key (printed once, stored hashed)")
    p.add_argument("--tenant", required=True)
    p.add_argument("--subject", required=True)
    p.add_argument("--role", action="append", default=[], choices=ROLES)
    _db_flags(p)
    p.set_defaults(handler=cmd_apikey_create)

    tokens = commands.add_parser("tokens", help="bearer tokens").add_subparsers(
        dest="tokens_command", required=True
    )
    p = tokens.add_parser("issue", help="print a signed token (embedded HS256 identity provider)")
    p.add_argument("--tenant", required=True)
    p.add_argument("--subject", required=True)
    p.add_argument("--role", action="append", required=True, choices=ROLES)
    p.add_argument("--ttl", type=int, default=3600, metavar="SECONDS")
    p.add_argument("--kind", choices=("user", "service"), default="user")
    _db_flags(p)
    p.set_defaults(handler=cmd_token_issue)
