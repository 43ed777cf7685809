"""The loaded bundle value: files classified, data placed, roots checked."""

from __future__ import annotations

import hashlib
import json
import posixpath
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

from engine.bundle.canonical import canonical_text, file_digest
from engine.bundle.files import (
    DEFAULT_LIMITS,
    MANIFEST_FILE,
    SIGNATURES_FILE,
    Limits,
    read_directory,
    read_tarball,
)
from engine.bundle.manifest import Manifest, check_data_in_roots, parse_manifest
from engine.errors import BundleError

TEST_SUFFIX = "_test.rego"


@dataclass(frozen=True, slots=True)
class SourceFile:
    """One policy source file of a bundle."""

    path: str
    text: str


@dataclass(frozen=True, slots=True)
class CedarLink:
    """A Cedar template link: fill a template's slots to make a concrete policy."""

    template_id: str
    link_id: str
    values: dict[str, Any]


@dataclass(frozen=True)
class Bundle:
    """An immutable, loaded bundle. ``files`` holds every file exactly as read."""

    name: str
    manifest: Manifest
    files: Mapping[str, bytes]
    rego: tuple[SourceFile, ...] = ()
    rego_tests: tuple[SourceFile, ...] = ()
    data: dict[str, Any] = field(default_factory=dict)
    cedar: tuple[SourceFile, ...] = ()
    cedar_schema: SourceFile | None = None
    cedar_links: tuple[CedarLink, ...] = ()

    @property
    def revision(self) -> str:
        """The manifest revision (empty when the manifest names none)."""
        return self.manifest.revision

    @property
    def signed(self) -> bool:
        """Whether the bundle carries a `.signatures.json`."""
        return SIGNATURES_FILE in self.files

    @cached_property
    def digest(self) -> str:
        """sha256 over every file's canonical digest, signature excluded: the bundle identity."""
        listing = {
            name: file_digest(name, raw)
            for name, raw in self.files.items()
            if name != SIGNATURES_FILE
        }
        return hashlib.sha256(canonical_text(listing).encode()).hexdigest()


def _text(name: str, raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BundleError(f"`{name}`: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc


def _data_value(name: str, raw: bytes) -> Any:
    try:
        if name.endswith(".json"):
            return json.loads(raw)
        return yaml.safe_load(raw)
    except (ValueError, yaml.YAMLError) as exc:
        raise BundleError(f"`{name}`: invalid data document ({exc})") from exc


def _insert(node: dict[str, Any], key: str, value: Any, name: str, path: str) -> None:
    # Objects merge key by key, as OPA merges data files; only a leaf is defined twice.
    if key not in node:
        node[key] = value
    elif isinstance(node[key], dict) and isinstance(value, dict):
        for child_key, child in value.items():
            _insert(node[key], child_key, child, name, f"{path}/{child_key}")
    else:
        raise BundleError(f"`{name}`: data path `{path}` is defined twice")


def _place(tree: dict[str, Any], prefix: str, value: Any, name: str) -> None:
    parts = [p for p in prefix.split("/") if p]
    if not parts:
        if not isinstance(value, dict):
            raise BundleError(f"`{name}`: a top-level data document must be an object")
        for key, child in value.items():
            _insert(tree, key, child, name, key)
        return
    node = tree
    for part in parts[:-1]:
        nxt = node.setdefault(part, {})
        if not isinstance(nxt, dict):
            raise BundleError(f"`{name}`: data path `{prefix}` conflicts with another document")
        node = nxt
    _insert(node, parts[-1], value, name, prefix)


def _links(name: str, raw: bytes) -> list[CedarLink]:
    value = _data_value(name, raw)
    if not isinstance(value, list):
        raise BundleError(f"`{name}`: template links must be a JSON array")
    links = []
    for i, item in enumerate(value):
        if not isinstance(item, dict) or "template_id" not in item:
            raise BundleError(f"`{name}`: link {i} needs `template_id`, `link_id` and `args`")
        link_id = item.get("link_id", item.get("new_id"))
        args = item.get("args", item.get("values"))
        if not isinstance(link_id, str) or not isinstance(args, dict):
            raise BundleError(f"`{name}`: link {i} needs `template_id`, `link_id` and `args`")
        links.append(CedarLink(str(item["template_id"]), link_id, args))
    return links


def bundle_from_files(files: Mapping[str, bytes], name: str) -> Bundle:
    """Classify ``files`` into a :class:`Bundle`; data paths are checked against the roots."""
    manifest = parse_manifest(files.get(MANIFEST_FILE))
    rego: list[SourceFile] = []
    tests: list[SourceFile] = []
    cedar: list[SourceFile] = []
    schemas: list[SourceFile] = []
    links: list[CedarLink] = []
    data: dict[str, Any] = {}
    for path in sorted(files):
        raw = files[path]
        base = posixpath.basename(path)
        if path in (MANIFEST_FILE, SIGNATURES_FILE):
            continue
        if base.endswith(TEST_SUFFIX):
            tests.append(SourceFile(path, _text(path, raw)))
        elif base.endswith(".rego"):
            rego.append(SourceFile(path, _text(path, raw)))
        elif base.endswith(".cedar"):
            cedar.append(SourceFile(path, _text(path, raw)))
        elif base.endswith((".cedarschema", ".cedarschema.json")):
            schemas.append(SourceFile(path, _text(path, raw)))
        elif base.endswith(".cedarlinks.json"):
            links.extend(_links(path, raw))
        elif base in ("data.json", "data.yaml", "data.yml"):
            prefix = posixpath.dirname(path)
            value = _data_value(path, raw)
            check_data_in_roots(prefix, value, manifest.roots, path)
            _place(data, prefix, value, path)
    if len(schemas) > 1:
        shown = ", ".join(f"`{s.path}`" for s in schemas)
        raise BundleError(f"bundle `{name}` has more than one Cedar schema: {shown}")
    return Bundle(
        name=name,
        manifest=manifest,
        files=dict(files),
        rego=tuple(rego),
        rego_tests=tuple(tests),
        data=data,
        cedar=tuple(cedar),
        cedar_schema=schemas[0] if schemas else None,
        cedar_links=tuple(links),
    )


def default_bundle_name(path: Path) -> str:
    """A bundle name from its file or directory name (archive suffixes removed)."""
    name = path.name
    for suffix in (".tar.gz", ".tgz", ".tar"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def load_bundle(path: Path, *, name: str | None = None, limits: Limits = DEFAULT_LIMITS) -> Bundle:
    """Load a bundle from a source directory or a `.tar.gz`.

    The name is ``name``, else the manifest's ``metadata.name``, else the file
    or directory name.
    """
    if path.is_dir():
        files = read_directory(path, limits)
    elif path.is_file():
        if path.stat().st_size > limits.max_bundle_bytes:
            raise BundleError(f"`{path}` is larger than {limits.max_bundle_bytes} bytes")
        files = read_tarball(path.read_bytes(), str(path), limits)
    else:
        raise BundleError(f"`{path}`: no such bundle file or directory")
    return bundle_from_files(files, name or _manifest_name(files) or default_bundle_name(path))


def _manifest_name(files: Mapping[str, bytes]) -> str | None:
    manifest = parse_manifest(files.get(MANIFEST_FILE))
    value = manifest.metadata.get("name")
    return value if isinstance(value, str) and value else None
