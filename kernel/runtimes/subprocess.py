"""Subprocess runtime: an agent's entrypoint as a sandboxed child process.

The child gets:

- ``RLIMIT_CPU`` (seconds of CPU time), ``RLIMIT_AS`` (bytes of address space)
  and ``RLIMIT_CORE = 0``, set in the child before ``exec``;
- its own process group (killed as a whole on timeout or cancellation);
- a fresh working directory ``<base_dir>/<run_id>``; files it writes under
  ``out/`` there become the run's artifacts (with sha256);
- a minimal environment: ``PATH``, ``HOME`` (the working directory), ``LANG``,
  ``AION_RUN_ID``, ``AION_RUN_TOKEN``, ``AION_TOOL_CALL_URL``, ``AION_TASK_ID``,
  ``AION_ATTEMPT``; nothing of the parent's environment;
- the task payload as JSON on stdin. stdout and stderr are kept up to a cap.

Exit codes: ``0`` succeeded; ``75`` (``EX_TEMPFAIL``) retryable failure; any
other code, or death by a signal (``SIGXCPU`` at the CPU limit), permanent
failure; still running at the wall-clock timeout: killed, ``timed_out``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import resource
import shutil
import signal
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from kernel.clock import Clock, SystemClock
from kernel.model import Artifact, RunOutcome, RunResult, TaskSpec
from kernel.runtime import RunContext

EX_TEMPFAIL = 75
"""Exit code a child uses to ask for a retry."""


@dataclass(frozen=True)
class SubprocessConfig:
    """Limits and places of the subprocess runtime."""

    base_dir: Path
    """Working directories are created below this directory, one per run."""
    cpu_seconds: int = 60
    """RLIMIT_CPU of the child."""
    memory_bytes: int = 1 << 30
    """RLIMIT_AS of the child (address space, so allow for the interpreter)."""
    wall_timeout_s: float | None = None
    """Wall-clock limit; None uses the task's ``timeout_s``."""
    output_cap: int = 1 << 20
    """Bytes of stdout and of stderr kept (the rest is read and dropped)."""
    artifact_cap: int = 64 << 20
    """Total bytes of artifacts collected from ``out/``."""
    path: str = "/usr/local/bin:/usr/bin:/bin"
    lang: str = "C.UTF-8"
    retry_exit_code: int = EX_TEMPFAIL
    keep_workdir: bool = False
    """Keep the working directory after the run (for debugging)."""


Entrypoint = Callable[[TaskSpec], Sequence[str]]
"""The argv of a task's agent (resolved by the server from the agent's deployment)."""


_PR_SET_PDEATHSIG = 1
_PR_SET_DUMPABLE = 4


def _prctl(option: int, value: int) -> None:
    """Linux ``prctl``; nothing elsewhere."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0)


def protect_worker() -> None:
    """Make this (worker) process undumpable: a run started by it, same user, can then not
    read its memory or ``/proc/<pid>/environ`` (database URL, API keys)."""
    _prctl(_PR_SET_DUMPABLE, 0)


def _limits(cpu_seconds: int, memory_bytes: int) -> Callable[[], None]:
    def apply() -> None:  # runs in the child between fork and exec
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds))
        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        # A worker killed with SIGKILL takes its run with it: the task is run again
        # elsewhere, and the orphan must not go on acting next to the new run.
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)

    return apply


async def _read_capped(stream: asyncio.StreamReader | None, cap: int) -> bytes:
    if stream is None:
        return b""
    kept = bytearray()
    while chunk := await stream.read(65536):
        if len(kept) < cap:
            kept += chunk[: cap - len(kept)]
    return bytes(kept)


def _kill_group(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def collect_artifacts(out_dir: Path, cap: int) -> tuple[Artifact, ...]:
    """Regular files below ``out_dir`` (no symlinks), names relative, up to ``cap`` bytes."""
    found: list[Artifact] = []
    total = 0
    if not out_dir.is_dir():
        return ()
    for path in sorted(out_dir.rglob("*")):
        if path.is_symlink() or not path.is_file():
            continue
        data = path.read_bytes()
        total += len(data)
        if total > cap:
            break
        found.append(Artifact.of(path.relative_to(out_dir).as_posix(), data))
    return tuple(found)


class SubprocessRuntime:
    """Runs tasks as child processes with resource limits (see the module docstring)."""

    def __init__(
        self, config: SubprocessConfig, entrypoint: Entrypoint, clock: Clock | None = None
    ) -> None:
        self.config = config
        self.entrypoint = entrypoint
        self.clock: Clock = clock if clock is not None else SystemClock()

    def environment(self, task: TaskSpec, ctx: RunContext, workdir: Path) -> dict[str, str]:
        """The child's complete environment."""
        return {
            "PATH": self.config.path,
            "HOME": str(workdir),
            "LANG": self.config.lang,
            "AION_RUN_ID": ctx.run_id,
            "AION_RUN_TOKEN": ctx.run_token,
            "AION_TOOL_CALL_URL": ctx.tool_call_url,
            "AION_TASK_ID": task.task_id,
            "AION_ATTEMPT": str(ctx.attempt),
        }

    async def run(self, task: TaskSpec, ctx: RunContext) -> RunResult:
        """Run the task's entrypoint once."""
        workdir = self.config.base_dir / ctx.run_id
        workdir.mkdir(parents=True, exist_ok=False)
        (workdir / "out").mkdir()
        try:
            return await self._run_in(task, ctx, workdir)
        finally:
            if not self.config.keep_workdir:
                shutil.rmtree(workdir, ignore_errors=True)

    async def _run_in(self, task: TaskSpec, ctx: RunContext, workdir: Path) -> RunResult:
        cfg = self.config
        proc = await asyncio.create_subprocess_exec(
            *self.entrypoint(task),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=workdir,
            env=self.environment(task, ctx, workdir),
            start_new_session=True,
            preexec_fn=_limits(cfg.cpu_seconds, cfg.memory_bytes),
        )
        try:
            communicate = asyncio.ensure_future(self._communicate(proc, task))
            timeout = cfg.wall_timeout_s if cfg.wall_timeout_s is not None else task.timeout_s
            timer = asyncio.ensure_future(self.clock.sleep(timeout))
            await asyncio.wait({communicate, timer}, return_when=asyncio.FIRST_COMPLETED)
            timer.cancel()
            if not communicate.done():
                _kill_group(proc)
                stdout, stderr = await communicate
                return RunResult(
                    outcome=RunOutcome.TIMED_OUT,
                    cause=f"killed after the wall-clock limit of {timeout:g}s",
                    stdout=stdout,
                    stderr=stderr,
                )
            stdout, stderr = communicate.result()
        except BaseException:
            _kill_group(proc)
            with contextlib.suppress(ProcessLookupError):
                await proc.wait()
            raise
        finally:
            _kill_group(proc)  # leftovers of the group (children the agent forked)
        code = proc.returncode if proc.returncode is not None else -1
        outputs = collect_artifacts(workdir / "out", cfg.artifact_cap)
        outcome, cause = self._classify(code)
        return RunResult(
            outcome=outcome,
            cause=cause,
            outputs=outputs,
            exit_code=code,
            stdout=stdout,
            stderr=stderr,
        )

    async def _communicate(
        self, proc: asyncio.subprocess.Process, task: TaskSpec
    ) -> tuple[bytes, bytes]:
        cap = self.config.output_cap
        reads = asyncio.gather(_read_capped(proc.stdout, cap), _read_capped(proc.stderr, cap))
        if proc.stdin is not None:
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                proc.stdin.write(json.dumps(dict(task.payload)).encode())
                await proc.stdin.drain()
            proc.stdin.close()
        stdout, stderr = await reads
        await proc.wait()
        return stdout, stderr

    def _classify(self, code: int) -> tuple[RunOutcome, str]:
        if code == 0:
            return RunOutcome.SUCCEEDED, ""
        if code == self.config.retry_exit_code:
            return RunOutcome.FAILED_RETRYABLE, f"exit code {code} (retry requested)"
        if code < 0:
            name = signal.Signals(-code).name if -code in signal.valid_signals() else str(-code)
            hint = " (cpu time limit)" if -code == signal.SIGXCPU else ""
            return RunOutcome.FAILED_PERMANENT, f"killed by signal {name}{hint}"
        return RunOutcome.FAILED_PERMANENT, f"exit code {code}"
