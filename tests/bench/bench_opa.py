"""Side by side: real OPA's Data API against ours (issue 6), same machine, bundles and inputs.

OPA runs as `opa run --server` with its default settings (one process, its
default log level), loading the shipped bundles built by `aion bundle build`;
ours is `aion serve` with 2 workers (bench_server's Server), which installs
the same shipped bundles at first start and records every query in the
decision log (PostgreSQL from AION_TEST_DATABASE_URL when set, else SQLite).
Inputs: the agent.deploy and tool.invoke request documents of the conformance
cases, sent in turn. Per scenario: maximum throughput (closed loop, N
keep-alive connections) and p50/p99 at fixed offered rates (open loop),
printed as a table with ratios ours / OPA. Figures are as measured; the load
generator shares the machine with both servers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import yaml
from bench_server import AION, REPO, Server, _create_database, free_port
from loadgen import Result, closed_loop, http_post, open_loop

from engine import DecisionRequest

POLICIES = REPO / "policies"
CASES = REPO / "tests" / "conformance" / "cases"
PACKAGES = {"agent.deploy": "aion/agent/deploy", "tool.invoke": "aion/tool/invoke"}


def request_documents() -> list[dict[str, Any]]:
    """The conformance cases' agent.deploy and tool.invoke requests, as DecisionRequest renders them."""
    docs = []
    for file in ("deploy-gates.yaml", "tool-bypasses.yaml"):
        for case in yaml.safe_load((CASES / file).read_text()):
            if case["request"]["action"] in PACKAGES:
                request = msgspec.convert(case["request"], DecisionRequest)
                docs.append(msgspec.to_builtins(request))
    return docs


@dataclass(frozen=True)
class Scenario:
    """One kind of query: its name and, per input, the path asked."""

    name: str
    rule: str  # "" for the whole package
    actions: tuple[str, ...]

    def requests(self, docs: list[dict[str, Any]], headers: dict[str, str]) -> list[bytes]:
        out = []
        for doc in docs:
            if doc["action"] not in self.actions:
                continue
            path = f"/v1/data/{PACKAGES[doc['action']]}" + (f"/{self.rule}" if self.rule else "")
            out.append(http_post(path, json.dumps({"input": doc}).encode(), headers))
        return out


SCENARIOS = (
    Scenario("deny rule (deploy + invoke)", "deny", ("agent.deploy", "tool.invoke")),
    Scenario("package aion/agent/deploy", "", ("agent.deploy",)),
)


class Opa:
    """`opa run --server` with default settings in a child process, ready when /health says so."""

    def __init__(self, opa_bin: str, bundles: list[Path], tmp: Path) -> None:
        self.port = free_port()
        self.log = (tmp / "opa.log").open("wb")
        self.proc = subprocess.Popen(
            [opa_bin, "run", "--server", "--addr", f"127.0.0.1:{self.port}", "--bundle"]
            + [str(b) for b in bundles],
            stdout=self.log,
            stderr=subprocess.STDOUT,  # a file: a pipe nobody reads fills up and stalls OPA
        )
        for _ in range(600):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health?bundles", timeout=1)
                return
            except OSError as exc:
                if self.proc.poll() is not None:
                    raise RuntimeError(
                        f"OPA exited: {(tmp / 'opa.log').read_text()[-2000:]}"
                    ) from exc
                time.sleep(0.1)  # polling a child process's start-up, bounded (60 s)
        raise RuntimeError("OPA did not become ready in 60 s")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def build_bundles(out: Path) -> list[Path]:
    """The shipped bundles built by `aion bundle build` (unsigned: OPA loads them as they are)."""
    built = []
    for source in sorted(p for p in POLICIES.iterdir() if (p / ".manifest").exists()):
        archive = out / f"{source.name}.tar.gz"
        subprocess.run(
            [AION, "bundle", "build", str(source), "-o", str(archive)],
            check=True,
            capture_output=True,
        )
        built.append(archive)
    return built


@dataclass
class Figures:
    """One server's figures for one scenario."""

    peak: Result
    fixed: dict[float, Result]


def measure(port: int, requests: list[bytes], args: argparse.Namespace) -> Figures:
    def make(i: int) -> bytes:
        return requests[i % len(requests)]

    asyncio.run(closed_loop("127.0.0.1", port, make, 2.0, 8))  # warm-up
    peak = asyncio.run(closed_loop("127.0.0.1", port, make, args.seconds, args.connections))
    fixed = {
        rate: asyncio.run(open_loop("127.0.0.1", port, make, rate, args.seconds))
        for rate in args.rates
    }
    return Figures(peak, fixed)


def check_same_answers(
    opa_port: int, ours_port: int, token: str, docs: list[dict[str, Any]]
) -> int:
    """Both servers answer every benchmarked input with a 200 and a result; how many differ."""
    differ = 0
    for doc in docs:
        answers = []
        for port, headers in ((opa_port, {}), (ours_port, {"Authorization": f"Bearer {token}"})):
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/v1/data/{PACKAGES[doc['action']]}/deny",
                data=json.dumps({"input": doc}).encode(),
                headers={"Content-Type": "application/json", **headers},
                method="POST",
            )
            with urllib.request.urlopen(request, timeout=10) as response:
                answers.append(json.loads(response.read())["result"])
        ids = [sorted(json.dumps(d, sort_keys=True) for d in a) for a in answers]
        differ += ids[0] != ids[1]
    return differ


def _ratio(ours: float, theirs: float) -> str:
    return f"{ours / theirs:.2f}" if theirs else "n/a"


def print_table(
    label: str, results: dict[str, tuple[Figures, Figures]], rates: list[float]
) -> None:
    print(f"\nOPA Data API side by side ({label}); ratio = ours / OPA")
    header = f"{'scenario':<30} {'measure':<22} {'OPA':>10} {'ours':>10} {'ours/OPA':>9}"
    print(header)
    print("-" * len(header))
    for name, (opa, ours) in results.items():
        rows = [("max throughput (req/s)", opa.peak.rate, ours.peak.rate)]
        for rate in rates:
            rows.append(
                (f"p50 @ {rate:.0f}/s (ms)", opa.fixed[rate].pct(50), ours.fixed[rate].pct(50))
            )
            rows.append(
                (f"p99 @ {rate:.0f}/s (ms)", opa.fixed[rate].pct(99), ours.fixed[rate].pct(99))
            )
        for measure_name, theirs, mine in rows:
            print(
                f"{name:<30} {measure_name:<22} {theirs:>10.2f} {mine:>10.2f} {_ratio(mine, theirs):>9}"
            )
        statuses = {"OPA": _statuses(opa), "ours": _statuses(ours)}
        print(f"{name:<30} statuses {statuses}")


def _statuses(figures: Figures) -> dict[int, int]:
    total: dict[int, int] = {}
    for result in (figures.peak, *figures.fixed.values()):
        for status, count in result.statuses.items():
            total[status] = total.get(status, 0) + count
    return total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0, help="per measurement")
    parser.add_argument("--connections", type=int, default=32, help="closed-loop connections")
    parser.add_argument("--rates", type=float, nargs="+", default=[300.0, 1000.0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--opa", default=os.environ.get("AION_OPA_BIN", "opa"))
    parser.add_argument("--database-url", default=os.environ.get("AION_TEST_DATABASE_URL", ""))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    docs = request_documents()
    label = "PostgreSQL" if args.database_url else "SQLite"
    results: dict[str, tuple[Figures, Figures]] = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "bundles").mkdir()
        bundles = build_bundles(tmp / "bundles")
        url = asyncio.run(_create_database(args.database_url)) if args.database_url else ""
        (tmp / "aion").mkdir()
        opa, ours = Opa(args.opa, bundles, tmp), Server(tmp / "aion", args.workers, url)
        try:
            token = ours.token(["operator"])
            differ = check_same_answers(opa.port, ours.port, token, docs)
            print(f"{len(docs)} inputs; `deny` differs between the engines on {differ} of them")
            for scenario in SCENARIOS:
                theirs = measure(opa.port, scenario.requests(docs, {}), args)
                mine = measure(
                    ours.port,
                    scenario.requests(docs, {"Authorization": f"Bearer {token}"}),
                    args,
                )
                results[scenario.name] = (theirs, mine)
        finally:
            opa.stop()
            ours.stop()
    print_table(f"ours: {args.workers} workers, decision log on {label}", results, args.rates)
    if args.json:
        out = {
            name: {
                who: {
                    "max_rps": f.peak.rate,
                    **{f"p50_ms@{r:.0f}": f.fixed[r].pct(50) for r in args.rates},
                    **{f"p99_ms@{r:.0f}": f.fixed[r].pct(99) for r in args.rates},
                }
                for who, f in (("opa", opa_f), ("ours", ours_f))
            }
            for name, (opa_f, ours_f) in results.items()
        }
        args.json.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
