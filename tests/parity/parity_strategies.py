"""Hypothesis strategies for the decision requests each shipped bundle reads.

Every field a bundle's Rego reads (see the `.rego` files) gets realistic values
from the bundle's data files and FIXTURES, and adversarial ones: missing,
null, wrong types, empty and blank strings, unicode, big and fractional
numbers. The typed top of the request (principal id/tenant/roles/kind,
resource type/id/tenant) stays well typed, as `DecisionRequest` guarantees
before any engine sees it, but its strings are adversarial too.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import msgspec
from hypothesis import strategies as st

from engine.model import DecisionRequest
from tests.conftest import POLICIES

MISSING = object()

_DEFAULT_SAFE = json.loads((POLICIES / "default-safe/aion/lib/default_safe/data.json").read_text())
_INVOKE = json.loads((POLICIES / "default-safe/aion/tool/invoke/data.json").read_text())
_SUBMIT = json.loads((POLICIES / "model-privacy/aion/task/submit/data.json").read_text())
_REGISTRY = json.loads(
    (POLICIES / "registry-admission/aion/lib/registry_admission/data.json").read_text()
)

TENANTS = ["acme", "globex", "", " acme", "ACME", "ténant-ü", "acme\u0000"]
ROLES = [
    "admin", "operator", "developer", "viewer", "security", "auditor", "platform-admin",
    "ROLE_ADMIN", "manager", "", "Admin",
]  # fmt: skip
TOOLS = [*_DEFAULT_SAFE["known_tools"], "ops.reboot", "ops.", "OPS.shell", "evil.tool", ""]
MODELS = [
    "llama3.2:3b", "mixtral-8x7b", "gpt-4o", "azure-gpt4o", "hf-deepseek-v2", "gpt-4.5",
    "model://gpt-4o", "", "   ",
]  # fmt: skip
STATUSES = ["draft", "deployed", "disabled", "active", "retired", "", "DEPLOYED"]
PRIVACY = [*_REGISTRY["privacy_levels"], "public", "", "LOCAL-ONLY"]
DIGEST = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
SHA256S = [DIGEST, "0" * 64, "d41d8cd98f00b204e9800998ecf8427e", DIGEST.upper(), DIGEST[:-1], ""]
SIGNATURES = [
    "minisign:ABC123",
    "minisign:" + "RWQf6LRCGA9i53mlYecO4IzT51TGPpvWucNSCh1CBM0QTaLn73Y7GFO3" * 2,
    "cosign:short",
    "",
]

text = st.text(st.characters(exclude_categories=["Cs"]), max_size=8)
BIG = [2**53 + 1, 2**63, 2**64 + 7, -(2**63) - 1, 2**70, 10**30]
NUMBERS = [0, -1, 1, 0.5, 0.2, 0.2000001, -0.0, 1e-9, 1e7, 1e300, 1048576, 1048577, 1048576.5, *BIG]
numbers = st.one_of(
    st.sampled_from(NUMBERS),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
)
#: Values of the wrong type, empty or odd, for any field (cheap to draw: Hypothesis'
#: per-draw cost decides whether 10,000 inputs per bundle fit in `make test`).
ADVERSARIAL: list[Any] = [
    None, True, False, *NUMBERS, "", " ", "\t\n", "null", "true", "0", "ü", "\u0000", "\u2028",
    "🙂", "a" * 300, [], {}, [None], [""], [1, "a"], {"": None}, {"id": 1}, [[], {}],
]  # fmt: skip
adversarial = st.one_of(st.sampled_from(ADVERSARIAL), st.sampled_from(ADVERSARIAL), text, numbers)


def field(realistic: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly realistic; sometimes adversarial, sometimes missing."""
    return st.one_of(realistic, realistic, realistic, adversarial, st.just(MISSING))


ODD_STRINGS = ["", " ", "\t", "ü", "\u0000", "🙂", "a" * 300, "null", "0"]


def pick(values: list[Any]) -> st.SearchStrategy[Any]:
    """A realistic value from ``values``, an odd string, or any text."""
    realistic = st.sampled_from(values)
    return st.one_of(realistic, realistic, realistic, st.sampled_from(ODD_STRINGS), text)


def obj(spec: Mapping[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[dict[str, Any]]:
    """A dict of the spec's fields, each possibly adversarial or missing; sometimes extra keys."""

    def drop(d: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in d.items() if v is not MISSING}

    fields = st.fixed_dictionaries({k: field(v) for k, v in spec.items()}).map(drop)
    extra = st.fixed_dictionaries({"": adversarial, "extra": adversarial})
    return st.one_of(
        fields, fields, fields, st.tuples(fields, extra).map(lambda p: {**p[1], **p[0]})
    )


def tool_list(values: list[Any]) -> st.SearchStrategy[Any]:
    return st.lists(pick(values), max_size=3)


# ---- strings for the argument checks of tool.invoke -------------------------------------

_SHELL = _INVOKE["allowlists"]["ops.shell"]
_FILES = _INVOKE["allowlists"]["file.read"]
_HTTP = _INVOKE["allowlists"]["http.get"]
path_segments = st.sampled_from(["data", "data2", "app", "shared", "etc", "..", ".", "", "x y"])
paths = st.one_of(
    st.lists(path_segments, max_size=5).map(lambda s: "/" + "/".join(s)),
    st.lists(path_segments, max_size=3).map("/".join),
    st.sampled_from(["/data/x", "/data2/secret", "/data/../etc/passwd", "~/x", "/app/shared/"]),
    text,
)
shell_words = st.one_of(
    st.sampled_from(_SHELL["commands"]), st.sampled_from(_SHELL["metacharacters"]), paths, text
)
commands = st.one_of(
    st.lists(shell_words, min_size=1, max_size=4).map(" ".join),
    st.sampled_from(["ls; rm -rf /", "ls && curl x", "cat $(id)", "ls `id`", "ls | sh", "  "]),
)
hosts = st.sampled_from(
    [*_HTTP["hosts"], "evilexample.com", "example.com.evil.net", "EXAMPLE.COM", "127.0.0.1",
     "2130706433", "0x7f.0.0.1", "[::1]", "::1", "[fe80::1%25eth0]", "user@example.com", ""]
)  # fmt: skip
urls = st.one_of(
    st.tuples(
        st.sampled_from(["https", "http", "HTTP", "ftp", "file", "1http", ""]),
        hosts,
        st.sampled_from(["", ":443", ":80", ":0443", ":8080", ":", ":99999"]),
        st.sampled_from(["", "/", "/x?y#z", "/a b", "\\x"]),
    ).map(lambda p: f"{p[0]}://{p[1]}{p[2]}{p[3]}"),
    text,
)

# ---- the request skeleton -----------------------------------------------------------------


def request(
    action: str,
    resource_types: list[str],
    resource_ids: list[Any] | st.SearchStrategy[Any],
    attributes: st.SearchStrategy[dict[str, Any]],
    context: st.SearchStrategy[dict[str, Any]],
) -> st.SearchStrategy[tuple[str, dict[str, Any]]]:
    """(action, input document) as `decide` builds it from a `DecisionRequest`."""
    principal = st.fixed_dictionaries(
        {
            "id": pick(["olga", "sam", "ci-bot", ""]),
            "tenant": pick(TENANTS),
            "roles": st.lists(pick(ROLES), max_size=3),
            "kind": st.sampled_from(["user", "service"]),
        }
    )
    resource = st.fixed_dictionaries(
        {
            "type": pick(resource_types),
            "id": resource_ids
            if isinstance(resource_ids, st.SearchStrategy)
            else pick(resource_ids),
            "tenant": pick(TENANTS),
            "attributes": attributes,
        }
    )
    raw = st.fixed_dictionaries(
        {
            "action": st.just(action),
            "principal": principal,
            "resource": resource,
            "context": context,
        }
    )
    return raw.map(lambda d: (action, msgspec.to_builtins(msgspec.convert(d, DecisionRequest))))


RESOURCE_TYPES = ["agent", "tool", "memory", "model", "artifact", "bundle", "task", ""]

agent_ctx = obj(
    {
        "id": pick(["research-copilot", "crm-bot", ""]),
        "tenant": pick(TENANTS),
        "status": pick(STATUSES),
        "tool_ids": tool_list(TOOLS),
    }
)
tenant_ctx = obj({"allowed_tools": tool_list(TOOLS)})
agent_attributes = obj(
    {
        "name": pick(["Research Copilot", "", "  ", "ü"]),
        "model": pick(MODELS),
        "tool_ids": tool_list(TOOLS),
        "status": pick(STATUSES),
        "template": pick(["autogpt-research", "crewai-crm", "superagi-github"]),
        "agent_id": pick(["research-copilot", "crm-bot"]),
        "policy_overrides": obj(
            {
                "privacy": obj({"allow_cloud": st.booleans()}),
                "budget": obj({"usd_max": numbers}),
            }
        ),
    }
)


def default_safe(action: str) -> st.SearchStrategy[tuple[str, dict[str, Any]]]:
    """Requests for one action of the default-safe bundle."""
    context = obj(
        {
            "agent": agent_ctx,
            "tenant": tenant_ctx,
            "reason": pick(["rotation", "", "  "]),
            "changes": obj(
                {
                    "status": pick(STATUSES),
                    "tenant": pick(TENANTS),
                    "name": pick(["New name", "", " "]),
                    "model": pick(MODELS),
                    "tool_ids": tool_list(TOOLS),
                    "policy_ids": st.lists(text, max_size=2),
                }
            ),
            "arguments": obj(
                {
                    "command": commands,
                    "path": paths,
                    "url": urls,
                    "auto_confirm": st.one_of(st.booleans(), st.none()),
                }
            ),
            "auto_confirm": st.one_of(st.booleans(), st.none()),
            "size_bytes": numbers,
        }
    )
    checked = st.sampled_from(["ops.shell", "file.read", "http.get"])
    ids = st.one_of(checked, checked, pick([*TOOLS, "research-copilot", "mem-1"]))
    return request(action, RESOURCE_TYPES, ids, agent_attributes, context)


def deploy_gates(action: str) -> st.SearchStrategy[tuple[str, dict[str, Any]]]:
    """Requests for agent.deploy."""
    policy = obj(
        {
            "name": pick(["default-safe", "research-extra"]),
            "status": pick(["active", "draft", "retired"]),
            "mode": pick(["enforce", "audit", "warn"]),
        }
    )
    model = obj(
        {
            "id": pick(MODELS),
            "registered": st.one_of(st.booleans(), st.just("yes")),
            "verified": st.one_of(st.booleans(), st.just("yes")),
            "privacy": pick(PRIVACY),
            "admin_approval_required": st.booleans(),
        }
    )
    context = obj({"policies": st.lists(policy, max_size=3), "model": model, "tenant": tenant_ctx})
    return request(action, RESOURCE_TYPES, ["research-copilot"], agent_attributes, context)


def model_privacy(action: str) -> st.SearchStrategy[tuple[str, dict[str, Any]]]:
    """Requests for task.submit."""
    intents = list(_SUBMIT["intents"])
    tiers = sorted({t for i in _SUBMIT["intents"].values() for t in i["tiers"]})
    context = obj(
        {
            "intent": pick([*intents, "SUMMARIZE"]),
            "model": obj({"id": pick(MODELS), "privacy": pick(PRIVACY)}),
            "tier": pick([*tiers, "tier9"]),
            "budget_usd": numbers,
        }
    )
    return request(action, RESOURCE_TYPES, ["research-copilot"], agent_attributes, context)


def registry_admission(action: str) -> st.SearchStrategy[tuple[str, dict[str, Any]]]:
    """Requests for model.register, artifact.register and bundle.activate."""
    attributes = obj(
        {
            "sha256": pick(SHA256S),
            "privacy": pick(PRIVACY),
            "admin_approval_required": st.booleans(),
            "signature": pick(SIGNATURES),
            "sbom": obj({"spdxVersion": pick(["SPDX-2.3"]), "packages": st.lists(adversarial)}),
            "checksums_stale": st.booleans(),
            "checksums_sha256": pick(SHA256S),
            "signed": st.booleans(),
            "signer_key_id": pick(["acme-release-2026", "other-key", ""]),
            "revision": pick(["2026.11.27.1", "", " "]),
        }
    )
    subjects = [f"sha256:{d}" for d in SHA256S]
    attestations = obj(
        {
            "verified": st.one_of(st.booleans(), st.just("true")),
            "subject_digests": st.lists(pick(subjects), max_size=2),
            "predicate_types": st.lists(
                pick([*_REGISTRY["accepted_predicate_types"], "https://spdx.dev/Document"]),
                max_size=2,
            ),
            "builder_id": pick(["https://ci.acme.example/builders/model-packager@v2", "", " "]),
            "signer_key_ids": st.lists(pick(["acme-release-2026"]), max_size=2),
        }
    )
    context = obj(
        {
            "attestations": attestations,
            "signature_verified": st.booleans(),
            "trusted_bundle_keys": st.lists(pick(["acme-release-2026", "other-key"]), max_size=2),
        }
    )
    return request(action, RESOURCE_TYPES, ["gpt-4.5", "llama3.2-3b", "b-1"], attributes, context)


DEFAULT_SAFE_ACTIONS = [
    "agent.create", "agent.update", "agent.disable", "tool.bind", "tool.unbind",
    "tool.invoke", "memory.write", "memory.read",
]  # fmt: skip

#: bundle → (actions it governs, strategy per action).
BUNDLES: dict[str, tuple[list[str], Any]] = {
    "default-safe": (DEFAULT_SAFE_ACTIONS, default_safe),
    "deploy-gates": (["agent.deploy"], deploy_gates),
    "model-privacy": (["task.submit"], model_privacy),
    "registry-admission": (
        ["model.register", "artifact.register", "bundle.activate"],
        registry_admission,
    ),
}


def requests_for(bundle: str) -> st.SearchStrategy[tuple[str, dict[str, Any]]]:
    """(action, input) pairs over every action ``bundle`` governs."""
    actions, make = BUNDLES[bundle]
    return st.one_of(*(make(a) for a in actions))
