"""Rate limits shared through a real Redis: two workers draw from one bucket per tenant."""

from __future__ import annotations

import asyncio
import os
import uuid

import pytest

from server.errors import RateLimitedError
from server.ratelimit import MemoryBucketStore, RateLimiter, RedisBucketStore


@pytest.fixture
def redis_url() -> str:
    url = os.environ.get("AION_TEST_REDIS_URL", "")
    if not url:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("Redis (AION_TEST_REDIS_URL) is required in CI", pytrace=False)
        pytest.skip("Redis not available (run `make test`, which starts it)")
    return url


async def _allowed(
    limiters: list[RateLimiter], tenant: str, attempts: int
) -> tuple[int, list[int]]:
    allowed, waits = 0, []
    for i in range(attempts):
        try:
            await limiters[i % len(limiters)].check(tenant)
            allowed += 1
        except RateLimitedError as exc:
            waits.append(exc.retry_after)
    return allowed, waits


def test_two_workers_share_one_bucket(redis_url: str) -> None:
    async def run() -> tuple[int, list[int]]:
        stores = [RedisBucketStore(redis_url), RedisBucketStore(redis_url)]
        limiters = [RateLimiter(store, per_minute=60, burst=3) for store in stores]
        try:
            return await _allowed(limiters, f"t-{uuid.uuid4().hex}", 8)
        finally:
            for store in stores:
                await store.close()

    allowed, waits = asyncio.run(run())
    assert allowed == 3, "the burst is shared, not per worker"
    assert len(waits) == 5
    assert all(w >= 1 for w in waits), "Retry-After is at least one second"


def test_tenants_have_their_own_buckets(redis_url: str) -> None:
    async def run() -> list[int]:
        store = RedisBucketStore(redis_url)
        limiter = RateLimiter(store, per_minute=60, burst=2)
        try:
            return [(await _allowed([limiter], f"t-{uuid.uuid4().hex}", 3))[0] for _ in range(2)]
        finally:
            await store.close()

    assert asyncio.run(run()) == [2, 2]


def test_memory_store_refills_with_time() -> None:
    clock = [1000.0]
    limiter = RateLimiter(MemoryBucketStore(clock=lambda: clock[0]), per_minute=60, burst=1)

    async def run() -> list[bool]:
        results = []
        for advance in (0.0, 0.0, 1.0):
            clock[0] += advance
            try:
                await limiter.check("t")
                results.append(True)
            except RateLimitedError:
                results.append(False)
        return results

    assert asyncio.run(run()) == [True, False, True]
