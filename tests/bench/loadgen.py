"""A small HTTP/1.1 load generator for loopback benchmarks (bounded in count and time).

Open loop (fixed rate, latency measured from the scheduled send time, so a
slow server cannot hide queueing) and closed loop (maximum throughput with a
fixed number of keep-alive connections). Raw asyncio streams keep the client
cheap enough to load a two-worker server from one process.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Result:
    """Latencies (ms) and outcome counts of one run."""

    latencies_ms: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    seconds: float = 0.0

    def add(self, status: int, latency_ms: float) -> None:
        self.statuses[status] = self.statuses.get(status, 0) + 1
        self.latencies_ms.append(latency_ms)

    def pct(self, p: float) -> float:
        data = sorted(self.latencies_ms)
        return data[min(len(data) - 1, int(len(data) * p / 100))] if data else float("nan")

    @property
    def rate(self) -> float:
        return len(self.latencies_ms) / self.seconds if self.seconds else 0.0

    def summary(self) -> str:
        return (
            f"{len(self.latencies_ms)} requests in {self.seconds:.1f} s = {self.rate:.0f} req/s; "
            f"p50 {self.pct(50):.2f} ms, p95 {self.pct(95):.2f} ms, p99 {self.pct(99):.2f} ms; "
            f"mean {statistics.fmean(self.latencies_ms) if self.latencies_ms else 0:.2f} ms; status {self.statuses}"
        )


class Connection:
    """One keep-alive HTTP/1.1 connection."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def request(self, raw: bytes) -> int:
        assert self.reader and self.writer
        self.writer.write(raw)
        status_line = await self.reader.readline()
        status = int(status_line.split()[1])
        length = 0
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        if length:
            await self.reader.readexactly(length)
        return status

    def close(self) -> None:
        if self.writer:
            self.writer.close()


def http_post(path: str, body: bytes, headers: dict[str, str], host: str = "127.0.0.1") -> bytes:
    """A raw POST request with keep-alive."""
    lines = [
        f"POST {path} HTTP/1.1",
        f"Host: {host}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        *(f"{k}: {v}" for k, v in headers.items()),
        "",
        "",
    ]
    return "\r\n".join(lines).encode() + body


async def open_loop(
    host: str,
    port: int,
    make: Callable[[int], bytes],
    rate: float,
    seconds: float,
    connections: int = 64,
) -> Result:
    """Send ``rate`` requests per second for ``seconds``; latency from the scheduled time."""
    pool: asyncio.Queue[Connection] = asyncio.Queue()
    for _ in range(connections):
        conn = Connection(host, port)
        await conn.open()
        pool.put_nowait(conn)
    result = Result()
    total = int(rate * seconds)
    start = time.perf_counter()

    async def one(i: int, due: float) -> None:
        conn = await pool.get()
        try:
            status = await conn.request(make(i))
            result.add(status, (time.perf_counter() - due) * 1000)
        finally:
            pool.put_nowait(conn)

    tasks = []
    for i in range(total):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i, due)))
    await asyncio.gather(*tasks)
    result.seconds = time.perf_counter() - start
    while not pool.empty():
        pool.get_nowait().close()
    return result


async def closed_loop(
    host: str,
    port: int,
    make: Callable[[int], bytes],
    seconds: float,
    connections: int = 32,
    max_requests: int = 200_000,
) -> Result:
    """As many requests as ``connections`` keep-alive clients can get answered in ``seconds``."""
    result = Result()
    deadline = time.perf_counter() + seconds
    counter = iter(range(max_requests))

    async def client() -> None:
        conn = Connection(host, port)
        await conn.open()
        try:
            for i in counter:
                if time.perf_counter() >= deadline:
                    break
                sent = time.perf_counter()
                status = await conn.request(make(i))
                result.add(status, (time.perf_counter() - sent) * 1000)
        finally:
            conn.close()

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(connections)))
    result.seconds = time.perf_counter() - start
    return result
