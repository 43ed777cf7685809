"""`engine` stays pure: importing it loads no server, database, queue or telemetry stack."""

import json
import subprocess
import sys

FORBIDDEN = (
    "litestar",
    "piccolo",
    "asyncpg",
    "redis",
    "arq",
    "opentelemetry.sdk",
    "uvicorn",
    "httpx",
    "aiohttp",
)


def _modules_after(statement: str) -> set[str]:
    code = f"import sys, json\n{statement}\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return set(json.loads(out.stdout))


def test_import_engine_loads_no_server_stack() -> None:
    loaded = _modules_after("import engine, engine.testing, engine.check, engine.validate")
    assert "engine" in loaded
    offending = sorted(m for m in loaded for f in FORBIDDEN if m == f or m.startswith(f + "."))
    assert offending == []


def test_the_check_would_notice_a_forbidden_import() -> None:
    # Guard against a vacuous test: a module we know is importable shows up in the list.
    loaded = _modules_after("import xml.etree.ElementTree")
    assert "xml.etree.ElementTree" in loaded
