"""ASGI entry point for `aion serve` workers: settings from the environment, services wired once."""

from __future__ import annotations

from litestar import Litestar

from server.app import create_app
from server.bootstrap import ensure_keys, services
from server.settings import Settings


def create() -> Litestar:
    """The app of one worker process."""
    settings = Settings.from_env()
    return create_app(services(settings, ensure_keys(settings.data_dir)))
