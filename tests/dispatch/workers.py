"""Real `aion worker` processes for the reliability tests, on PostgreSQL and Redis."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import redis

from server.settings import Settings

LEASE_S = 2.0  # short, for quick SIGKILL recovery; long enough for a loaded CI machine


def redis_db_url(url: str, db: int) -> str:
    """``url`` on Redis database ``db`` (each test module its own, flushed first)."""
    base = url.rsplit("/", 1)[0] if url.count("/") > 2 else url
    return f"{base}/{db}"


def flush(url: str) -> None:
    """Empty one Redis database (jobs of earlier runs)."""
    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    finally:
        client.close()


@dataclass
class Workers:
    """Starts `aion worker` processes; kills every one still alive at the end."""

    settings: Settings
    redis_url: str
    log_dir: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def env(self, **extra: str) -> dict[str, str]:
        return {
            **os.environ,
            "AION_DATABASE_URL": self.settings.database_url,
            "AION_DATA_DIR": str(self.settings.data_dir),
            "AION_REDIS_URL": self.redis_url,
            "AION_LEASE_S": str(LEASE_S),
            "AION_RECONCILE_S": "5",
            "AION_WORKER_POLL_DELAY_S": "0.02",
            "AION_RUN_DIR": str(self.log_dir / "runs"),
            "AION_LOG_FORMAT": "text",
            "AION_LOG_LEVEL": "warning",
            **extra,
        }

    def spawn(self, *args: str, **extra: str) -> subprocess.Popen[bytes]:
        """A new worker process (its output in ``log_dir``)."""
        log = (self.log_dir / f"worker-{len(self.procs)}.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "server.cli.main", "worker", *args],
            env=self.env(**extra),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        self.procs.append(proc)
        return proc

    def worker_id(self, proc: subprocess.Popen[bytes]) -> str:
        """The worker id a process writes into its runs."""
        return f"{socket.gethostname()}:{proc.pid}"

    def kill_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
