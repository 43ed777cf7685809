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
