"""A real OPA sidecar against a real `aion serve`, configured as docs/opa.md says.

OPA downloads and verifies our signed bundles, answers decisions as our embedded engine
does, uploads its decision log (stored with the right bundle revisions) and reports its
status; a tenant revision activated through our API reaches it. An OPA holding the wrong
verification key activates nothing.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import yaml

from tests.conftest import REPO, generate_key_pair
from tests.server.bundle_support import KEY_ID, LS, SIGNER, build, public_pem
from tests.services import aion_serve, free_port

BIN = Path(sys.executable).parent
GUIDE = REPO / "docs" / "opa.md"
DEADLINE_S = 60.0
T = TypeVar("T")


def _until(what: str, probe: Callable[[], T | None], deadline_s: float = DEADLINE_S) -> T:
    """Poll ``probe`` until it returns something, or fail naming ``what``."""
    end = time.monotonic() + deadline_s
    while True:
        found = probe()
        if found is not None:
            return found
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.2)


def guide_config() -> dict[str, Any]:
    """The sidecar configuration block of docs/opa.md."""
    text = GUIDE.read_text()
    after = text[text.index("<!-- sidecar-config") :]
    block = re.search(r"```yaml\n(.*?)```", after, re.S)
    assert block is not None, "docs/opa.md has its sidecar-config yaml block"
    config: dict[str, Any] = yaml.safe_load(block.group(1))
    return config


@pytest.fixture
def aion(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A real `aion serve` (SQLite, fresh data dir): (base URL, admin token)."""
    with aion_serve(tmp_path, drop=("AION_DATABASE_URL", "AION_REDIS_URL")) as running:
        yield running


class Opa:
    """A running `opa run --server` with a config file."""

    def __init__(self, opa_bin: Path, config: dict[str, Any], token: str, work: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        work.mkdir(parents=True, exist_ok=True)
        path = work / "opa.yaml"
        path.write_text(yaml.safe_dump(config))
        self.log = work / "opa.log"
        with self.log.open("w") as log:
            self.proc = subprocess.Popen(
                [
                    *(str(opa_bin), "run", "--server", "--addr", f"127.0.0.1:{self.port}"),
                    *("--config-file", str(path), "--log-level", "info"),
                ],
                env={**os.environ, "AION_SIDECAR_TOKEN": token},
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def health(self) -> int | None:
        assert self.proc.poll() is None, self.log.read_text()[-3000:]
        try:
            return int(httpx.get(f"{self.url}/health?bundles=true", timeout=2).status_code)
        except httpx.HTTPError:
            return None

    def decide(self, path: str, request: dict[str, Any]) -> Any:
        response = httpx.post(f"{self.url}/v1/data/{path}", json={"input": request}, timeout=10)
        assert response.status_code == 200, response.text
        return response.json().get("result")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


def sidecar_config(base: str, keys: list[dict[str, Any]]) -> dict[str, Any]:
    """The guide's configuration with this run's URL and keys, and short delays."""
    config = guide_config()
    config["services"]["aion"]["url"] = base
    assert config["services"]["aion"]["credentials"]["bearer"]["token"] == "${AION_SIDECAR_TOKEN}"
    config["keys"] = {
        k["key_id"]: {"algorithm": k["algorithm"], "key": k["public_key"]} for k in keys
    }
    for bundle in config["bundles"].values():
        assert bundle["signing"] == {} and bundle["service"] == "aion"
        bundle["polling"] = {"min_delay_seconds": 1, "max_delay_seconds": 2}
    config["decision_logs"]["reporting"] = {"min_delay_seconds": 1, "max_delay_seconds": 2}
    return config


def opa_input(command: str) -> dict[str, Any]:
    """Our decision request shape, as `POST /api/v1/decide` builds it for the admin."""
    return {
        "action": "tool.invoke",
        "principal": {"id": "usr_admin", "tenant": "default", "roles": ["admin"], "kind": "user"},
        "resource": {"type": "tool", "id": "ops.shell", "tenant": "default", "attributes": {}},
        "context": {"arguments": {"command": command}},
    }


def test_an_opa_sidecar_runs_on_our_bundles_and_reports_back(
    opa_bin: Path, aion: tuple[str, str], tmp_path: Path
) -> None:
    base, admin = aion
    api = httpx.Client(base_url=f"{base}/api/v1", headers={"Authorization": f"Bearer {admin}"})
    # the tenant trusts its own signing key before the sidecar is configured
    trusted = api.post(
        "/keys", json={"key_id": KEY_ID, "algorithm": "ES256", "public_key": public_pem(SIGNER)}
    )
    assert trusted.status_code == 201, trusted.text
    created = api.post("/sidecars", json={"name": "e2e"})
    assert created.status_code == 201, created.text
    sidecar_id, token = created.json()["id"], created.json()["token"]
    keys = api.get("/sidecars/keys").json()
    assert {k["key_id"] for k in keys["keys"]} >= {"aion-embedded", KEY_ID}
    shipped = {b["name"]: b["revision"] for b in keys["bundles"]}
    assert set(shipped) == set(guide_config()["bundles"])

    opa = Opa(opa_bin, sidecar_config(base, keys["keys"]), token, tmp_path / "opa")
    try:
        _until("OPA to activate every bundle", lambda: True if opa.health() == 200 else None)

        # decisions as our embedded engine takes them
        for command in ("ls", "rm -rf /"):
            ours = api.post("/decide", json={**LS, "context": {"arguments": {"command": command}}})
            assert ours.status_code == 200, ours.text
            denials = opa.decide("aion/tool/invoke/deny", opa_input(command))
            assert isinstance(denials, list)
            assert (len(denials) == 0) == ours.json()["allowed"], (command, denials)
        assert opa.decide("aion/tool/invoke/deny", opa_input("ls")) == []

        # its decision log reaches ours, with the revision OPA decided with
        def ingested() -> list[dict[str, Any]] | None:
            page = api.get("/decisions", params={"action": "tool.invoke", "limit": 50}).json()
            found = [i for i in page["items"] if i["source"] == "opa"]
            return found if len(found) >= 3 else None

        items = _until("OPA's decision log upload", ingested)
        record = api.get(f"/decisions/{items[0]['id']}").json()
        assert record["source"] == "opa"
        assert record["revisions"]["default-safe"] == shipped["default-safe"]
        assert record["opa"]["path"] == "aion/tool/invoke/deny"
        assert record["opa"]["sidecar"] == {"id": sidecar_id, "name": "e2e"}
        assert {(i["allowed"], i["outcome"]) for i in items} == {(True, "allow"), (False, "deny")}

        # its status shows in GET /sidecars
        def reported(revision: str) -> dict[str, Any] | None:
            found = api.get(f"/sidecars/{sidecar_id}").json()["instances"]
            for instance in found:
                state = instance["bundles"].get("default-safe", {})
                if state.get("active_revision") == revision:
                    return dict(instance)
            return None

        instance = _until("a status report", lambda: reported(shipped["default-safe"]))
        assert instance["version"] and set(instance["bundles"]) == set(shipped)
        assert instance["errors"] == []

        # a tenant revision activated through our API reaches the sidecar
        revision = "2026.11.28.2"
        uploaded = api.post(
            "/bundles",
            content=build(revision, without_ls=True),
            headers={"Content-Type": "application/gzip"},
        )
        assert uploaded.status_code == 201, uploaded.text
        activated = api.post("/bundles/default-safe/activate", json={"revision": revision})
        assert activated.status_code == 200, activated.text
        _until(
            "OPA to deny `ls` under the new revision",
            lambda: True if opa.decide("aion/tool/invoke/deny", opa_input("ls")) else None,
        )
        assert api.post("/decide", json=LS).json()["allowed"] is False, "our engine agrees"
        picked = _until("the new revision in OPA's status", lambda: reported(revision))
        assert picked["bundles"]["default-safe"]["served_revision"] == revision
    finally:
        opa.stop()
        api.close()


def test_an_opa_with_the_wrong_key_activates_nothing(
    opa_bin: Path, aion: tuple[str, str], tmp_path: Path
) -> None:
    base, admin = aion
    api = httpx.Client(base_url=f"{base}/api/v1", headers={"Authorization": f"Bearer {admin}"})
    created = api.post("/sidecars", json={"name": "wrong-key"}).json()
    _, stranger = generate_key_pair("ES256")
    keys = [{"key_id": "aion-embedded", "algorithm": "ES256", "public_key": stranger}]
    opa = Opa(opa_bin, sidecar_config(base, keys), created["token"], tmp_path / "opa")
    try:

        def refused() -> list[dict[str, Any]] | None:
            for instance in api.get(f"/sidecars/{created['id']}").json()["instances"]:
                errors = [e for e in instance["errors"] if e.get("code") == "bundle_error"]
                if errors:
                    return errors
            return None

        errors = _until("OPA to report the refused bundles", refused)
        assert any("signature" in (e["message"] or "") for e in errors), errors
        assert opa.health() == 500, "no bundle activated"
        result = httpx.post(
            f"{opa.url}/v1/data/aion/tool/invoke/deny", json={"input": opa_input("ls")}, timeout=5
        ).json()
        assert "result" not in result, "no policy loaded"
    finally:
        opa.stop()
        api.close()
