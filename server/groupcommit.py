"""Group commit of ad-hoc decision records: one transaction for many concurrent requests.

A decision answered by ``POST /decide`` changes nothing but the log, so it
need not own a transaction: requests that arrive while a commit is in flight
wait for the next one, and a single transaction appends all of them (three
statements per tenant however many records; see
:meth:`server.decisionlog.PiccoloDecisionLog.append_many`). Each request is
answered only after the transaction holding its records committed, so "no
decision without a record" still holds. A request's records stay together:
they commit or fail as one. When a shared commit fails, each request in it is
retried alone, so one request's fault never fails another.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

#: Most records one shared transaction takes (a request's batch is never split).
MAX_RECORDS = 500


class Recorder(Protocol):
    """Where records go: the gate (append in the caller's transaction, sign the head now and then)."""

    async def record(self, tenant: str, *records: dict[str, Any]) -> None: ...


class Transactions(Protocol):
    """Opens the write transaction the records commit in."""

    def transaction(self) -> Any: ...


@dataclass
class _Entry:
    tenant: str
    records: Sequence[dict[str, Any]]
    done: asyncio.Future[None]


@dataclass
class _LoopState:
    pending: list[_Entry] = field(default_factory=list)
    writer: asyncio.Task[None] | None = None


class GroupCommitter:
    """Appends the records of concurrent requests in shared transactions."""

    def __init__(self, log: Transactions, recorder: Recorder, max_records: int = MAX_RECORDS):
        self._log = log
        self._recorder = recorder
        self._max = max_records
        self._loops: dict[int, _LoopState] = {}  # one writer per event loop (worker)

    async def append(self, tenant: str, records: Sequence[dict[str, Any]]) -> None:
        """Return once ``records`` are committed; raise what the commit raised otherwise."""
        loop = asyncio.get_running_loop()
        state = self._loops.setdefault(id(loop), _LoopState())
        entry = _Entry(tenant, records, loop.create_future())
        state.pending.append(entry)
        if state.writer is None or state.writer.done():
            state.writer = loop.create_task(self._drain(state))
        await asyncio.shield(entry.done)  # a client gone away does not withdraw its records

    def _take(self, state: _LoopState) -> list[_Entry]:
        taken: list[_Entry] = []
        size = 0
        while state.pending and (not taken or size + len(state.pending[0].records) <= self._max):
            entry = state.pending.pop(0)
            taken.append(entry)
            size += len(entry.records)
        return taken

    async def _drain(self, state: _LoopState) -> None:
        while state.pending:
            batch = self._take(state)
            try:
                await self._commit(batch)
            except Exception as exc:
                if len(batch) == 1:
                    _settle(batch[0], exc)
                    continue
                for entry in batch:  # find the request at fault; the others commit
                    try:
                        await self._commit([entry])
                    except Exception as alone:
                        _settle(entry, alone)
                    else:
                        _settle(entry, None)
            else:
                for entry in batch:
                    _settle(entry, None)

    async def _commit(self, batch: Sequence[_Entry]) -> None:
        by_tenant: dict[str, list[dict[str, Any]]] = {}
        for entry in batch:
            by_tenant.setdefault(entry.tenant, []).extend(entry.records)
        async with self._log.transaction():
            for tenant in sorted(by_tenant):  # one order for every writer: no lock cycles
                await self._recorder.record(tenant, *by_tenant[tenant])


def _settle(entry: _Entry, error: Exception | None) -> None:
    if entry.done.done():
        return
    if error is None:
        entry.done.set_result(None)
    else:
        entry.done.set_exception(error)
