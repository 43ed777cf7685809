"""Values: priorities, state transitions, backoff."""

from __future__ import annotations

import random

import pytest

from kernel.model import (
    TRANSITIONS,
    Artifact,
    Priority,
    RetryPolicy,
    TaskState,
    TenantQuota,
    can_transition,
)


def test_priorities_are_ordered_critical_first() -> None:
    assert sorted([Priority.BULK, Priority.CRITICAL, Priority.STANDARD, Priority.HIGH]) == [
        Priority.CRITICAL,
        Priority.HIGH,
        Priority.STANDARD,
        Priority.BULK,
    ]
    assert Priority.parse("Critical") is Priority.CRITICAL
    assert Priority.BULK.label == "bulk"
    with pytest.raises(ValueError, match="unknown priority `urgent`"):
        Priority.parse("urgent")


def test_terminal_states_have_no_way_out() -> None:
    terminal = {s for s in TaskState if s.terminal}
    assert terminal == {
        TaskState.SUCCEEDED,
        TaskState.FAILED,
        TaskState.CANCELLED,
        TaskState.DEAD_LETTERED,
    }
    assert set(TRANSITIONS) == set(TaskState)
    assert can_transition(TaskState.QUEUED, TaskState.RUNNING)
    assert can_transition(TaskState.RUNNING, TaskState.RETRY_WAIT)
    assert not can_transition(TaskState.QUEUED, TaskState.SUCCEEDED)
    assert not can_transition(TaskState.SUCCEEDED, TaskState.QUEUED)


def test_backoff_grows_exponentially_up_to_the_cap() -> None:
    policy = RetryPolicy(base_s=1.0, factor=2.0, cap_s=30.0, jitter=0.0)
    delays = [policy.delay(n, random.Random(1).random) for n in range(1, 8)]
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert policy.delay(10_000, random.Random(1).random) == 30.0


def test_jitter_is_bounded_and_deterministic_for_a_seed() -> None:
    policy = RetryPolicy(base_s=10.0, factor=2.0, cap_s=1000.0, jitter=0.5)
    first = [policy.delay(3, random.Random(42).random) for _ in range(3)]
    assert len(set(first)) == 1
    rng = random.Random(3)
    for _ in range(200):
        assert 20.0 <= policy.delay(3, rng.random) <= 40.0


def test_artifact_carries_its_sha256() -> None:
    art = Artifact.of("out.txt", b"hello")
    assert art.sha256 == "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"


def test_tenant_weight_must_be_positive() -> None:
    with pytest.raises(ValueError, match="weight"):
        TenantQuota(weight=0)
