"""The OPA `.manifest` file and bundle roots."""

from __future__ import annotations

from typing import Any

import msgspec

from engine.errors import BundleError, BundleRootConflict


class Manifest(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True, frozen=True):
    """OPA's manifest fields. ``roots`` default to the whole data tree, as in OPA."""

    revision: str = ""
    roots: list[str] = msgspec.field(default_factory=lambda: [""])
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)
    rego_version: int = 1
    file_rego_versions: dict[str, int] = msgspec.field(default_factory=dict)
    wasm: list[dict[str, Any]] = msgspec.field(default_factory=list)


_decoder = msgspec.json.Decoder(Manifest)


def parse_manifest(raw: bytes | None) -> Manifest:
    """Decode a `.manifest`; a missing one gives OPA's defaults."""
    if raw is None:
        return Manifest()
    try:
        manifest = _decoder.decode(raw)
    except msgspec.ValidationError as exc:
        raise BundleError(f"`.manifest`: {exc}") from exc
    except msgspec.DecodeError as exc:
        raise BundleError(f"`.manifest`: not valid JSON ({exc})") from exc
    if manifest.rego_version not in (0, 1):
        raise BundleError(f"`.manifest`: rego_version must be 0 or 1, not {manifest.rego_version}")
    for root in manifest.roots:
        if root != root.strip("/") or "//" in root:
            raise BundleError(f"`.manifest`: root `{root}` must not start or end with `/`")
    return manifest


def _segments(path: str) -> tuple[str, ...]:
    return tuple(p for p in path.split("/") if p)


def path_within(path: str, root: str) -> bool:
    """Whether slash-separated ``path`` lies inside ``root`` (segment-wise prefix)."""
    p, r = _segments(path), _segments(root)
    return p[: len(r)] == r


def roots_overlap(a: str, b: str) -> bool:
    """Two roots overlap when either contains the other."""
    return path_within(a, b) or path_within(b, a)


def check_path_in_roots(path: str, roots: list[str], what: str) -> None:
    """Raise :class:`BundleRootConflict` unless ``path`` is inside one of ``roots``."""
    if not any(path_within(path, root) for root in roots):
        shown = ", ".join(f"`{r}`" for r in roots)
        raise BundleRootConflict(f"{what} `{path}` is outside the bundle roots {shown}")


def check_data_in_roots(prefix: str, value: Any, roots: list[str], file: str) -> None:
    """Every data path a file contributes must lie inside a root.

    A path that is only a prefix of some root is allowed when the object
    under it is checked key by key, as OPA does for a top-level ``data.json``.
    """
    if any(path_within(prefix, root) for root in roots):
        return
    deeper = [r for r in roots if path_within(r, prefix) and r != prefix]
    if deeper and isinstance(value, dict):
        for key, child in value.items():
            check_data_in_roots(f"{prefix}/{key}".strip("/"), child, roots, file)
        return
    check_path_in_roots(prefix, roots, f"data from `{file}` at")


def check_disjoint(bundles: dict[str, list[str]]) -> None:
    """Two bundles activated together must not claim overlapping roots."""
    names = sorted(bundles)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            for ra in bundles[a]:
                for rb in bundles[b]:
                    if roots_overlap(ra, rb):
                        raise BundleRootConflict(
                            f"bundles `{a}` and `{b}` have overlapping roots `{ra}` and `{rb}`"
                        )
