"""The admission re-check (re-decision when the bundle revisions changed), the runtime
registry and router, and the event sink, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from kernel import Event, EventKind, RunContext, RunOutcome
from server.auth import utcnow
from server.db.tables import Agent, Decision
from server.db.tables import Event as EventRow
from server.dispatch.admission import ServerAdmission
from server.dispatch.events import DbEventSink
from server.dispatch.runtimes import RuntimeConfigError, RuntimeRegistry, RuntimeRouter
from server.dispatch.store import PiccoloRunStore
from server.dispatch.worker import worker_gate
from server.settings import Settings
from tests.dispatch.support import current_revision, deployed_agent, insert_task

pytestmark = pytest.mark.anyio


async def _spec(task_id: str) -> object:
    rec = await PiccoloRunStore().get_task(task_id)
    assert rec is not None
    return rec.spec


async def test_same_revision_admits_without_a_new_decision(bound: Settings) -> None:
    agent = await deployed_agent()
    task_id = await insert_task(agent_id=agent, admitted_revision=await current_revision())
    before = await Decision.count()
    admitted = await ServerAdmission(worker_gate(bound)).still_admitted(await _spec(task_id))  # type: ignore[arg-type]
    assert admitted.allowed and await Decision.count() == before


async def test_changed_revision_re_decides_and_refuses_with_the_reasons(bound: Settings) -> None:
    agent = await deployed_agent()
    # invoice_ocr must run on a local model; the agent's model (gpt-4o) is an API model.
    task_id = await insert_task(
        agent_id=agent, intent="invoice_ocr", admitted_revision='{"old":"1"}'
    )
    before = await Decision.count()
    admitted = await ServerAdmission(worker_gate(bound)).still_admitted(await _spec(task_id))  # type: ignore[arg-type]
    assert not admitted.allowed
    assert admitted.reason.startswith("`task.submit` re-decided under new policies and denied")
    assert "invoice_ocr" in admitted.reason
    assert await Decision.count() == before + 1
    newest = Decision.select().order_by(Decision.seq, ascending=False)
    row = await newest.output(load_json=True).first()
    assert row is not None and row["principal_id"] == "usr_test"  # as the submitter
    assert row["record"]["principal"]["roles"] == ["operator"]
    assert row["record"]["trace_id"] == f"scheduler:{task_id}"  # the scheduler asked
    assert row["action"] == "task.submit" and not row["allowed"]


async def test_the_re_decision_is_the_submitters_never_more(bound: Settings) -> None:
    # A submitter whose role may not submit under the new policies is refused at start; the
    # scheduler does not lend its own authority (it used to re-decide as an operator).
    agent = await deployed_agent()
    task_id = await insert_task(agent_id=agent, admitted_revision='{"old":"1"}', roles=("viewer",))
    admitted = await ServerAdmission(worker_gate(bound)).still_admitted(await _spec(task_id))  # type: ignore[arg-type]
    assert not admitted.allowed
    assert "only services and the operator, developer or admin roles" in admitted.reason


async def test_changed_revision_still_allowed_is_admitted(bound: Settings) -> None:
    agent = await deployed_agent()
    task_id = await insert_task(agent_id=agent, admitted_revision='{"old":"1"}')
    admitted = await ServerAdmission(worker_gate(bound)).still_admitted(await _spec(task_id))  # type: ignore[arg-type]
    assert admitted.allowed, admitted.reason


async def test_an_agent_changed_after_submit_is_decided_anew(bound: Settings) -> None:
    # Same bundle revisions, but the agent moved to an API model after an invoice_ocr
    # task (local models only) was admitted: the start re-decides and refuses.
    agent = await deployed_agent()
    local = {Agent.model: "model://llama3.2:3b", Agent.updated_at: utcnow()}
    await Agent.update(local).where(Agent.id == agent)  # before the submit
    revision = await current_revision()
    task_id = await insert_task(agent_id=agent, intent="invoice_ocr", admitted_revision=revision)
    gate = worker_gate(bound)
    assert (await ServerAdmission(gate).still_admitted(await _spec(task_id))).allowed  # type: ignore[arg-type]
    await Agent.update({Agent.model: "model://gpt-4o", Agent.updated_at: utcnow()}).where(
        Agent.id == agent
    )
    refused = await ServerAdmission(gate).still_admitted(await _spec(task_id))  # type: ignore[arg-type]
    assert not refused.allowed
    assert "invoice_ocr" in refused.reason


def test_registry_refuses_bad_files_and_reads_keys_from_the_environment() -> None:
    with pytest.raises(RuntimeConfigError, match="kind must be one of"):
        RuntimeRegistry.parse("runtimes: {x: {kind: shell}}")
    with pytest.raises(RuntimeConfigError, match="argv"):
        RuntimeRegistry.parse("runtimes: {x: {kind: subprocess, argv: []}}")
    text = "runtimes: {m: {kind: http, base_url: 'http://h/v1', model: m1, api_key_env: K}}"
    spec = RuntimeRegistry.parse(text, {"K": "secret"}).runtimes["m"]
    assert (spec.kind, spec.model, spec.api_key) == ("http", "m1", "secret")
    shipped = RuntimeRegistry.load(Settings()).runtimes
    assert {"echo", "noop"} <= set(shipped)


async def test_router_runs_the_agents_runtime_and_refuses_unknown_names(
    bound: Settings, run_dir: Path
) -> None:
    router = RuntimeRouter(RuntimeRegistry.load(bound), run_dir)
    echo = await deployed_agent(runtime="echo")
    task_id = await insert_task(agent_id=echo, input={"hello": "world"})
    ctx = RunContext(
        run_id=f"run_{uuid.uuid4().hex}", task_id=task_id, attempt=1, worker_id="w", run_token="t"
    )
    result = await router.run(await _spec(task_id), ctx)  # type: ignore[arg-type]
    assert result.outcome is RunOutcome.SUCCEEDED, result.stderr
    assert [(a.name, json.loads(a.data)) for a in result.outputs] == [
        ("output.json", {"hello": "world"})
    ]
    rogue = await deployed_agent(runtime="bash-as-root")
    task_id = await insert_task(agent_id=rogue)
    result = await router.run(await _spec(task_id), ctx)  # type: ignore[arg-type]
    assert result.outcome is RunOutcome.FAILED_PERMANENT
    assert "runtime `bash-as-root` is not configured" in result.cause


async def test_event_ids_sort_in_time_order_and_carry_the_run(bound: Settings) -> None:
    sink = DbEventSink()
    subject = f"tsk_{uuid.uuid4().hex}"
    for kind in (EventKind.STARTED, EventKind.RETRY, EventKind.STARTED, EventKind.SUCCEEDED):
        await sink.emit(
            Event(
                kind=kind,
                task_id=subject,
                tenant="default",
                agent_id="a",
                at=1.0,
                run_id="r",
                attempt=1,
            )
        )
    rows = await EventRow.select().where(EventRow.subject == subject).order_by(EventRow.id)
    assert [r["kind"] for r in rows] == ["started", "retry", "started", "succeeded"]
    payload = rows[0]["payload"]
    payload = json.loads(payload) if isinstance(payload, str) else payload
    assert payload["run_id"] == "r" and payload["attempt"] == 1 and rows[0]["tenant"] == "default"
