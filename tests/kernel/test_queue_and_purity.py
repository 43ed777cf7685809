"""The memory job queue's semantics, and the kernel's import purity."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from kernel.queue import MemoryJobQueue

FORBIDDEN = ("litestar", "piccolo", "asyncpg", "redis", "arq", "httpx", "server", "engine")


@pytest.mark.anyio
async def test_enqueue_is_idempotent_and_delivery_at_least_once() -> None:
    queue = MemoryJobQueue()
    assert await queue.enqueue("t1", {"tenant": "a"})
    assert not await queue.enqueue("t1", {"tenant": "a"})
    job = await queue.receive(timeout=0)
    assert job is not None and (job.job_id, job.delivery) == ("t1", 1)
    assert not await queue.enqueue("t1", {})  # in flight: still collapses
    assert await queue.receive(timeout=0) is None
    assert queue.redeliver_unacked() == 1  # the worker died before acking
    again = await queue.receive(timeout=0)
    assert again is not None and (again.job_id, again.delivery) == ("t1", 2)
    await queue.ack("t1")
    assert queue.in_flight == []
    assert not await queue.enqueue("t1", {})  # done ids are remembered
    assert queue.redeliver_unacked() == 0


@pytest.fixture
def anyio_backend() -> str:
    """asyncio only."""
    return "asyncio"


def test_import_kernel_loads_no_server_stack() -> None:
    code = (
        "import sys, json\n"
        "import kernel, kernel.scheduler, kernel.testing, kernel.runtimes.subprocess\n"
        "print(json.dumps(sorted(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    loaded = set(json.loads(out.stdout))
    assert "kernel.scheduler" in loaded
    offending = sorted(m for m in loaded for f in FORBIDDEN if m == f or m.startswith(f + "."))
    assert offending == []
