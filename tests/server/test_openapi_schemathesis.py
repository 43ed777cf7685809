"""Property-based run of schemathesis against a real `aion serve` and its OpenAPI document:
no 5xx, every status and body as documented (bounded number of examples)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, str]]:
    port = _free_port()
    env = {
        **os.environ,
        "AION_RATE_LIMIT_PER_MINUTE": "100000000",
        "AION_RATE_LIMIT_BURST": "100000000",
        "AION_LATENTBOX_ENABLED": "true",
    }
    out = tmp_path / "serve.log"
    with out.open("w") as log:
        proc = subprocess.Popen(
            [str(BIN / "aion"), "serve", "--data-dir", str(tmp_path / "data"), "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        for _ in range(600):  # bounded wait for start-up (60 s), polling the health endpoint
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=1)
                break
            except OSError:
                assert proc.poll() is None, out.read_text()
                time.sleep(0.1)
        lines = out.read_text().splitlines()
        token = lines[
            lines.index(next(line for line in lines if line.startswith("one-time admin token"))) + 1
        ]
        yield f"http://127.0.0.1:{port}", token
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_schemathesis_finds_no_server_error_or_schema_violation(server: tuple[str, str]) -> None:
    base, token = server
    done = subprocess.run(
        [
            str(BIN / "st"),
            "run",
            f"{base}/api/v1/schema/openapi.json",
            "-H",
            f"Authorization: Bearer {token}",
            "--max-examples",
            "8",
            "--seed",
            "20261127",
            "--checks",
            "not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    summary = done.stdout[-3000:]
    assert done.returncode == 0, summary
    assert "Failures:" not in summary, summary
    assert "passed" in summary, "schemathesis generated and ran test cases"
