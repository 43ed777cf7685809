"""Lock files of a REGISTRY.yaml index: each manifest's canonical content digest and its
declared sha256, so `aion registry lock --check` reports what was added, removed or changed."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from registry.errors import Rejected
from registry.index import IndexInvalid, canonical_sha256, load_index, read_manifest

LOCK_VERSION = 1


def lock_document(path: Path) -> dict[str, Any]:
    """The lock of the index at ``path``: each manifest's canonical sha256 and declared sha256.

    Manifests that cannot be read or parsed are locked with ``content_sha256: null``
    and an ``error``; the lock records what is there, ``import`` judges it.
    """
    manifests: dict[str, Any] = {}
    for entry in load_index(path):
        item: dict[str, Any] = {"kind": entry.kind.value}
        try:
            document = read_manifest(path.parent, entry)
        except Rejected as exc:
            item.update(content_sha256=None, declared_sha256=None, error=exc.code)
        else:
            integrity = document.get("integrity")
            declared = integrity.get("sha256") if isinstance(integrity, Mapping) else None
            item.update(
                content_sha256=canonical_sha256(document),
                declared_sha256=declared if isinstance(declared, str) else None,
            )
        manifests[entry.path] = item
    return {"version": LOCK_VERSION, "manifests": dict(sorted(manifests.items()))}


def dump_lock(lock: Mapping[str, Any]) -> str:
    """Stable text of a lock: sorted keys, two-space indent, trailing newline."""
    return json.dumps(lock, indent=2, sort_keys=True) + "\n"


def parse_lock(text: str) -> dict[str, Any]:
    """A lock document read back (raises :class:`IndexInvalid` when it is not one)."""
    try:
        lock = json.loads(text)
    except ValueError as exc:
        raise IndexInvalid(f"not a JSON lock file ({exc})") from exc
    if (
        not isinstance(lock, dict)
        or lock.get("version") != LOCK_VERSION
        or not isinstance(lock.get("manifests"), dict)
        or not all(isinstance(v, dict) for v in lock["manifests"].values())
    ):
        raise IndexInvalid(f"not a version {LOCK_VERSION} registry lock")
    return lock


@dataclass(frozen=True, slots=True)
class Drift:
    """One difference between a lock and the index: ``added``, ``removed`` or ``changed``."""

    change: str
    path: str
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.change}: {self.path}" + (f" ({self.detail})" if self.detail else "")


def diff_locks(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[Drift]:
    """Every manifest added, removed or changed between two locks, sorted by path."""
    before: Mapping[str, Any] = old["manifests"]
    after: Mapping[str, Any] = new["manifests"]
    drift: list[Drift] = []
    for path in sorted(set(before) | set(after)):
        if path not in before:
            drift.append(Drift("added", path))
        elif path not in after:
            drift.append(Drift("removed", path))
        elif before[path] != after[path]:
            fields = sorted(
                k
                for k in set(before[path]) | set(after[path])
                if before[path].get(k) != after[path].get(k)
            )
            drift.append(Drift("changed", path, ", ".join(fields)))
    return drift
