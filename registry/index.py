"""A registry index (``REGISTRY.yaml``) of model, algorithm, service and tool manifests.

The old platform's ``ai_registry/REGISTRY.yaml`` listed manifests carrying
``integrity {sha256, signature}`` and references such as ``model://gpt-4o``,
``service://vector/qdrant`` and ``tool://web-search``. Nothing checked them.
Here every manifest is checked strictly and refused with one stable
:class:`~registry.errors.Reason`; nothing a manifest says is *evidence*: an
imported manifest is at best *registered, unverified*.

Index format (paths are relative to the index file and stay inside its
directory)::

    models:     [models/gpt-4o.yaml, {path: models/llama.yaml}]
    algorithms: [algorithms/rerank.yaml]
    services:   [services/qdrant.yaml]
    tools:      [tools/web-search.yaml]

Manifest format::

    name: gpt-4o                 # [A-Za-z0-9][A-Za-z0-9._:/-]*, at most 200 characters
    version: "2024-08-06"        # a string
    kind: model                  # model | algorithm | service | tool, as its section says
    integrity: {sha256: <64 hex digits>, signature: <optional string>}
    privacy: allow-api           # models only, optional: local-only | hybrid | allow-api
    admin_approval_required: false   # models only, optional
    references: [service://vector/qdrant, tool://web-search]

Any string anywhere in a manifest that starts with ``model://``, ``service://``
or ``tool://`` is a reference. It resolves when its target (or the target's
last ``/`` segment) is the name of a manifest of that kind in the index or of a
known model / service / tool (for instance one already in the tenant's
database). Pure: no server imports, no I/O beyond reading the index's files.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from registry.digests import check_sha256, is_placeholder_signature
from registry.errors import Reason, RegistryError, Rejected

MAX_MANIFEST_BYTES = 1 << 20
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,199}")
REFERENCE = re.compile(r"(model|service|tool)://(.*)", re.DOTALL)
PRIVACY = ("local-only", "hybrid", "allow-api")
MANIFEST_KEYS = frozenset(
    {
        "name",
        "version",
        "kind",
        "integrity",
        "references",
        "privacy",
        "admin_approval_required",
        "description",
        "metadata",
        "category",
        "spec",
        "apiVersion",
    }
)


class Kind(StrEnum):
    """What a manifest describes."""

    MODEL = "model"
    ALGORITHM = "algorithm"
    SERVICE = "service"
    TOOL = "tool"


SECTIONS: Mapping[str, Kind] = {
    "models": Kind.MODEL,
    "algorithms": Kind.ALGORITHM,
    "services": Kind.SERVICE,
    "tools": Kind.TOOL,
}
INDEX_KEYS = frozenset(SECTIONS) | {"apiVersion", "kind", "name", "description"}


class IndexInvalid(RegistryError):
    """The index itself cannot be read or has the wrong shape (a usage error, not a refusal)."""

    code = "index_invalid"


@dataclass(frozen=True, slots=True)
class Entry:
    """One manifest the index lists: its path (as written, POSIX) and its section's kind."""

    path: str
    kind: Kind


@dataclass(frozen=True, slots=True)
class Reference:
    """A ``model://``, ``service://`` or ``tool://`` reference found in a manifest."""

    kind: Kind
    target: str

    def __str__(self) -> str:
        return f"{self.kind.value}://{self.target}"


@dataclass(frozen=True, slots=True)
class Manifest:
    """A manifest that passed every check: registered, never verified by it alone."""

    path: str
    kind: Kind
    name: str
    version: str
    sha256: str
    signature: str | None
    references: tuple[Reference, ...]
    privacy: str | None
    admin_approval_required: bool
    content_sha256: str


@dataclass(frozen=True, slots=True)
class Checked:
    """The outcome for one listed manifest: exactly one of ``manifest`` and ``refusal``."""

    entry: Entry
    manifest: Manifest | None = None
    refusal: Rejected | None = None

    @property
    def accepted(self) -> bool:
        return self.refusal is None


@dataclass(frozen=True, slots=True)
class Known:
    """Names that exist outside the index (a reference to one of them resolves)."""

    models: frozenset[str] = frozenset()
    services: frozenset[str] = frozenset()
    tools: frozenset[str] = frozenset()

    def names(self, kind: Kind) -> frozenset[str]:
        if kind is Kind.MODEL:
            return self.models
        if kind is Kind.SERVICE:
            return self.services
        if kind is Kind.TOOL:
            return self.tools
        return frozenset()


@dataclass(frozen=True, slots=True)
class IndexReport:
    """Every listed manifest, in index order, with its outcome."""

    index: str
    results: tuple[Checked, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return all(r.accepted for r in self.results)

    @property
    def accepted(self) -> list[Manifest]:
        return [r.manifest for r in self.results if r.manifest is not None]


def _load_yaml(path: Path, what: str) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise IndexInvalid(f"{what} `{path}`: cannot read ({exc})") from exc
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise IndexInvalid(f"{what} `{path}`: not valid YAML ({exc})") from exc


def _entry_path(raw: object, section: str) -> str:
    if isinstance(raw, Mapping):
        if set(raw) != {"path"}:
            raise IndexInvalid(f"an entry of `{section}` must be a path or {{path: ...}}")
        raw = raw["path"]
    if not isinstance(raw, str) or not raw.strip():
        raise IndexInvalid(f"an entry of `{section}` is not a path")
    path = PurePosixPath(raw.strip())
    if path.is_absolute() or ".." in path.parts or "\\" in raw:
        raise IndexInvalid(f"`{raw}` in `{section}` leaves the index directory")
    return path.as_posix()


def parse_index(document: object) -> list[Entry]:
    """The entries of an index document (raises :class:`IndexInvalid` on a bad shape)."""
    if not isinstance(document, Mapping):
        raise IndexInvalid("the index is not a mapping of sections")
    unknown = sorted(str(k) for k in document if k not in INDEX_KEYS)
    if unknown:
        raise IndexInvalid(f"unknown index keys: {', '.join(unknown)}")
    entries: list[Entry] = []
    for section, kind in SECTIONS.items():
        listed = document.get(section)
        if listed is None:
            continue
        if not isinstance(listed, list):
            raise IndexInvalid(f"`{section}` is not a list")
        entries.extend(Entry(_entry_path(raw, section), kind) for raw in listed)
    if not entries:
        raise IndexInvalid("the index lists no manifests")
    return entries


def load_index(path: Path) -> list[Entry]:
    """The entries of the index file at ``path``."""
    return parse_index(_load_yaml(path, "index"))


def canonical_sha256(document: object) -> str:
    """sha256 of a document's canonical JSON (sorted keys, no spaces, UTF-8)."""
    text = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def read_manifest(root: Path, entry: Entry) -> dict[str, Any]:
    """The manifest document of ``entry`` (raises :class:`Rejected` ``malformed_evidence``)."""
    path = root / entry.path
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise Rejected(Reason.MALFORMED_EVIDENCE, f"cannot read ({exc.strerror or exc})") from exc
    if len(data) > MAX_MANIFEST_BYTES:
        raise Rejected(Reason.MALFORMED_EVIDENCE, f"larger than {MAX_MANIFEST_BYTES} bytes")
    try:
        document = yaml.safe_load(data.decode("utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise Rejected(Reason.MALFORMED_EVIDENCE, f"not valid YAML ({exc})") from exc
    if not isinstance(document, dict):
        raise Rejected(Reason.MALFORMED_EVIDENCE, "not a mapping")
    try:
        canonical_sha256(document)
    except (TypeError, ValueError) as exc:  # dates, binary: not plain data
        raise Rejected(Reason.MALFORMED_EVIDENCE, f"not plain JSON-like data ({exc})") from exc
    return document


def _strings(value: object) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _strings(key)
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def find_references(document: object) -> tuple[Reference, ...]:
    """Every ``model://``, ``service://``, ``tool://`` reference, sorted and unique."""
    found: set[Reference] = set()
    for text in _strings(document):
        match = REFERENCE.fullmatch(text.strip())
        if match is None:
            continue
        target = match.group(2)
        if not NAME.fullmatch(target) or target.endswith("/"):
            raise Rejected(Reason.MALFORMED_EVIDENCE, f"reference `{text}` names nothing usable")
        found.add(Reference(Kind(match.group(1)), target))
    return tuple(sorted(found, key=str))


def _string(document: Mapping[str, Any], key: str) -> str:
    value = document.get(key)
    if not isinstance(value, str) or not value.strip():
        raise Rejected(Reason.MALFORMED_EVIDENCE, f"`{key}` must be a non-empty string")
    return value.strip()


def parse_manifest(entry: Entry, document: Mapping[str, Any], content_sha256: str) -> Manifest:
    """Check one manifest document strictly; raise :class:`Rejected` with the first problem."""
    unknown = sorted(str(k) for k in document if k not in MANIFEST_KEYS)
    if unknown:
        raise Rejected(Reason.MALFORMED_EVIDENCE, f"unknown keys: {', '.join(unknown)}")
    name = _string(document, "name")
    if not NAME.fullmatch(name):
        raise Rejected(Reason.MALFORMED_EVIDENCE, f"name `{name}` is not a registry name")
    version = _string(document, "version")
    kind = _string(document, "kind").lower()
    if kind != entry.kind.value:
        raise Rejected(
            Reason.MALFORMED_EVIDENCE,
            f"kind `{kind}` but listed under `{entry.kind.value}s`",
        )
    integrity = document.get("integrity")
    if not isinstance(integrity, Mapping):
        raise Rejected(Reason.MALFORMED_EVIDENCE, "`integrity` {sha256, signature} is missing")
    extra = sorted(str(k) for k in integrity if k not in ("sha256", "signature"))
    if extra:
        raise Rejected(Reason.MALFORMED_EVIDENCE, f"unknown integrity keys: {', '.join(extra)}")
    sha256 = check_sha256(integrity.get("sha256"), what="integrity.sha256")
    signature = integrity.get("signature")
    if "signature" in integrity and (
        not isinstance(signature, str) or is_placeholder_signature(signature)
    ):
        raise Rejected(
            Reason.PLACEHOLDER_SIGNATURE, f"integrity.signature `{signature}` is a placeholder"
        )
    privacy = document.get("privacy")
    approval = document.get("admin_approval_required", False)
    if entry.kind is not Kind.MODEL and (
        "privacy" in document or "admin_approval_required" in document
    ):
        raise Rejected(Reason.MALFORMED_EVIDENCE, "`privacy` and approval are for models only")
    if privacy is not None and privacy not in PRIVACY:
        raise Rejected(Reason.MALFORMED_EVIDENCE, f"privacy `{privacy}` is not one of {PRIVACY}")
    if not isinstance(approval, bool):
        raise Rejected(Reason.MALFORMED_EVIDENCE, "`admin_approval_required` must be a boolean")
    references = document.get("references", [])
    if not isinstance(references, list) or not all(isinstance(r, str) for r in references):
        raise Rejected(Reason.MALFORMED_EVIDENCE, "`references` must be a list of strings")
    for ref in references:
        if REFERENCE.fullmatch(ref.strip()) is None:
            raise Rejected(
                Reason.MALFORMED_EVIDENCE, f"reference `{ref}` is not model://, service://, tool://"
            )
    return Manifest(
        path=entry.path,
        kind=entry.kind,
        name=name,
        version=version,
        sha256=sha256,
        signature=signature if isinstance(signature, str) else None,
        references=find_references(document),
        privacy=privacy if isinstance(privacy, str) else None,
        admin_approval_required=approval,
        content_sha256=content_sha256,
    )


def _refuse(checked: Checked, reason: Reason, message: str) -> Checked:
    return Checked(checked.entry, refusal=Rejected(reason, message))


def _deduplicate(parsed: list[Checked]) -> tuple[list[Checked], dict[Kind, set[str]]]:
    """Refuse a path listed twice or a (kind, name) declared twice; the first one stands."""
    seen_paths: set[str] = set()
    seen_names: dict[tuple[Kind, str], str] = {}
    results: list[Checked] = []
    for checked in parsed:
        outcome = checked
        manifest = checked.manifest
        if checked.entry.path in seen_paths:
            why = f"`{checked.entry.path}` is listed more than once"
            outcome = _refuse(checked, Reason.DUPLICATE_MANIFEST, why)
        elif manifest is not None and (manifest.kind, manifest.name) in seen_names:
            first = seen_names[(manifest.kind, manifest.name)]
            why = f"{manifest.kind.value} `{manifest.name}` is already declared by `{first}`"
            outcome = _refuse(checked, Reason.DUPLICATE_MANIFEST, why)
        elif manifest is not None:
            seen_names[(manifest.kind, manifest.name)] = manifest.path
        seen_paths.add(checked.entry.path)
        results.append(outcome)
    declared: dict[Kind, set[str]] = {kind: set() for kind in Kind}
    for kind, name in seen_names:
        declared[kind].add(name)
    return results, declared


def _resolve(checked: Checked, declared: dict[Kind, set[str]], known: Known) -> Checked:
    manifest = checked.manifest
    if manifest is None:
        return checked
    for ref in manifest.references:
        names = declared[ref.kind] | known.names(ref.kind)
        if ref.target not in names and ref.target.rsplit("/", 1)[-1] not in names:
            why = f"`{ref}` names no {ref.kind.value} in the index or the registry"
            return _refuse(checked, Reason.UNRESOLVED_REFERENCE, why)
    return checked


def check_entries(root: Path, entries: list[Entry], known: Known | None = None) -> list[Checked]:
    """Check every entry: its manifest, then duplicates, then references (index order)."""
    parsed: list[Checked] = []
    for entry in entries:
        try:
            document = read_manifest(root, entry)
            manifest = parse_manifest(entry, document, canonical_sha256(document))
        except Rejected as exc:
            parsed.append(Checked(entry, refusal=exc))
        else:
            parsed.append(Checked(entry, manifest))
    results, declared = _deduplicate(parsed)
    return [_resolve(c, declared, known or Known()) for c in results]


def check_index(path: Path, known: Known | None = None) -> IndexReport:
    """Load the index at ``path`` and check every manifest it lists (never raises ``Rejected``)."""
    entries = load_index(path)
    return IndexReport(str(path), tuple(check_entries(path.parent, entries, known)))
