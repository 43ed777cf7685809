"""ASGI entry point for `aion serve` workers: settings from the environment, services wired once."""

from __future__ import annotations

from litestar import Litestar

from server.app import create_app
from server.bootstrap import ensure_keys, services
from server.dispatch.runner import build_dispatch
from server.settings import Settings


def create() -> Litestar:
    """The app of one worker process, with its dispatch (outbox relay, embedded scheduler)."""
    settings = Settings.from_env()
    wired = services(settings, ensure_keys(settings.data_dir))
    dispatch = build_dispatch(wired)
    if dispatch is not None:
        wired.dispatch = dispatch
    return create_app(wired)
