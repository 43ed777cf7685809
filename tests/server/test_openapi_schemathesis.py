"""Property-based run of schemathesis against a real `aion serve` and its OpenAPI document:
no 5xx, every status and body as documented (bounded number of examples)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.services import aion_serve

BIN = Path(sys.executable).parent


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, str]]:
    with aion_serve(tmp_path, {"AION_LATENTBOX_ENABLED": "true"}) as running:
        yield running


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
