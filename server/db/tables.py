"""piccolo tables: the ERD of the platform, every row tenant-scoped.

Ids are opaque strings with a type prefix (``agt_…``); JSON documents are
stored as text so the same tables run on SQLite and PostgreSQL.
"""

from __future__ import annotations

from piccolo.columns import (
    JSON,
    Boolean,
    Bytea,
    Float,
    Integer,
    Text,
    Timestamptz,
    Varchar,
)
from piccolo.table import Table


class Tenant(Table, tablename="tenants"):
    """A tenant; ``settings`` holds its limits (rate limit, allowed tools)."""

    id = Varchar(length=64, primary_key=True)
    name = Varchar(length=200, unique=True)
    settings = JSON(default="{}")
    created_at = Timestamptz()


class User(Table, tablename="users"):
    """A human or service principal known to a tenant."""

    id = Varchar(length=64, primary_key=True)
    tenant = Varchar(length=64, index=True)
    subject = Varchar(length=200)
    kind = Varchar(length=16, default="user")
    roles = JSON(default="[]")
    created_at = Timestamptz()


class ApiKey(Table, tablename="api_keys"):
    """A service credential; only its sha256 is stored."""

    id = Varchar(length=64, primary_key=True)
    tenant = Varchar(length=64, index=True)
    subject = Varchar(length=200)
    roles = JSON(default="[]")
    key_hash = Varchar(length=64, unique=True)
    created_at = Timestamptz()
    revoked = Boolean(default=False)


class Agent(Table, tablename="agents"):
    """An agent: template or direct form, its model, tools, policies and status."""

    id = Varchar(length=64, primary_key=True)
    tenant = Varchar(length=64, index=True)
    name = Varchar(length=200)
    template_id = Varchar(length=100, null=True)
    model = Varchar(length=200)
    config = JSON(default="{}")
    status = Varchar(length=32, default="created")
    created_by = Varchar(length=200)
    created_at = Timestamptz()
    updated_at = Timestamptz()


class Deployment(Table, tablename="deployments"):
    """One deployment of an agent (a row per deploy)."""

    id = Varchar(length=64, primary_key=True)
    tenant = Varchar(length=64, index=True)
    agent_id = Varchar(length=64, index=True)
    status = Varchar(length=32, default="active")
    decision_id = Varchar(length=64)
    created_at = Timestamptz()


class Task(Table, tablename="tasks"):
    """A unit of work submitted to an agent, and its scheduler state.

    Scheduler times (``submitted_at``, ``not_after``, ``due_at``,
    ``lease_expires_at``) are epoch seconds, the kernel's clock; ``status`` is
    a ``kernel.TaskState`` value.
    """

    id = Varchar(length=64, primary_key=True)
    tenant = Varchar(length=64, index=True)
    agent_id = Varchar(length=64, index=True)
    input = JSON(default="{}")
    intent = Varchar(length=64, null=True)
    priority = Varchar(length=16, default="standard")
    budget_usd = Float(default=0.02)
    status = Varchar(length=32, default="queued", index=True)
    created_at = Timestamptz()
    submitted_by = Varchar(length=200, default="")
    submitted_roles = JSON(default="[]")
    """The submitter's roles and kind at submit: the admission re-check decides as them."""
    submitted_kind = Varchar(length=16, default="user")
    decision_id = Varchar(length=64, default="")
    admitted_revision = Text(default="")
    timeout_s = Float(default=300.0)
    max_attempts = Integer(default=3)
    submitted_at = Float(default=0.0)
    not_after = Float(null=True, default=None)
    attempts = Integer(default=0)
    due_at = Float(null=True, default=None)
    lease_expires_at = Float(null=True, default=None)
    run_id = Varchar(length=64, null=True, default=None)
    cause = Text(default="")
    updated_at = Float(default=0.0)


class Run(Table, tablename="runs"):
    """One attempt at running a task (unique per task and attempt)."""

    id = Varchar(length=64, primary_key=True)
    tenant = Varchar(length=64, index=True)
    task_id = Varchar(length=64, index=True)
    status = Varchar(length=32, default="started")
    attempt = Integer(default=1)
    created_at = Timestamptz()
    agent_id = Varchar(length=64, default="")
    worker_id = Varchar(length=200, default="")
    started_at = Float(default=0.0)
    lease_expires_at = Float(default=0.0)
    finished_at = Float(null=True, default=None)
    outcome = Varchar(length=32, null=True, default=None)
    cause = Text(default="")
    exit_code = Integer(null=True, default=None)
    token_hash = Varchar(length=64, default="", index=True)
    """sha256 of the run-scoped token the runtime presents to the tool-call API."""
    spent_usd = Float(default=0.0)


class Artifact(Table, tablename="artifacts"):
    """An output or registered artifact, content-addressed (unique per run and name)."""

    id = Varchar(length=64, primary_key=True)
    tenant = Varchar(length=64, index=True)
    run_id = Varchar(length=64, null=True)
    sha256 = Varchar(length=64)
    uri = Text()
    created_at = Timestamptz()
    task_id = Varchar(length=64, null=True, default=None)
    name = Varchar(length=200, default="")
    size = Integer(default=0)
    content = Bytea(null=True, default=None)


class Outbox(Table, tablename="outbox"):
    """Tasks committed for dispatch: the relay moves each to the queue (one row per task)."""

    id = Varchar(length=64, primary_key=True)
    tenant = Varchar(length=64, index=True)
    task_id = Varchar(length=64)
    created_at = Timestamptz()
    sent_at = Timestamptz(null=True, default=None)
    attempts = Integer(default=0)


class ToolCall(Table, tablename="tool_calls"):
    """A running agent's request to invoke a tool, and the decision on it."""

    id = Varchar(length=64, primary_key=True)
    tenant = Varchar(length=64, index=True)
    run_id = Varchar(length=64, index=True)
    task_id = Varchar(length=64)
    agent_id = Varchar(length=64)
    tool_id = Varchar(length=200)
    decision_id = Varchar(length=64)
    allowed = Boolean()
    arguments = JSON(default="{}")
    created_at = Timestamptz()


class Model(Table, tablename="models"):
    """A registered model and what its attestations established."""

    id = Varchar(length=64, primary_key=True)
    tenant = Varchar(length=64, index=True)
    name = Varchar(length=200)
    privacy = Varchar(length=16, default="allow-api")
    registered = Boolean(default=True)
    verified = Boolean(default=False)
    admin_approval_required = Boolean(default=False)
    attributes = JSON(default="{}")
    created_at = Timestamptz()
    sha256 = Varchar(length=64, default="")
    """The registered artifact's digest (empty for the seeded, unverified models)."""
    decision_id = Varchar(length=64, default="")
    """The `model.register` decision that admitted it (empty for seeded models)."""


class Tool(Table, tablename="tools"):
    """A tool an agent may be bound to."""

    id = Varchar(length=64, primary_key=True)
    tenant = Varchar(length=64, index=True)
    name = Varchar(length=200)
    category = Varchar(length=64, default="")
    allowed = Boolean(default=True)
    attributes = JSON(default="{}")
    sha256 = Varchar(length=64, default="")
    """The registered tool artifact's digest (empty for seeded, unverified tools)."""
    verified = Boolean(default=False)
    decision_id = Varchar(length=64, default="")
    """The `artifact.register` decision that admitted it (empty for seeded tools)."""


class AgentTemplate(Table, tablename="agent_templates"):
    """An agent template registered on verified evidence (`artifact.register`)."""

    id = Varchar(length=64, primary_key=True)
    tenant = Varchar(length=64, index=True)
    name = Varchar(length=200)
    description = Text(default="")
    sha256 = Varchar(length=64)
    attributes = JSON(default="{}")
    """Size, stored flag, the verified facts (``attestations``)."""
    decision_id = Varchar(length=64, default="")
    created_by = Varchar(length=200, default="")
    created_at = Timestamptz()


class AgentToolBinding(Table, tablename="agent_tool_bindings"):
    """A tool bound to an agent."""

    id = Varchar(length=64, primary_key=True)
    tenant = Varchar(length=64, index=True)
    agent_id = Varchar(length=64, index=True)
    tool_id = Varchar(length=64)
    config = JSON(default="{}")
    created_at = Timestamptz()


class Bundle(Table, tablename="bundles"):
    """One stored revision of a signed bundle (global bundles use tenant ``*``)."""

    id = Varchar(length=64, primary_key=True)
    tenant = Varchar(length=64, index=True)
    name = Varchar(length=200)
    revision = Varchar(length=200)
    digest = Varchar(length=64)
    status = Varchar(length=16, default="stored")
    signed_by = Varchar(length=200)
    archive = Text()
    created_at = Timestamptz()


class TrustedKey(Table, tablename="trusted_keys"):
    """A public key a tenant trusts for bundle signatures."""

    id = Varchar(length=200, primary_key=True)
    tenant = Varchar(length=64, index=True)
    key_id = Varchar(length=200)
    algorithm = Varchar(length=16)
    public_key = Text()
    created_at = Timestamptz()


class RegistryTrustRoot(Table, tablename="trust_roots"):
    """A public key a tenant trusts for supply-chain evidence (``registry.TrustRoot``).

    ``id`` is ``<tenant>:<key_id>``: one row per key id and tenant. Revoked rows
    are kept (``revoked``) so a revoked key is refused by name, never forgotten.
    """

    id = Varchar(length=200, primary_key=True)
    tenant = Varchar(length=64, index=True)
    key_id = Varchar(length=128)
    purpose = Varchar(length=32)
    key = JSON(default="{}")
    """The securesystemslib key dict (``keytype``, ``scheme``, ``keyval``)."""
    expires_at = Timestamptz(null=True, default=None)
    revoked = Boolean(default=False)
    revoked_at = Timestamptz(null=True, default=None)
    revoked_by = Varchar(length=200, default="")
    created_by = Varchar(length=200, default="")
    created_at = Timestamptz()


class PolicyEnforcement(Table, tablename="policy_enforcements"):
    """A bundle attached to an agent, with its enforcement mode."""

    id = Varchar(length=64, primary_key=True)
    tenant = Varchar(length=64, index=True)
    agent_id = Varchar(length=64, index=True)
    bundle = Varchar(length=200)
    mode = Varchar(length=32, default="enforce")


class Event(Table, tablename="events"):
    """Something that happened to a tenant's objects.

    ``seq`` (1, 2, ... per tenant) is taken under the tenant's ``event_heads`` row lock in
    the inserting transaction, so seqs become visible in commit order: a reader that
    has seen ``seq`` n has seen every smaller one (the SSE stream's cursor relies on it).
    """

    id = Varchar(length=64, primary_key=True)
    tenant = Varchar(length=64, index=True)
    seq = Integer(default=0, index=True)
    kind = Varchar(length=64)
    subject = Varchar(length=64)
    payload = JSON(default="{}")
    created_at = Timestamptz()


class EventHead(Table, tablename="event_heads"):
    """Per tenant: the last event ``seq`` taken (its row lock orders event commits)."""

    tenant = Varchar(length=64, primary_key=True)
    seq = Integer(default=0)


class Decision(Table, tablename="decisions"):
    """The append-only decision log, hash-chained per tenant (``seq`` from 1)."""

    id = Varchar(length=64, primary_key=True)
    tenant = Varchar(length=64, index=True)
    seq = Integer(index=True)
    created_at = Timestamptz()
    action = Varchar(length=64, index=True)
    principal_id = Varchar(length=200, index=True)
    resource_type = Varchar(length=64)
    resource_id = Varchar(length=200, index=True)
    allowed = Boolean()
    outcome = Varchar(length=32, index=True)
    record = JSON()
    prev_hash = Varchar(length=64)
    hash = Varchar(length=64)


class ChainHead(Table, tablename="chain_heads"):
    """Per tenant: the last sequence number and hash, and a signed head for anchoring."""

    tenant = Varchar(length=64, primary_key=True)
    seq = Integer(default=0)
    hash = Varchar(length=64, default="")
    signed_seq = Integer(default=0)
    signed_hash = Varchar(length=64, default="")
    signature = Text(default="")


class Approval(Table, tablename="approvals"):
    """A request parked by a ``require_approval`` policy until an admin or security user decides."""

    id = Varchar(length=64, primary_key=True)
    tenant = Varchar(length=64, index=True)
    decision_id = Varchar(length=64)
    operation = Varchar(length=64)
    payload = JSON(default="{}")
    requested_by = JSON(default="{}")
    status = Varchar(length=16, default="pending", index=True)
    decided_by = Varchar(length=200, default="")
    created_at = Timestamptz()
    decided_at = Timestamptz(null=True, default=None)


class IdempotencyKey(Table, tablename="idempotency_keys"):
    """The first response to a POST with an Idempotency-Key."""

    id = Varchar(length=300, primary_key=True)
    tenant = Varchar(length=64, index=True)
    body_hash = Varchar(length=64)
    status = Integer()
    response = Text()
    created_at = Timestamptz()


class Sidecar(Table, tablename="sidecars"):
    """An OPA sidecar registration: its bearer token's sha256 and the bundles it may fetch."""

    id = Varchar(length=64, primary_key=True)
    tenant = Varchar(length=64, index=True)
    name = Varchar(length=200)
    bundles = JSON(default="[]")
    """Bundle names the sidecar may download; empty: every active bundle of its tenant."""
    token_hash = Varchar(length=64, unique=True)
    created_by = Varchar(length=200, default="")
    created_at = Timestamptz()
    revoked = Boolean(default=False)
    revoked_at = Timestamptz(null=True, default=None)


class SidecarInstance(Table, tablename="sidecar_instances"):
    """One OPA instance (its ``labels.id``) behind a sidecar registration, as its last status
    report left it: active bundle revisions, errors, plugin states."""

    id = Varchar(length=200, primary_key=True)
    tenant = Varchar(length=64, index=True)
    sidecar_id = Varchar(length=64, index=True)
    instance_id = Varchar(length=128)
    version = Varchar(length=64, default="")
    status = JSON(default="{}")
    reported_at = Timestamptz()


ALL_TABLES: tuple[type[Table], ...] = (
    Tenant,
    User,
    ApiKey,
    Agent,
    Deployment,
    Task,
    Run,
    Artifact,
    Outbox,
    ToolCall,
    Model,
    Tool,
    AgentTemplate,
    AgentToolBinding,
    Bundle,
    TrustedKey,
    RegistryTrustRoot,
    PolicyEnforcement,
    Event,
    EventHead,
    Decision,
    ChainHead,
    Approval,
    IdempotencyKey,
    Sidecar,
    SidecarInstance,
)
__all__ = [t.__name__ for t in ALL_TABLES] + ["ALL_TABLES"]
