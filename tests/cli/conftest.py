"""Run the `aion` CLI in process and capture what it prints."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from server.cli.main import main


@dataclass
class Run:
    code: int
    out: str
    err: str


@pytest.fixture
def aion(capsys: pytest.CaptureFixture[str]) -> Callable[..., Run]:
    def run(*args: str | Path) -> Run:
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return Run(code, captured.out, captured.err)

    return run


DEMO_REGO = """package aion.agent.deploy
import rego.v1

deny contains {"msg": "agent has no model", "id": "demo.model"} if not input.resource.attributes.model
"""
DEMO_TEST = """package aion.agent.deploy_test
import rego.v1
import data.aion.agent.deploy

test_no_model_denied if count(deploy.deny) == 1 with input as {"resource": {"attributes": {}}}
test_model_allowed if count(deploy.deny) == 0 with input as {"resource": {"attributes": {"model": "m"}}}
"""
DEMO_CEDAR = """@id("operators-deploy")
permit(principal in Role::"operator", action == Action::"agent.deploy", resource)
when { resource.tenant == principal.tenant };
"""
DEMO_SCHEMA = """entity Role;
entity Tenant;
entity User in [Role] { tenant: String, roles: Set<String>, kind: String };
entity Service in [Role] { tenant: String, roles: Set<String>, kind: String };
entity Agent in [Tenant] { tenant: String };
action "agent.deploy" appliesTo { principal: [User, Service], resource: [Agent], context: {} };
"""


@pytest.fixture
def demo_bundle(tmp_path: Path) -> Path:
    """A small two-language bundle source directory."""
    src = tmp_path / "demo"
    src.mkdir()
    (src / ".manifest").write_text(
        '{"revision": "1", "roots": ["aion/agent"], "metadata": {"name": "demo"}}'
    )
    (src / "deploy.rego").write_text(DEMO_REGO)
    (src / "deploy_test.rego").write_text(DEMO_TEST)
    (src / "policies.cedar").write_text(DEMO_CEDAR)
    (src / "schema.cedarschema").write_text(DEMO_SCHEMA)
    return src
