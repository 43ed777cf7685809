"""Shared fixtures of the engine unit tests.

Helpers are handed out as fixtures (factories) rather than imported, so this
directory needs no package and nothing here is imported by name.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from engine import (
    Bundle,
    Decision,
    DecisionRequest,
    Mode,
    PolicySet,
    Principal,
    Resource,
    decide,
)
from engine.bundle import bundle_from_files

#: A fixed "now" for every test; nothing here reads the host clock.
NOW = datetime(2026, 3, 14, 15, 9, 26, tzinfo=UTC)

#: A Cedar schema for the request shape the engine builds (see engine.cedar).
CEDAR_SCHEMA = """
entity Role;
entity Tenant;
entity User in [Role] { tenant: String, roles: Set<String>, kind: String };
entity Service in [Role] { tenant: String, roles: Set<String>, kind: String };
entity Agent in [Tenant] { tenant: String, env?: String, owner?: User };

action "agent.deploy" appliesTo {
  principal: [User, Service],
  resource: [Agent],
  context: { budget?: decimal, level?: Long, approver?: User }
};

action "agent.create" appliesTo {
  principal: [User, Service],
  resource: [Agent],
  context: {}
};
"""

FileMap = Mapping[str, str | bytes]


def _encode(files: FileMap, manifest: dict[str, Any] | None) -> dict[str, bytes]:
    out = {name: raw.encode() if isinstance(raw, str) else raw for name, raw in files.items()}
    if manifest is not None:
        out[".manifest"] = json.dumps(manifest).encode()
    return out


@pytest.fixture
def now() -> datetime:
    """The fixed evaluation time."""
    return NOW


@pytest.fixture
def cedar_schema() -> str:
    """The Cedar schema text used by the Cedar tests."""
    return CEDAR_SCHEMA


@pytest.fixture
def encode_files() -> Callable[..., dict[str, bytes]]:
    """``encode_files(files, manifest=None)``: text files as bytes, plus a `.manifest`."""

    def make(files: FileMap, manifest: dict[str, Any] | None = None) -> dict[str, bytes]:
        return _encode(files, manifest)

    return make


@pytest.fixture
def make_bundle() -> Callable[..., Bundle]:
    """``make_bundle(files, name="b", manifest=None)``: an in-memory bundle."""

    def make(files: FileMap, name: str = "b", manifest: dict[str, Any] | None = None) -> Bundle:
        return bundle_from_files(_encode(files, manifest), name)

    return make


@pytest.fixture
def write_tree(tmp_path: Path) -> Callable[..., Path]:
    """``write_tree(files, under="tree")``: files written below ``tmp_path / under``."""

    def make(files: FileMap, under: str = "tree") -> Path:
        root = tmp_path / under
        root.mkdir(parents=True, exist_ok=True)
        for name, raw in files.items():
            path = root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(raw, str):
                path.write_text(raw)
            else:
                path.write_bytes(raw)
        return root

    return make


@pytest.fixture
def make_request() -> Callable[..., DecisionRequest]:
    """``make_request(action="agent.deploy", roles=..., attributes=..., context=..., ...)``."""

    def make(
        action: str = "agent.deploy",
        *,
        principal_id: str = "alice",
        principal_tenant: str = "t1",
        roles: tuple[str, ...] = ("admin",),
        kind: str = "user",
        resource_type: str = "agent",
        resource_id: str = "a1",
        attributes: dict[str, Any] | None = None,
        context: dict[str, Any] | None = None,
    ) -> DecisionRequest:
        return DecisionRequest(
            action=action,
            principal=Principal(
                id=principal_id, tenant=principal_tenant, roles=list(roles), kind=kind
            ),
            resource=Resource(
                type=resource_type,
                id=resource_id,
                tenant="t1",
                attributes={"env": "dev"} if attributes is None else attributes,
            ),
            context=context or {},
        )

    return make


@pytest.fixture
def decide_now() -> Callable[..., Decision]:
    """``decide_now(policy_set, request, mode=..., time_limit_us=...)`` at :data:`NOW`.

    The time limit defaults to "never": these tests are about verdicts, and
    the clock of a loaded CI machine must not turn one into a timeout.
    """

    def run(
        policy_set: PolicySet,
        request: DecisionRequest,
        *,
        mode: Mode = Mode.ENFORCE,
        when: datetime = NOW,
        time_limit_us: float = float("inf"),
    ) -> Decision:
        return decide(policy_set, request, now=when, mode=mode, time_limit_us=time_limit_us)

    return run


@dataclass(frozen=True)
class KeyPair:
    """A generated signing key and its public half, both PEM text."""

    algorithm: str
    private_pem: str
    public_pem: str


@pytest.fixture(scope="session")
def keys(key_pairs: dict[str, tuple[str, str]]) -> dict[str, KeyPair]:
    """The session's generated keys (tests/conftest.py): RS256 (RSA 2048), ES256, EdDSA."""
    return {alg: KeyPair(alg, *key_pairs[alg]) for alg in ("RS256", "ES256", "EdDSA")}


@pytest.fixture(scope="session")
def other_keys(key_pair_factory: Callable[[str], tuple[str, str]]) -> dict[str, KeyPair]:
    """A second, unrelated key per algorithm (for "right kid, wrong key")."""
    return {alg: KeyPair(alg, *key_pair_factory(alg)) for alg in ("RS256", "ES256", "EdDSA")}
