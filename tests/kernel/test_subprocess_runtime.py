"""The subprocess runtime with real tiny Python children (outcomes, never durations)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import select
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from kernel.model import RunOutcome, TaskSpec
from kernel.runtime import RunContext
from kernel.runtimes.subprocess import SubprocessConfig, SubprocessRuntime

pytestmark = pytest.mark.anyio
REPO = Path(__file__).resolve().parents[2]


def _runtime(tmp_path: Path, script: str, **config: object) -> SubprocessRuntime:
    source = tmp_path / "agent.py"
    source.write_text(script)
    cfg = SubprocessConfig(base_dir=tmp_path / "runs", **config)  # type: ignore[arg-type]
    return SubprocessRuntime(cfg, lambda task: [sys.executable, "-I", str(source)])


def _task(payload: dict[str, object] | None = None, timeout_s: float = 30.0) -> TaskSpec:
    return TaskSpec(
        task_id="task-1", tenant="t1", agent_id="a1", timeout_s=timeout_s, payload=payload or {}
    )


def _ctx(run_id: str = "run-1") -> RunContext:
    return RunContext(
        run_id=run_id,
        task_id="task-1",
        attempt=1,
        worker_id="w1",
        run_token="secret-token",
        tool_call_url="http://127.0.0.1:8000/api/v1/runs/run-1/tool-calls",
    )


ECHO = """
import json, os, pathlib, sys
data = json.load(sys.stdin)
out = pathlib.Path("out")
(out / "result.json").write_text(json.dumps({"doubled": data["n"] * 2}))
(out / "sub").mkdir()
(out / "sub" / "note.txt").write_bytes(b"nested")
print(json.dumps({"env": dict(os.environ), "cwd": os.getcwd()}))
"""


async def test_success_with_stdin_env_and_artifacts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AION_SECRET_OF_THE_PARENT", "must-not-leak")
    result = await _runtime(tmp_path, ECHO).run(_task({"n": 21}), _ctx())
    assert result.outcome is RunOutcome.SUCCEEDED, result.stderr
    assert result.exit_code == 0
    seen = json.loads(result.stdout)
    workdir = str(tmp_path / "runs" / "run-1")
    assert seen["cwd"] == workdir
    env = seen["env"]
    env.pop("LC_CTYPE", None)  # the interpreter may add it under a C locale
    assert env == {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": workdir,
        "LANG": "C.UTF-8",
        "AION_RUN_ID": "run-1",
        "AION_RUN_TOKEN": "secret-token",
        "AION_TOOL_CALL_URL": "http://127.0.0.1:8000/api/v1/runs/run-1/tool-calls",
        "AION_TASK_ID": "task-1",
        "AION_ATTEMPT": "1",
    }
    arts = {a.name: a for a in result.outputs}
    assert sorted(arts) == ["result.json", "sub/note.txt"]
    assert json.loads(arts["result.json"].data) == {"doubled": 42}
    assert arts["sub/note.txt"].sha256 == hashlib.sha256(b"nested").hexdigest()
    assert not (tmp_path / "runs" / "run-1").exists()  # the workdir is removed


@pytest.mark.parametrize(
    ("code", "outcome"),
    [(75, RunOutcome.FAILED_RETRYABLE), (3, RunOutcome.FAILED_PERMANENT)],
)
async def test_exit_codes_map_to_outcomes(tmp_path: Path, code: int, outcome: RunOutcome) -> None:
    result = await _runtime(tmp_path, f"import sys; sys.exit({code})").run(_task(), _ctx())
    assert result.outcome is outcome
    assert result.exit_code == code


async def test_memory_limit_stops_a_greedy_child(tmp_path: Path) -> None:
    greedy = "x = bytearray(2 * 1024 * 1024 * 1024)\nprint('allocated')"
    runtime = _runtime(tmp_path, greedy, memory_bytes=512 * 1024 * 1024)
    result = await runtime.run(_task(), _ctx())
    assert result.outcome is RunOutcome.FAILED_PERMANENT
    assert b"MemoryError" in result.stderr
    assert b"allocated" not in result.stdout


async def test_cpu_limit_kills_a_spinning_child(tmp_path: Path) -> None:
    runtime = _runtime(tmp_path, "while True:\n    pass", cpu_seconds=1)
    result = await runtime.run(_task(timeout_s=60.0), _ctx())
    assert result.outcome is RunOutcome.FAILED_PERMANENT
    assert "killed by signal" in result.cause


async def test_wall_clock_timeout_kills_the_process_group(tmp_path: Path) -> None:
    sleeper = """
import subprocess, sys, time, pathlib
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
pathlib.Path("child.pid").write_text(str(child.pid))
print("started", flush=True)
time.sleep(600)
"""
    runtime = _runtime(tmp_path, sleeper, keep_workdir=True)
    result = await runtime.run(_task(timeout_s=0.5), _ctx())
    assert result.outcome is RunOutcome.TIMED_OUT
    assert result.stdout == b"started\n"
    pid = int((tmp_path / "runs" / "run-1" / "child.pid").read_text())
    # The grandchild was killed with its group. A pidfd becomes readable when the
    # process has exited (event-based, no polling); 600 s of sleep would not.
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return  # already gone and reaped
    try:
        readable, _, _ = select.select([fd], [], [], 30.0)
    finally:
        os.close(fd)
    assert readable == [fd]


async def test_output_is_capped(tmp_path: Path) -> None:
    noisy = "import sys\nsys.stdout.write('x' * 100000)\nsys.stderr.write('y' * 100000)"
    result = await _runtime(tmp_path, noisy, output_cap=1000).run(_task(), _ctx())
    assert result.outcome is RunOutcome.SUCCEEDED
    assert result.stdout == b"x" * 1000
    assert result.stderr == b"y" * 1000


def test_a_run_dies_with_its_worker(tmp_path: Path) -> None:
    """SIGKILL the worker mid-run: its child goes too (the task will be run again elsewhere)."""
    pid_file = tmp_path / "child.pid"
    worker = textwrap.dedent(
        f"""
        import asyncio, sys
        from pathlib import Path
        from kernel.model import TaskSpec
        from kernel.runtime import RunContext
        from kernel.runtimes.subprocess import SubprocessConfig, SubprocessRuntime

        argv = ["sh", "-c", "echo $$ > {pid_file}; exec sleep 60"]
        runtime = SubprocessRuntime(SubprocessConfig(base_dir=Path("{tmp_path}") / "runs"),
                                    lambda task: argv)
        task = TaskSpec(task_id="t", tenant="t1", agent_id="a", timeout_s=120.0)
        ctx = RunContext(run_id="r", task_id="t", attempt=1, worker_id="w", run_token="x")
        asyncio.run(runtime.run(task, ctx))
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", worker], cwd=REPO)
    try:
        child = int(_wait(lambda: pid_file.exists() and pid_file.read_text().strip()))
        assert _alive(child)
        proc.kill()
        proc.wait()
        assert _wait(lambda: not _alive(child))
    finally:
        if proc.poll() is None:
            proc.kill()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (already dead, not yet reaped by init) counts as gone.
    with contextlib.suppress(OSError):
        return "\nState:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    return True


def _wait(check: Callable[[], Any], timeout: float = 20.0) -> Any:
    """Poll ``check`` until it is truthy (bounded)."""
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)
    return value
