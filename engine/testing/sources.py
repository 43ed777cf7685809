"""Finding policy sources on disk: bundle directories, loose files, Cedar tests."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from engine.bundle.bundle import Bundle, bundle_from_files, load_bundle
from engine.bundle.files import MANIFEST_FILE, is_bundle_file, read_directory
from engine.errors import BundleError

_SKIP = frozenset({".git", ".venv", "node_modules", "__pycache__"})


@dataclass(frozen=True, slots=True)
class Workspace:
    """The bundles found under some paths, and the Cedar test locations among them."""

    bundles: tuple[Bundle, ...]
    roots: tuple[Path, ...]
    cedar_test_files: tuple[Path, ...]
    cedar_test_dirs: tuple[Path, ...]


def _manifest_dirs(path: Path) -> list[Path]:
    return sorted(
        p.parent for p in path.rglob(MANIFEST_FILE) if not (_SKIP & set(p.relative_to(path).parts))
    )


def _is_cedar_json_test(path: Path) -> bool:
    if path.name in ("data.json", "entities.json") or path.parent.name in ("ALLOW", "DENY"):
        return False
    try:
        doc = json.loads(path.read_text())
    except (ValueError, OSError, UnicodeDecodeError):
        return False
    return isinstance(doc, dict) and "requests" in doc and "policies" in doc


def _walk(path: Path) -> Iterator[Path]:
    for p in sorted(path.rglob("*")):
        if not (_SKIP & set(p.relative_to(path).parts)):
            yield p


def _cedar_tests(path: Path) -> tuple[list[Path], list[Path]]:
    if path.is_file():
        return ([path] if path.suffix == ".json" and _is_cedar_json_test(path) else []), []
    files = [
        p for p in _walk(path) if p.suffix == ".json" and p.is_file() and _is_cedar_json_test(p)
    ]
    # The path itself may be a test folder, not only the folders below it.
    dirs = [
        p
        for p in (path, *_walk(path))
        if p.is_dir() and ((p / "ALLOW").is_dir() or (p / "DENY").is_dir())
    ]
    return files, dirs


def _loose(path: Path, nested: list[Path]) -> Bundle | None:
    files = {
        name: raw
        for name, raw in read_directory(path).items()
        if not any((path / name).is_relative_to(n) for n in nested)
    }
    files = {
        n: r
        for n, r in files.items()
        if n.endswith(".rego") or n.rsplit("/", 1)[-1].startswith("data.")
    }
    return bundle_from_files(files, path.name or "policies") if files else None


def discover(paths: Sequence[Path]) -> Workspace:
    """Bundles under ``paths``: every directory with a `.manifest` is one bundle; Rego
    and data outside any of them form one more, rooted at the path given."""
    bundles: list[Bundle] = []
    roots: list[Path] = []
    cedar_files: list[Path] = []
    cedar_dirs: list[Path] = []
    loose_files: dict[str, bytes] = {}
    for path in paths:
        if not path.exists():
            raise BundleError(f"`{path}`: no such file or directory")
        files, dirs = _cedar_tests(path)
        cedar_files += files
        cedar_dirs += dirs
        if path.is_file():
            if is_bundle_file(path.name) and path.suffix == ".rego":
                loose_files[str(path)] = path.read_bytes()
            continue
        nested = _manifest_dirs(path)
        for bundle_dir in nested:
            bundles.append(load_bundle(bundle_dir))
            roots.append(bundle_dir)
        loose = _loose(path, nested)
        if loose is not None and (loose.rego or loose.rego_tests):
            bundles.append(loose)
            roots.append(path)
    if loose_files:
        bundles.append(bundle_from_files(loose_files, "files"))
        roots.append(Path("."))
    return Workspace(tuple(bundles), tuple(roots), tuple(cedar_files), tuple(cedar_dirs))
