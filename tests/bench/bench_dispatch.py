"""Dispatch benchmarks (run with `make bench`): submit-to-start latency and no-op tasks per
second through the full path: decision `task.submit`, task + outbox rows, outbox relay, arq
on Redis, `aion worker`, kernel scheduler, a no-op subprocess run.

The server (`aion serve`, dispatch=queue) and the workers (`aion worker`) run as child
processes on PostgreSQL and Redis (`scripts/services.sh`, `scripts/redis.sh`); this
process submits over loopback. Times come from the database: `runs.started_at` (the
claim) minus `tasks.submitted_at` (the submit's commit), both on the same clock.
Targets (issue 4): submit-to-start p50 <= 50 ms, p99 <= 250 ms; >= 200 no-op tasks/s with
2 workers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench_server import AION, Server, _create_database
from loadgen import closed_loop, http_post, open_loop

TERMINAL = ("succeeded", "failed", "cancelled", "dead_lettered")


def _call(server: Server, method: str, path: str, token: str, body: Any = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        f"http://127.0.0.1:{server.port}{path}",
        data=data,
        method=method,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.loads(answer.read() or b"null")


async def _rows(url: str, sql: str) -> list[Any]:
    import asyncpg  # only this bench needs it

    conn = await asyncpg.connect(url)
    try:
        return list(await conn.fetch(sql))
    finally:
        await conn.close()


def rows(url: str, sql: str) -> list[Any]:
    return asyncio.run(_rows(url, sql))


def wait_terminal(url: str, expected: int, limit_s: float) -> float:
    """Seconds until ``expected`` tasks are terminal (bounded by ``limit_s``)."""
    started = time.monotonic()
    states = ", ".join(f"'{s}'" for s in TERMINAL)
    while time.monotonic() - started < limit_s:
        done = rows(url, f"select count(*) from tasks where status in ({states})")[0][0]
        if done >= expected:
            return time.monotonic() - started
        time.sleep(0.2)  # polling a database for completion, bounded by limit_s
    raise RuntimeError(f"only some of {expected} tasks finished in {limit_s:.0f} s")


def start_workers(server: Server, count: int, log_dir: Path) -> list[subprocess.Popen[bytes]]:
    procs = []
    for n in range(count):
        log = (log_dir / f"worker-{n}.log").open("wb")
        procs.append(
            subprocess.Popen(
                [AION, "worker"], env=server.env, stdout=subprocess.DEVNULL, stderr=log
            )
        )
    return procs


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def pct(data: list[float], p: float) -> float:
    data = sorted(data)
    return data[min(len(data) - 1, int(len(data) * p / 100))] if data else float("nan")


def run(args: argparse.Namespace, workers: int, out: dict[str, Any]) -> None:
    url = asyncio.run(_create_database(args.database_url))
    os.environ["AION_DISPATCH"] = "queue"
    os.environ["AION_REDIS_URL"] = args.redis_url
    os.environ["AION_WORKER_CONCURRENCY"] = str(args.concurrency)
    with tempfile.TemporaryDirectory() as tmp:
        server = Server(Path(tmp), 2, url)
        procs = start_workers(server, workers, Path(tmp))
        try:
            token = server.token(["admin", "operator"])
            agent = _call(
                server,
                "POST",
                "/api/v1/agents",
                token,
                {"name": "bench-noop", "model": "model://gpt-4o", "config": {"runtime": "noop"}},
            )
            # The seeded models are registered but not verified (no attestation yet): the
            # admin runs deploy-gates in `warn` mode for this agent, a logged decision.
            mode = {"mode": "warn"}
            _call(server, "PUT", f"/api/v1/agents/{agent['id']}/policies/deploy-gates", token, mode)
            _call(server, "POST", f"/api/v1/agents/{agent['id']}/deploy", token)
            body = json.dumps({"input": {}, "intent": "summarize", "priority": "standard"})
            submit = http_post(
                f"/api/v1/agents/{agent['id']}/tasks",
                body.encode(),
                {"Authorization": f"Bearer {token}"},
            )
            # Latency: a steady trickle, so the figure is the path's, not a queue's.
            paced = asyncio.run(
                open_loop("127.0.0.1", server.port, lambda i: submit, args.rate, args.seconds)
            )
            wait_terminal(url, len(paced.latencies_ms), 120)
            gaps = rows(
                url,
                "select (r.started_at - t.submitted_at) * 1000 from tasks t join runs r"
                " on r.task_id = t.id and r.attempt = 1",
            )
            waits = [float(g[0]) for g in gaps]
            # Throughput: as many as the server takes, then until the last one ran.
            before = len(waits)
            burst = asyncio.run(
                closed_loop(
                    "127.0.0.1", server.port, lambda i: submit, 60.0, 16, max_requests=args.tasks
                )
            )
            first = time.monotonic() - burst.seconds
            wait_terminal(url, before + len(burst.latencies_ms), 300)
            took = time.monotonic() - first
            succeeded = rows(url, "select count(*) from tasks where status = 'succeeded'")[0][0]
            label = f"{workers} worker{'s' if workers > 1 else ''}"
            print(
                f"submit-to-start with {label} @ {args.rate:.0f} tasks/s: n={len(waits)}, "
                f"p50 {pct(waits, 50):.1f} ms, p99 {pct(waits, 99):.1f} ms, "
                f"mean {statistics.fmean(waits):.1f} ms"
            )
            print(f"  submits of the throughput run: {burst.summary()}")
            print(
                f"no-op tasks through the full path, {label}: {len(burst.latencies_ms)} in "
                f"{took:.1f} s = {len(burst.latencies_ms) / took:.0f} tasks/s "
                f"(submit answers: {burst.statuses}; succeeded so far {succeeded})"
            )
            out[f"workers_{workers}"] = {
                "start_p50_ms": pct(waits, 50),
                "start_p99_ms": pct(waits, 99),
                "tasks_per_s": len(burst.latencies_ms) / took,
            }
        finally:
            stop(procs)
            server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=float, default=20.0, help="paced submits per second")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--tasks", type=int, default=1000, help="tasks of the throughput run")
    parser.add_argument("--concurrency", type=int, default=8, help="runs per worker")
    parser.add_argument("--database-url", default=os.environ.get("AION_TEST_DATABASE_URL", ""))
    parser.add_argument("--redis-url", default=os.environ.get("AION_TEST_REDIS_URL", ""))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if not (args.database_url and args.redis_url):
        print("dispatch bench: skipped (needs AION_TEST_DATABASE_URL and AION_TEST_REDIS_URL)")
        return 0
    out: dict[str, Any] = {}
    for workers in (1, 2):
        run(args, workers, out)
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
