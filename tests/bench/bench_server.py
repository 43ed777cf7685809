"""Server benchmarks (run with `make bench`): decide latency and throughput, gated
agent creation on PostgreSQL, decision-log rows per second.

The server runs as `aion serve` (uvicorn, uvloop, httptools) in its own
processes; this process is the load generator, on loopback, bounded in count
and time. Targets (issue 3): decide p99 <= 5 ms at 1,000 req/s and >= 3,000
decisions/s; create-agent p95 <= 10 ms and p99 <= 25 ms at 300 req/s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

from loadgen import closed_loop, http_post, open_loop

REPO = Path(__file__).resolve().parents[2]
AION = str(REPO / ".venv" / "bin" / "aion")
DECIDE = {
    "action": "tool.invoke",
    "resource": {"type": "tool", "id": "ops.shell"},
    "context": {
        "arguments": {"command": "ls -la /data/reports"},
        "tenant": {"allowed_tools": ["ops.shell", "web_search", "file.read", "http.get"]},
    },
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """`aion serve` in a child process, ready when /health answers (bounded wait)."""

    def __init__(self, data_dir: Path, workers: int, database_url: str = "") -> None:
        self.port = free_port()
        self.env = {
            **os.environ,
            "AION_DATA_DIR": str(data_dir),
            "AION_DATABASE_URL": database_url,
            "AION_RATE_LIMIT_PER_MINUTE": "1000000000",
            "AION_RATE_LIMIT_BURST": "1000000000",
        }
        self.log = (data_dir / "server.log").open("wb")
        self.proc = subprocess.Popen(
            [AION, "serve", "--port", str(self.port), "--workers", str(workers)],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=self.log,  # a file: a pipe nobody reads fills up and stalls the server
        )
        for _ in range(600):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/api/health", timeout=1)
                return
            except OSError as exc:
                if self.proc.poll() is not None:
                    err = (data_dir / "server.log").read_text()[-2000:]
                    raise RuntimeError(f"server exited: {err}") from exc
                time.sleep(0.1)  # polling a child process's start-up, bounded (60 s)
        raise RuntimeError("server did not become ready in 60 s")

    def token(self, roles: list[str]) -> str:
        args = [
            AION,
            "tokens",
            "issue",
            "--tenant",
            "default",
            "--subject",
            "bench",
            "--ttl",
            "3600",
        ]
        for role in roles:
            args += ["--role", role]
        return subprocess.run(
            args, env=self.env, check=True, capture_output=True, text=True
        ).stdout.strip()

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def _count_decisions(tmp: str, database_url: str) -> int:
    if not database_url:
        return int(
            sqlite3.connect(Path(tmp) / "aion.db")
            .execute("select count(*) from decisions")
            .fetchone()[0]
        )

    async def count() -> int:
        import asyncpg

        conn = await asyncpg.connect(database_url)
        try:
            return int(await conn.fetchval("select count(*) from decisions"))
        finally:
            await conn.close()

    return asyncio.run(count())


def bench_decide(args: argparse.Namespace, out: dict[str, object], database_url: str = "") -> None:
    label = "PostgreSQL" if database_url else "SQLite"
    with tempfile.TemporaryDirectory() as tmp:
        server = Server(Path(tmp), args.workers, database_url)
        try:
            token = server.token(["admin", "security", "operator"])
            body = json.dumps(DECIDE).encode()
            request = http_post("/api/v1/decide", body, {"Authorization": f"Bearer {token}"})
            asyncio.run(closed_loop("127.0.0.1", server.port, lambda i: request, 2.0, 8))  # warm-up
            fixed = asyncio.run(
                open_loop("127.0.0.1", server.port, lambda i: request, args.rate, args.seconds)
            )
            print(
                f"decide on {label} @ {args.rate:.0f} req/s, {args.workers} workers: {fixed.summary()}"
            )
            before = _count_decisions(tmp, database_url)
            peak = asyncio.run(
                closed_loop(
                    "127.0.0.1", server.port, lambda i: request, args.seconds, args.connections
                )
            )
            after = _count_decisions(tmp, database_url)
            rows = (after - before) / peak.seconds
            print(
                f"decide on {label}, max throughput ({args.connections} connections): {peak.summary()}"
            )
            print(
                f"decision-log rows written: {after - before} in {peak.seconds:.1f} s = {rows:.0f} rows/s ({label})"
            )
            out[f"decide_{label.lower()}"] = {
                "fixed_rate": args.rate,
                "p50_ms": fixed.pct(50),
                "p99_ms": fixed.pct(99),
                "statuses": fixed.statuses,
                "max_rps": peak.rate,
                "log_rows_per_s": rows,
            }
        finally:
            server.stop()


async def _create_database(url: str) -> str:
    import asyncpg  # only the PostgreSQL bench needs it

    name = f"aion_bench_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return url.rsplit("/", 1)[0] + "/" + name


def bench_create_agent(args: argparse.Namespace, out: dict[str, object]) -> None:
    if not args.database_url:
        print("create-agent on PostgreSQL: skipped (no --database-url / AION_TEST_DATABASE_URL)")
        return
    url = asyncio.run(_create_database(args.database_url))
    with tempfile.TemporaryDirectory() as tmp:
        server = Server(Path(tmp), args.workers, url)
        try:
            token = server.token(["admin", "operator"])

            def make(i: int) -> bytes:
                body = json.dumps(
                    {"name": f"bench-{i}", "model": "model://gpt-4o", "tool_ids": ["web_search"]}
                )
                return http_post(
                    "/api/v1/agents", body.encode(), {"Authorization": f"Bearer {token}"}
                )

            asyncio.run(
                closed_loop("127.0.0.1", server.port, make, 2.0, 8, max_requests=500)
            )  # warm-up
            fixed = asyncio.run(
                open_loop(
                    "127.0.0.1",
                    server.port,
                    lambda i: make(10_000 + i),
                    args.agent_rate,
                    args.seconds,
                )
            )
            print(f"create agent @ {args.agent_rate:.0f} req/s on PostgreSQL: {fixed.summary()}")
            peak = asyncio.run(
                closed_loop(
                    "127.0.0.1",
                    server.port,
                    lambda i: make(100_000 + i),
                    args.seconds,
                    args.connections,
                )
            )
            print(f"create agent, max throughput on PostgreSQL: {peak.summary()}")
            out["create_agent"] = {
                "fixed_rate": args.agent_rate,
                "p50_ms": fixed.pct(50),
                "p95_ms": fixed.pct(95),
                "p99_ms": fixed.pct(99),
                "statuses": fixed.statuses,
                "max_rps": peak.rate,
            }
        finally:
            server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--rate", type=float, default=1000.0, help="decide requests per second (open loop)"
    )
    parser.add_argument(
        "--agent-rate", type=float, default=300.0, help="create-agent requests per second"
    )
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--database-url", default=os.environ.get("AION_TEST_DATABASE_URL", ""))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    out: dict[str, object] = {}
    bench_decide(args, out)
    if args.database_url:
        bench_decide(args, out, asyncio.run(_create_database(args.database_url)))
    bench_create_agent(args, out)
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
