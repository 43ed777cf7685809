"""The runtime registry (operator-controlled) and `RuntimeRouter`, the worker's kernel `Runtime`.

Security model: only runtimes an operator names in the registry file
(``AION_RUNTIMES_FILE``, default the shipped ``runtimes.yaml``) can run. An
agent picks one **by name** in its config (``runtime``; no default); it
never supplies a command line, a URL or a key. An unknown name is a permanent
failure that names it. API keys of ``http`` runtimes come from the worker's
environment (``api_key_env``), read once when the registry is loaded.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from kernel import RunContext, RunOutcome, RunResult, Runtime, TaskSpec
from kernel.runtimes.subprocess import SubprocessConfig, SubprocessRuntime, protect_worker
from server.db.tables import Agent
from server.settings import Settings

SHIPPED = Path(__file__).resolve().parent / "runtimes.yaml"
KINDS = ("subprocess", "http")


class RuntimeConfigError(ValueError):
    """The registry file is unreadable or names a runtime badly."""


@dataclass(frozen=True)
class RuntimeSpec:
    """One named runtime of the registry."""

    name: str
    kind: str
    argv: tuple[str, ...] = ()
    cpu_seconds: int = 60
    memory_bytes: int = 1 << 30
    wall_timeout_s: float | None = None
    base_url: str = ""
    model: str = ""
    api_key: str = ""
    timeout_s: float = 60.0
    system_prompt: str = ""


def _spec(name: str, doc: Any, env: Mapping[str, str]) -> RuntimeSpec:
    if not isinstance(doc, dict):
        raise RuntimeConfigError(f"runtime `{name}` must be a mapping")
    kind = doc.get("kind")
    if kind not in KINDS:
        raise RuntimeConfigError(
            f"runtime `{name}`: kind must be one of {list(KINDS)}, not {kind!r}"
        )
    if kind == "subprocess":
        argv = doc.get("argv")
        if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
            raise RuntimeConfigError(f"runtime `{name}`: argv must be a non-empty list of strings")
        wall = doc.get("wall_timeout_s")
        return RuntimeSpec(
            name=name,
            kind=kind,
            argv=tuple(a.replace("{python}", sys.executable) for a in argv),
            cpu_seconds=int(doc.get("cpu_seconds", 60)),
            memory_bytes=int(doc.get("memory_mb", 1024)) << 20,
            wall_timeout_s=None if wall is None else float(wall),
        )
    if not doc.get("base_url") or not doc.get("model"):
        raise RuntimeConfigError(f"runtime `{name}`: an http runtime needs base_url and model")
    key_env = str(doc.get("api_key_env", ""))
    return RuntimeSpec(
        name=name,
        kind=kind,
        base_url=str(doc["base_url"]),
        model=str(doc["model"]),
        api_key=env.get(key_env, "") if key_env else "",
        timeout_s=float(doc.get("timeout_s", 60.0)),
        system_prompt=str(doc.get("system_prompt", "")),
    )


@dataclass(frozen=True)
class RuntimeRegistry:
    """The runtimes agents may use, by name."""

    runtimes: Mapping[str, RuntimeSpec]

    @classmethod
    def parse(cls, text: str, env: Mapping[str, str] | None = None) -> RuntimeRegistry:
        """A registry from YAML text (``runtimes: {name: {kind: ..., ...}}``)."""
        doc = yaml.safe_load(text) or {}
        found = doc.get("runtimes") if isinstance(doc, dict) else None
        if not isinstance(found, dict):
            raise RuntimeConfigError("the runtimes file needs a `runtimes` mapping")
        env = env or {}
        return cls({str(name): _spec(str(name), spec, env) for name, spec in found.items()})

    @classmethod
    def load(cls, settings: Settings, env: Mapping[str, str] | None = None) -> RuntimeRegistry:
        """The registry of ``settings.runtimes_file``, or the shipped one."""
        path = Path(settings.runtimes_file) if settings.runtimes_file else SHIPPED
        try:
            text = path.read_text()
        except OSError as exc:
            raise RuntimeConfigError(f"cannot read the runtimes file `{path}`: {exc}") from exc
        return cls.parse(text, env)


def run_dir(settings: Settings) -> Path:
    """Where subprocess runs get their working directories."""
    return Path(settings.run_dir) if settings.run_dir else settings.data_dir / "runs"


def tool_call_url(settings: Settings) -> str:
    """The tool-call URL template runs get (``{run_id}`` is replaced per run)."""
    base = settings.public_url or f"http://{settings.host}:{settings.port}"
    return base.rstrip("/") + "/api/v1/runs/{run_id}/tool-calls"


async def agent_runtime_name(task: TaskSpec) -> str | None:
    """The runtime named by the task's agent (``""`` when it names none); None when the agent
    is gone. There is no default: an agent runs only what it was configured (and decided) for."""
    where = (Agent.id == task.agent_id) & (Agent.tenant == task.tenant)
    row = await Agent.select(Agent.config).where(where).output(load_json=True).first()
    if row is None:
        return None
    config = row["config"] if isinstance(row["config"], dict) else {}
    return str(config.get("runtime") or "")


class RuntimeRouter:
    """The kernel :class:`~kernel.Runtime` of a worker: runs each task on its agent's runtime."""

    def __init__(self, registry: RuntimeRegistry, base_dir: Path) -> None:
        self.registry = registry
        self.base_dir = base_dir
        self._built: dict[str, Runtime] = {}
        protect_worker()  # runs (same user) cannot read this process's memory or environment

    def _runtime(self, spec: RuntimeSpec) -> Runtime:
        built = self._built.get(spec.name)
        if built is not None:
            return built
        if spec.kind == "subprocess":
            argv = list(spec.argv)
            config = SubprocessConfig(
                base_dir=self.base_dir,
                cpu_seconds=spec.cpu_seconds,
                memory_bytes=spec.memory_bytes,
                wall_timeout_s=spec.wall_timeout_s,
            )
            built = SubprocessRuntime(config, lambda _task: argv)
        else:
            from kernel.runtimes.http import HttpRuntime, HttpRuntimeConfig  # noqa: PLC0415

            built = HttpRuntime(
                HttpRuntimeConfig(
                    base_url=spec.base_url,
                    model=spec.model,
                    api_key=spec.api_key,
                    timeout_s=spec.timeout_s,
                    system_prompt=spec.system_prompt,
                )
            )
        self._built[spec.name] = built
        return built

    async def run(self, task: TaskSpec, ctx: RunContext) -> RunResult:
        """Run ``task`` on the runtime its agent names (read now, not at submit)."""
        name = await agent_runtime_name(task)
        if name is None:
            cause = f"agent `{task.agent_id}` no longer exists"
            return RunResult(outcome=RunOutcome.FAILED_PERMANENT, cause=cause)
        spec = self.registry.runtimes.get(name)
        if spec is None:
            known = ", ".join(sorted(self.registry.runtimes)) or "none"
            cause = (
                f"runtime `{name}` is not configured on this worker (known: {known})"
                if name
                else f"agent `{task.agent_id}` names no runtime (config `runtime`; known: {known})"
            )
            return RunResult(outcome=RunOutcome.FAILED_PERMANENT, cause=cause)
        self.base_dir.mkdir(parents=True, exist_ok=True)
        return await self._runtime(spec).run(task, ctx)


__all__ = [
    "RuntimeConfigError",
    "RuntimeRegistry",
    "RuntimeRouter",
    "RuntimeSpec",
    "agent_runtime_name",
    "run_dir",
    "tool_call_url",
]
