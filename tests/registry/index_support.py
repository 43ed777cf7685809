"""Writing REGISTRY.yaml index files from manifests (the FIXTURES shapes), for the registry
and CLI tests."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import yaml


def manifest(name: str, kind: str = "model", **extra: Any) -> dict[str, Any]:
    """A manifest of ``name`` with a sha256 of its name; ``extra`` fields added or replaced."""
    doc: dict[str, Any] = {
        "name": name,
        "version": "1.0.0",
        "kind": kind,
        "integrity": {"sha256": hashlib.sha256(name.encode()).hexdigest()},
    }
    doc.update(extra)
    return doc


def write_index(root: Path, sections: dict[str, list[dict[str, Any]]]) -> Path:
    """Write each manifest to ``<section>/<name>.yaml`` and an index listing them."""
    root.mkdir(parents=True, exist_ok=True)
    index: dict[str, list[str]] = {}
    for section, docs in sections.items():
        index[section] = []
        for doc in docs:
            rel = f"{section}/{str(doc['name']).replace('/', '_')}.yaml"
            (root / section).mkdir(parents=True, exist_ok=True)
            (root / rel).write_text(yaml.safe_dump(doc))
            index[section].append(rel)
    path = root / "REGISTRY.yaml"
    path.write_text(yaml.safe_dump(index))
    return path
