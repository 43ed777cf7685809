"""Per-tenant token buckets: ``per_minute`` refill, ``burst`` capacity; 429 with Retry-After.

The in-process store serves the embedded default; a Redis store shares the
buckets between workers (``AION_REDIS_URL``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import redis.asyncio as redis

from server.errors import RateLimitedError


class BucketStore(Protocol):
    """Takes one token from a tenant's bucket; returns seconds to wait (0 when taken)."""

    async def take(self, key: str, per_minute: int, burst: int) -> float:
        """0.0 when a token was taken, else the seconds until one is available."""
        ...


@dataclass
class _Bucket:
    tokens: float
    stamp: float


class MemoryBucketStore:
    """Buckets in this process (one worker)."""

    def __init__(self, clock: Callable[[], float] | None = None) -> None:
        self._buckets: dict[str, _Bucket] = {}
        self._clock = clock or time.monotonic

    async def take(self, key: str, per_minute: int, burst: int) -> float:
        now = self._clock()
        rate = per_minute / 60.0
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(float(burst), now)
        bucket.tokens = min(float(burst), bucket.tokens + (now - bucket.stamp) * rate)
        bucket.stamp = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / rate if rate > 0 else 60.0


class RateLimiter:
    """Applies a tenant's limit (its own settings, else the defaults)."""

    def __init__(self, store: BucketStore, per_minute: int, burst: int) -> None:
        self._store = store
        self.per_minute = per_minute
        self.burst = burst

    async def check(
        self, tenant: str, per_minute: int | None = None, burst: int | None = None
    ) -> None:
        """Raise 429 when the tenant's bucket is empty."""
        wait = await self._store.take(
            f"rl:{tenant}", per_minute or self.per_minute, burst or self.burst
        )
        if wait > 0:
            raise RateLimitedError(
                f"tenant `{tenant}` is over its rate limit", retry_after=max(1, math.ceil(wait))
            )


# Token bucket in one atomic step: refill by elapsed time, take one token if there is one.
_TAKE = """
local now = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local burst = tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'stamp')
local tokens = tonumber(state[1]) or burst
local stamp = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - stamp) * rate)
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
else
  wait = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tokens, 'stamp', now)
redis.call('EXPIRE', KEYS[1], math.ceil(burst / rate) + 60)
return tostring(wait)
"""


class RedisBucketStore:
    """Buckets in Redis, shared by every worker (``AION_REDIS_URL``).

    The refill time comes from Redis' own clock (``TIME``), so workers with
    drifting clocks still agree.
    """

    def __init__(self, url: str) -> None:
        self._redis = redis.from_url(url)  # type: ignore[no-untyped-call]  # untyped in redis-py 5
        self._take = self._redis.register_script(_TAKE)

    async def take(self, key: str, per_minute: int, burst: int) -> float:
        seconds, micros = await self._redis.time()
        now = float(seconds) + float(micros) / 1e6
        wait = await self._take(keys=[key], args=[now, per_minute / 60.0, burst])
        return float(wait)

    async def close(self) -> None:
        """Close the connection pool."""
        await self._redis.aclose()
