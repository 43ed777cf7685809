"""REGISTRY.yaml parsing and validation: every manifest refused with its own reason code.

Index files are written here from the FIXTURES shapes (the old platform's
``ai_registry/REGISTRY.yaml``: models, algorithms and services with
``integrity {sha256, signature}`` and ``model://``, ``service://``, ``tool://``
references, and its placeholder values).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from registry.errors import Reason
from registry.index import (
    Entry,
    IndexInvalid,
    Kind,
    Known,
    canonical_sha256,
    check_index,
    find_references,
    parse_index,
)
from registry.lock import diff_locks, dump_lock, lock_document, parse_lock
from tests.registry.index_support import manifest, write_index

SHA = hashlib.sha256(b"model weights v1\n").hexdigest()


def realistic(root: Path) -> Path:
    return write_index(
        root,
        {
            "models": [
                manifest("gpt-4o", privacy="allow-api", references=["service://vector/qdrant"]),
                manifest("llama3.2-3b", privacy="local-only"),
                manifest("gpt-4.5", admin_approval_required=True),
            ],
            "algorithms": [
                manifest(
                    "rerank",
                    "algorithm",
                    references=["model://ollama/llama3.2-3b"],
                    spec={"uses": "tool://web-search"},
                )
            ],
            "services": [manifest("qdrant", "service")],
            "tools": [manifest("web-search", "tool")],
        },
    )


def reasons(path: Path, known: Known | None = None) -> dict[str, str | None]:
    return {
        r.entry.path: (r.refusal.code if r.refusal else None)
        for r in check_index(path, known).results
    }


def single(tmp_path: Path, doc: dict[str, Any], section: str = "models") -> str | None:
    path = write_index(tmp_path, {section: [doc]})
    [code] = reasons(path).values()
    return code


def test_realistic_index_is_accepted_with_resolved_references(tmp_path: Path) -> None:
    report = check_index(realistic(tmp_path))
    assert report.ok
    by_name = {m.name: m for m in report.accepted}
    assert set(by_name) == {"gpt-4o", "llama3.2-3b", "gpt-4.5", "rerank", "qdrant", "web-search"}
    assert by_name["gpt-4.5"].admin_approval_required
    assert by_name["llama3.2-3b"].privacy == "local-only"
    assert [str(r) for r in by_name["rerank"].references] == [
        "model://ollama/llama3.2-3b",
        "tool://web-search",
    ]
    assert by_name["qdrant"].kind is Kind.SERVICE


def test_index_entries_accept_paths_and_path_mappings() -> None:
    entries = parse_index({"models": ["a.yaml", {"path": "b/c.yaml"}], "tools": ["t.yaml"]})
    assert entries == [
        Entry("a.yaml", Kind.MODEL),
        Entry("b/c.yaml", Kind.MODEL),
        Entry("t.yaml", Kind.TOOL),
    ]


@pytest.mark.parametrize(
    "document",
    [
        ["models/a.yaml"],
        {"models": "models/a.yaml"},
        {"modles": ["a.yaml"]},
        {"models": []},
        {"models": ["../outside.yaml"]},
        {"models": ["/etc/passwd"]},
        {"models": [{"path": "a.yaml", "sha256": "x"}]},
        {"models": [42]},
    ],
)
def test_a_malformed_index_is_invalid(document: object) -> None:
    with pytest.raises(IndexInvalid):
        parse_index(document)


def test_an_unreadable_index_is_invalid(tmp_path: Path) -> None:
    with pytest.raises(IndexInvalid):
        check_index(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("models: [unclosed\n")
    with pytest.raises(IndexInvalid):
        check_index(tmp_path / "bad.yaml")


def test_a_32_hex_digit_sha256_is_digest_malformed(tmp_path: Path) -> None:
    doc = manifest("gpt-4o", integrity={"sha256": "d41d8cd98f00b204e9800998ecf8427e"})
    assert single(tmp_path, doc) == Reason.DIGEST_MALFORMED


def test_an_all_zero_sha256_is_digest_all_zero(tmp_path: Path) -> None:
    assert single(tmp_path, manifest("gpt-4o", integrity={"sha256": "0" * 64})) == "digest_all_zero"


@pytest.mark.parametrize("signature", ["minisign:ABC123", "", "TODO", "unsigned", 0, None])
def test_a_placeholder_signature_is_refused(tmp_path: Path, signature: object) -> None:
    doc = manifest("gpt-4o", integrity={"sha256": SHA, "signature": signature})
    assert single(tmp_path, doc) == Reason.PLACEHOLDER_SIGNATURE


def test_a_real_looking_signature_is_no_evidence_but_not_refused(tmp_path: Path) -> None:
    doc = manifest("gpt-4o", integrity={"sha256": SHA, "signature": "RWQf6LRCGA9i53mlYecO4IzT51T"})
    path = write_index(tmp_path, {"models": [doc]})
    [model] = check_index(path).accepted
    assert model.signature is not None  # kept as a claim; registration still needs evidence


@pytest.mark.parametrize(
    "doc",
    [
        {"name": "gpt-4o", "kind": "model", "integrity": {"sha256": SHA}},  # no version
        {"name": "gpt-4o", "version": 1.0, "kind": "model", "integrity": {"sha256": SHA}},
        {"name": "", "version": "1", "kind": "model", "integrity": {"sha256": SHA}},
        {"name": "a b", "version": "1", "kind": "model", "integrity": {"sha256": SHA}},
        {"name": "gpt-4o", "version": "1", "kind": "service", "integrity": {"sha256": SHA}},
        {"name": "gpt-4o", "version": "1", "kind": "model"},  # no integrity
        {"name": "gpt-4o", "version": "1", "kind": "model", "integrity": SHA},
        {"name": "m", "version": "1", "kind": "model", "integrity": {"sha256": SHA, "md5": "x"}},
        {"name": "m", "version": "1", "kind": "model", "integrity": {"sha256": SHA}, "x": 1},
        manifest("m", privacy="public"),
        manifest("m", admin_approval_required="yes"),
        manifest("m", references="service://vector/qdrant"),
        manifest("m", references=["http://example.com"]),
        manifest("m", references=["model://"]),
        manifest("m", references=["tool://web search"]),
    ],
)
def test_malformed_manifests_are_malformed_evidence(tmp_path: Path, doc: dict[str, Any]) -> None:
    assert single(tmp_path, doc) == Reason.MALFORMED_EVIDENCE


def test_privacy_on_a_service_is_malformed(tmp_path: Path) -> None:
    doc = manifest("qdrant", "service", privacy="local-only")
    assert single(tmp_path, doc, "services") == Reason.MALFORMED_EVIDENCE


def test_unreadable_or_non_mapping_manifests_are_malformed(tmp_path: Path) -> None:
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    (tmp_path / "broken.yaml").write_text("name: [\n")
    (tmp_path / "dated.yaml").write_text(yaml.safe_dump(manifest("d")) + "released: 2024-01-01\n")
    (tmp_path / "REGISTRY.yaml").write_text(
        yaml.safe_dump({"models": ["list.yaml", "broken.yaml", "missing.yaml", "dated.yaml"]})
    )
    assert set(reasons(tmp_path / "REGISTRY.yaml").values()) == {"malformed_evidence"}


def test_unresolved_references_are_refused(tmp_path: Path) -> None:
    path = write_index(
        tmp_path,
        {
            "models": [manifest("gpt-4o", references=["service://vector/milvus"])],
            "algorithms": [manifest("rerank", "algorithm", spec={"m": "model://claude-9"})],
            "services": [manifest("qdrant", "service", references=["tool://web-search"])],
        },
    )
    assert set(reasons(path).values()) == {Reason.UNRESOLVED_REFERENCE}


def test_references_resolve_against_the_known_set(tmp_path: Path) -> None:
    path = write_index(
        tmp_path,
        {"algorithms": [manifest("rerank", "algorithm", references=["model://gpt-4o"])]},
    )
    assert set(reasons(path).values()) == {"unresolved_reference"}
    assert set(reasons(path, Known(models=frozenset({"gpt-4o"}))).values()) == {None}
    # a known tool does not satisfy a model reference
    assert set(reasons(path, Known(tools=frozenset({"gpt-4o"}))).values()) == {
        "unresolved_reference"
    }


def test_duplicate_names_and_paths_are_refused_after_the_first(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(yaml.safe_dump(manifest("gpt-4o")))
    (tmp_path / "b.yaml").write_text(yaml.safe_dump(manifest("gpt-4o", version="2.0.0")))
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(manifest("qdrant", "service")))
    (tmp_path / "REGISTRY.yaml").write_text(
        yaml.safe_dump({"models": ["a.yaml", "b.yaml"], "services": ["c.yaml", "c.yaml"]})
    )
    results = check_index(tmp_path / "REGISTRY.yaml").results
    assert [r.refusal.code if r.refusal else None for r in results] == [
        None,
        "duplicate_manifest",
        None,
        "duplicate_manifest",
    ]


def test_the_same_name_of_different_kinds_is_no_duplicate(tmp_path: Path) -> None:
    path = write_index(
        tmp_path,
        {"services": [manifest("search", "service")], "tools": [manifest("search", "tool")]},
    )
    assert check_index(path).ok


def test_find_references_walks_the_whole_document() -> None:
    refs = find_references({"a": ["model://gpt-4o", {"b": "service://vector/qdrant"}], "c": "x"})
    assert [str(r) for r in refs] == ["model://gpt-4o", "service://vector/qdrant"]


def test_canonical_sha256_ignores_key_order_and_formatting() -> None:
    assert canonical_sha256({"a": 1, "b": [1, 2]}) == canonical_sha256({"b": [1, 2], "a": 1})
    assert canonical_sha256({"a": 1}) != canonical_sha256({"a": 2})


def test_lock_is_stable_and_detects_drift(tmp_path: Path) -> None:
    path = realistic(tmp_path)
    lock = lock_document(path)
    assert dump_lock(lock) == dump_lock(lock_document(path))
    assert parse_lock(dump_lock(lock)) == lock
    item = lock["manifests"]["models/gpt-4o.yaml"]
    assert item["declared_sha256"] == hashlib.sha256(b"gpt-4o").hexdigest()
    assert item["content_sha256"] == canonical_sha256(
        yaml.safe_load((tmp_path / "models/gpt-4o.yaml").read_text())
    )
    # reformatting a manifest is no drift; changing it is
    gpt = tmp_path / "models/gpt-4o.yaml"
    gpt.write_text(json.dumps(yaml.safe_load(gpt.read_text()), indent=4))
    assert diff_locks(lock, lock_document(path)) == []
    gpt.write_text(yaml.safe_dump(manifest("gpt-4o", privacy="local-only")))
    (tmp_path / "services/qdrant.yaml").write_text(
        yaml.safe_dump(manifest("qdrant", "service", integrity={"sha256": SHA}))
    )
    index = yaml.safe_load(path.read_text())
    index["tools"] = []
    index["models"].append("models/new.yaml")
    (tmp_path / "models/new.yaml").write_text(yaml.safe_dump(manifest("new")))
    path.write_text(yaml.safe_dump(index))
    drift = [str(d) for d in diff_locks(lock, lock_document(path))]
    assert drift == [
        "changed: models/gpt-4o.yaml (content_sha256)",
        "added: models/new.yaml",
        "changed: services/qdrant.yaml (content_sha256, declared_sha256)",
        "removed: tools/web-search.yaml",
    ]


def test_an_unreadable_manifest_is_locked_with_its_error(tmp_path: Path) -> None:
    (tmp_path / "REGISTRY.yaml").write_text(yaml.safe_dump({"models": ["gone.yaml"]}))
    lock = lock_document(tmp_path / "REGISTRY.yaml")
    assert lock["manifests"]["gone.yaml"]["error"] == "malformed_evidence"


@pytest.mark.parametrize("text", ["not json", "[]", '{"version": 2, "manifests": {}}'])
def test_a_bad_lock_file_is_invalid(text: str) -> None:
    with pytest.raises(IndexInvalid):
        parse_lock(text)
