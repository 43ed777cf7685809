"""Appending many records at once, and group commit of concurrent requests' records."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from server.decisionlog import GENESIS, DecisionLogError
from server.gate import Gate
from server.groupcommit import GroupCommitter
from server.policies import PolicyService
from tests.server.conftest_decisionlog import OTHER, TENANT, Backend, fill, make_record

pytestmark = pytest.mark.anyio


async def test_append_many_chains_contiguous_rows(backend: Backend, key: Ed25519PrivateKey) -> None:
    await fill(backend, 2)
    async with backend.transaction():
        rows = await backend.log.append_many(TENANT, [make_record(n) for n in range(3, 8)])
    assert [r.seq for r in rows] == [3, 4, 5, 6, 7]
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(rows))
    assert (await backend.log.get(TENANT, rows[-1].id)) == rows[-1]
    await backend.log.sign_head(TENANT, key)
    result = await backend.log.verify(TENANT, key.public_key(), require_signed_head=True)
    assert (result.ok, result.checked, result.last_seq) == (True, 7, 7)


async def test_append_many_of_nothing_writes_nothing(backend: Backend) -> None:
    async with backend.transaction():
        assert await backend.log.append_many(TENANT, []) == []
    assert (await backend.log.export_head(TENANT)).get("seq") == 0
    assert (await backend.log.list(TENANT)).items == ()


async def test_one_bad_record_refuses_the_whole_batch(backend: Backend) -> None:
    good, broken = make_record(1), make_record(2)
    del broken["result"]
    with pytest.raises(DecisionLogError):
        async with backend.transaction():
            await backend.log.append_many(TENANT, [good, broken])
    assert (await backend.log.list(TENANT)).items == ()
    (row,) = await fill(backend, 1)  # nothing consumed: the next row is still seq 1
    assert (row.seq, row.prev_hash) == (1, GENESIS)


class _Failing:
    """A recorder that refuses every record whose id is in ``refuse``, after the real one."""

    def __init__(self, gate: Gate, refuse: set[str]) -> None:
        self.gate, self.refuse, self.calls = gate, refuse, 0

    async def record(self, tenant: str, *records: dict[str, Any]) -> None:
        self.calls += 1
        await self.gate.record(tenant, *records)
        if any(r["id"] in self.refuse for r in records):
            raise OSError("refused")


def _gate(backend: Backend, key: Ed25519PrivateKey) -> Gate:
    return Gate(None, PolicyService(), backend.log, 50.0, key)  # type: ignore[arg-type]


async def test_concurrent_requests_share_commits_and_keep_their_records_together(
    backend: Backend, key: Ed25519PrivateKey
) -> None:
    gate = _gate(backend, key)
    recorder = _Failing(gate, set())
    committer = GroupCommitter(backend.log, recorder)
    requests = [
        [make_record(100 * i + j, tenant=tenant) for j in range(1, 4)]
        for i, tenant in enumerate([TENANT, OTHER] * 10, start=1)
    ]
    await asyncio.gather(*(committer.append(r[0]["principal"]["tenant"], r) for r in requests))
    assert recorder.calls < len(requests)  # some transactions held several requests
    for tenant in (TENANT, OTHER):
        rows = (await backend.log.list(tenant, limit=1000, newest_first=False)).items
        assert len(rows) == 30
        assert (await backend.log.verify(tenant, key.public_key())).ok
        by_request: dict[int, list[int]] = {}
        for row in rows:
            by_request.setdefault(int(row.id.rsplit("_", 1)[1]) // 100, []).append(row.seq)
        for seqs in by_request.values():  # one request's records are contiguous, in order
            assert seqs == list(range(seqs[0], seqs[0] + 3))


async def test_a_failing_request_does_not_fail_the_others_in_its_commit(
    backend: Backend, key: Ed25519PrivateKey
) -> None:
    gate = _gate(backend, key)
    poison = make_record(7)
    committer = GroupCommitter(backend.log, _Failing(gate, {poison["id"]}))
    fine = [[make_record(n)] for n in (1, 2, 3, 4)]
    outcomes = await asyncio.gather(
        *(committer.append(TENANT, r) for r in [*fine[:2], [poison], *fine[2:]]),
        return_exceptions=True,
    )
    assert [type(o).__name__ for o in outcomes] == ["NoneType"] * 2 + ["OSError"] + ["NoneType"] * 2
    ids = {r.id for r in (await backend.log.list(TENANT)).items}
    assert ids == {r[0]["id"] for r in fine}
    assert (await backend.log.verify(TENANT, key.public_key())).ok
