"""Reading bundle files safely from a directory or a gzipped tarball.

Everything untrusted about an archive is checked here, before any content is
parsed: absolute or parent-relative paths, links and devices, duplicate
entries, the number of entries, and the size of each file and of the whole
bundle (counted while decompressing, so a gzip bomb stops at the limit).
"""

from __future__ import annotations

import gzip
import io
import posixpath
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from engine.errors import BundleError, BundleTooLarge

SIGNATURES_FILE = ".signatures.json"
MANIFEST_FILE = ".manifest"

#: Suffixes that belong in a bundle; everything else in a source tree is left out.
_BUNDLE_SUFFIXES = (".rego", ".cedar", ".cedarschema", ".cedarschema.json", ".cedarlinks.json")
_DATA_NAMES = ("data.json", "data.yaml", "data.yml")
_SKIP_DIRS = frozenset({".git", "__pycache__", ".venv", "node_modules"})


@dataclass(frozen=True, slots=True)
class Limits:
    """Size limits applied while reading a bundle."""

    max_bundle_bytes: int = 16 * 1024 * 1024
    """Total uncompressed bytes of all files."""
    max_file_bytes: int = 4 * 1024 * 1024
    """Uncompressed bytes of any one file."""
    max_files: int = 2000
    """Number of entries."""


DEFAULT_LIMITS = Limits()


def is_bundle_file(name: str) -> bool:
    """Whether a relative path is part of a bundle (policy, data, schema, manifest, signature)."""
    base = posixpath.basename(name)
    if base in (MANIFEST_FILE, SIGNATURES_FILE) or base in _DATA_NAMES:
        return True
    return base.endswith(_BUNDLE_SUFFIXES)


def normalize_name(raw: str) -> str:
    """A safe bundle-relative POSIX path, or :class:`BundleError` for an unsafe one."""
    # OPA writes entries as `/policy.rego`: a leading slash means the bundle root.
    name = raw.replace("\\", "/")
    if len(name) > 1 and name[1] == ":":
        raise BundleError(f"unsafe path `{raw}` in bundle: drive-qualified paths are not allowed")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise BundleError(f"unsafe path `{raw}` in bundle: `..` is not allowed")
    if not parts:
        raise BundleError(f"empty path `{raw}` in bundle")
    return "/".join(parts)


class _Budget:
    def __init__(self, limits: Limits, origin: str) -> None:
        self.limits = limits
        self.origin = origin
        self.total = 0
        self.count = 0

    def add(self, name: str, size: int) -> None:
        self.count += 1
        self.total += size
        if self.count > self.limits.max_files:
            raise BundleTooLarge(
                f"{self.origin}: more than {self.limits.max_files} files in bundle"
            )
        if size > self.limits.max_file_bytes:
            raise BundleTooLarge(
                f"{self.origin}: `{name}` is larger than {self.limits.max_file_bytes} bytes"
            )
        if self.total > self.limits.max_bundle_bytes:
            raise BundleTooLarge(
                f"{self.origin}: bundle is larger than {self.limits.max_bundle_bytes} bytes"
            )


def read_directory(root: Path, limits: Limits = DEFAULT_LIMITS) -> dict[str, bytes]:
    """The bundle files under ``root``, keyed by relative POSIX path."""
    if not root.is_dir():
        raise BundleError(f"`{root}` is not a directory")
    budget = _Budget(limits, str(root))
    files: dict[str, bytes] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if any(part in _SKIP_DIRS for part in rel.parts) or not path.is_file():
            continue
        name = rel.as_posix()
        if not is_bundle_file(name):
            continue
        if path.is_symlink():
            raise BundleError(f"`{name}` is a symbolic link; bundles hold regular files only")
        budget.add(name, path.stat().st_size)
        files[name] = path.read_bytes()
    return files


def build_sources(
    root: Path, *, include_tests: bool = False, limits: Limits = DEFAULT_LIMITS
) -> dict[str, bytes]:
    """The files a bundle built from ``root`` holds: no old signature, and no Rego tests
    unless ``include_tests``."""
    files = read_directory(root, limits)
    files.pop(SIGNATURES_FILE, None)
    if include_tests:
        return files
    return {name: raw for name, raw in files.items() if not name.endswith("_test.rego")}


def read_tarball(
    blob: bytes, origin: str = "bundle", limits: Limits = DEFAULT_LIMITS
) -> dict[str, bytes]:
    """The files of a gzipped tarball, keyed by normalized path; unsafe entries are refused."""
    budget = _Budget(limits, origin)
    files: dict[str, bytes] = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(blob), mode="r:*") as tar:
            for member in tar:
                if member.isdir():
                    continue
                if not member.isfile():
                    raise BundleError(
                        f"{origin}: entry `{member.name}` is not a regular file (link or device)"
                    )
                name = normalize_name(member.name)
                if name in files:
                    raise BundleError(f"{origin}: duplicate entry `{name}`")
                budget.add(name, member.size)
                handle = tar.extractfile(member)
                if handle is None:
                    raise BundleError(f"{origin}: cannot read entry `{name}`")
                data = handle.read(limits.max_file_bytes + 1)
                if len(data) != member.size:
                    raise BundleError(f"{origin}: entry `{name}` is truncated")
                files[name] = data
    except (tarfile.TarError, EOFError, OSError, ValueError, zlib.error) as exc:
        raise BundleError(f"{origin}: not a readable gzipped tarball ({exc})") from exc
    return files


def write_tarball(files: dict[str, bytes]) -> bytes:
    """A reproducible gzipped tarball of ``files`` (sorted, fixed mtime, owner and mode)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(files, key=_tar_order):
            info = tarfile.TarInfo("/" + name)
            info.size = len(files[name])
            info.mode = 0o644
            info.mtime = 0
            tar.addfile(info, io.BytesIO(files[name]))
    return gzip.compress(raw.getvalue(), mtime=0)


def _tar_order(name: str) -> tuple[int, str]:
    # OPA reads .signatures.json before anything else so it can verify as it goes.
    return (0 if name == SIGNATURES_FILE else 1 if name == MANIFEST_FILE else 2, name)
