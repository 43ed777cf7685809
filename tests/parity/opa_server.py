"""A real `opa run --server` per bundle, queried over one kept-alive HTTP connection."""

from __future__ import annotations

import http.client
import json
import subprocess
import time
from pathlib import Path
from typing import Any

from engine.actions import REGO_COMMON_PACKAGE, rego_package
from tests.services import free_port

PROBE_PACKAGE = "parity_probe"
DECISION_RULES = ("deny", "warn", "obligations")


def probe_rule(action: str) -> str:
    """The probe rule answering ``action``: ``agent.deploy`` → ``agent_deploy``."""
    return action.replace(".", "_")


def probe_module(actions: list[str]) -> str:
    """A module gathering, per action, each decision rule of its package and of
    `aion.common` as a list: ``[]`` when the rule is undefined, ``[value]`` when defined."""
    lines = [f"package {PROBE_PACKAGE}", "import rego.v1", ""]
    for action in actions:
        parts = []
        for prefix, package in (("", rego_package(action)), ("common_", REGO_COMMON_PACKAGE)):
            parts += [f'"{prefix}{r}": [v | v := data.{package}.{r}]' for r in DECISION_RULES]
        lines.append(f"{probe_rule(action)} := {{{', '.join(parts)}}}")
    return "\n".join(lines) + "\n"


class OpaServer:
    """`opa run --server --bundle DIR` on a free loopback port, with the probe module loaded."""

    def __init__(self, opa_bin: Path, bundle_dir: Path, actions: list[str]) -> None:
        self.port = free_port()
        self.process = subprocess.Popen(
            [
                str(opa_bin),
                "run",
                "--server",
                "--addr",
                f"127.0.0.1:{self.port}",
                "--log-level",
                "error",
                "--bundle",
                str(bundle_dir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self._conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        self._wait_healthy(deadline_s=60)
        status, body = self._request("PUT", f"/v1/policies/{PROBE_PACKAGE}", probe_module(actions))
        if status != 200:
            raise RuntimeError(f"OPA refused the probe module: {status} {body!r}")

    def _wait_healthy(self, deadline_s: float) -> None:
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = self.process.stderr.read().decode() if self.process.stderr else ""
                raise RuntimeError(f"opa exited with {self.process.returncode}: {err}")
            try:
                status, _ = self._request("GET", "/health?bundles=true")
                if status == 200:
                    return
            except OSError:
                self._conn.close()
            time.sleep(0.05)
        raise RuntimeError("OPA did not become healthy in time")

    def _request(self, method: str, path: str, body: str | None = None) -> tuple[int, bytes]:
        self._conn.request(method, path, body=body, headers={"Content-Type": "application/json"})
        response = self._conn.getresponse()
        return response.status, response.read()

    def send(self, action: str, doc: dict[str, Any]) -> None:
        """Ask for the probe rule of ``action`` with input ``doc``; :meth:`receive` answers.

        Split in two so that the caller evaluates the embedded side while OPA works.
        """
        self._conn.request(
            "POST",
            f"/v1/data/{PROBE_PACKAGE}/{probe_rule(action)}",
            body=json.dumps({"input": doc}),
            headers={"Content-Type": "application/json"},
        )

    def receive(self) -> tuple[int, Any]:
        """(status, decoded body) of the request :meth:`send` made."""
        response = self._conn.getresponse()
        return response.status, json.loads(response.read())

    def decide(self, action: str, doc: dict[str, Any]) -> tuple[int, Any]:
        """(status, body) of the probe rule of ``action`` for input ``doc``."""
        self.send(action, doc)
        return self.receive()

    def stop(self) -> None:
        """Stop the server and reap it."""
        self._conn.close()
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stderr:
            self.process.stderr.close()
