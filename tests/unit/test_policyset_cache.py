"""Compile once per revision set: the cache hands back the same compiled value."""

from __future__ import annotations

from engine import PolicySetCache
from engine.bundle import Bundle, bundle_from_files

REGO = b'package aion.agent.deploy\nimport rego.v1\ndeny contains "x" if input.x\n'


def _bundle(revision: str, name: str = "b") -> Bundle:
    manifest = f'{{"revision": "{revision}", "roots": ["aion/agent/deploy"]}}'.encode()
    return bundle_from_files({".manifest": manifest, "deploy.rego": REGO}, name)


def test_same_bundles_compile_once() -> None:
    cache = PolicySetCache()
    first = cache.get([_bundle("1")])
    again = cache.get([_bundle("1")])  # a new Bundle object with the same content
    assert again is first
    assert len(cache) == 1


def test_new_revision_compiles_anew() -> None:
    cache = PolicySetCache()
    first = cache.get([_bundle("1")])
    second = cache.get([_bundle("2")])
    assert second is not first
    assert second.revisions == {"b": "2"}


def test_least_recently_used_is_evicted() -> None:
    cache = PolicySetCache(max_entries=2)
    one = cache.get([_bundle("1")])
    cache.get([_bundle("2")])
    assert cache.get([_bundle("1")]) is one  # refreshes "1"
    cache.get([_bundle("3")])  # evicts "2"
    assert len(cache) == 2
    assert cache.get([_bundle("1")]) is one
