"""File digests exactly as OPA computes them for bundle signatures.

Unstructured files (Rego, Cedar) are hashed as bytes. Structured documents
(`.manifest`, `data.json`, `data.yaml`) are parsed and hashed in OPA's
canonical form: object keys sorted, no whitespace, numbers written as they
appeared in the source, strings escaped as Go's `encoding/json` does with
HTML escaping off. The result matches `opa build --signing-key` byte for byte.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from collections.abc import Callable
from typing import Any

import yaml

from engine.errors import BundleError

HASH_ALGORITHMS: dict[str, Callable[[], Any]] = {
    "MD5": hashlib.md5,
    "SHA-1": hashlib.sha1,
    "SHA-224": hashlib.sha224,
    "SHA-256": hashlib.sha256,
    "SHA-384": hashlib.sha384,
    "SHA-512": hashlib.sha512,
    "SHA-512-224": lambda: hashlib.new("sha512_224"),
    "SHA-512-256": lambda: hashlib.new("sha512_256"),
}

_STRUCTURED = frozenset({"data.json", "data.yaml", "data.yml", ".manifest", ".signatures.json"})


class _Number(str):
    """A JSON number kept as its source text, as Go's json.Number is."""


def is_structured(name: str) -> bool:
    """Whether OPA hashes this file as a parsed document rather than as bytes."""
    return posixpath.basename(name) in _STRUCTURED


def parse_json_exact(raw: bytes, name: str) -> Any:
    """JSON with numbers kept as their literal text (for hashing)."""
    try:
        return json.loads(raw, parse_float=_Number, parse_int=_Number, parse_constant=_Number)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BundleError(f"`{name}`: invalid JSON ({exc})") from exc


def _go_string(value: str) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def _write(value: Any, out: list[str]) -> None:
    if isinstance(value, dict):
        out.append("{")
        for i, key in enumerate(sorted(value)):
            if i:
                out.append(",")
            out.append(_go_string(str(key)))
            out.append(":")
            _write(value[key], out)
        out.append("}")
    elif isinstance(value, list):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _write(item, out)
        out.append("]")
    elif isinstance(value, _Number):
        out.append(str.__str__(value))
    elif isinstance(value, str):
        out.append(_go_string(value))
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif value is None:
        out.append("null")
    else:
        out.append(json.dumps(value))


def canonical_text(value: Any) -> str:
    """The canonical serialisation OPA hashes for a structured document."""
    out: list[str] = []
    _write(value, out)
    return "".join(out)


def _structured_value(name: str, raw: bytes) -> Any:
    if name.endswith((".yaml", ".yml")):
        try:
            return yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise BundleError(f"`{name}`: invalid YAML ({exc})") from exc
    return parse_json_exact(raw, name)


def file_digest(name: str, raw: bytes, algorithm: str = "SHA-256") -> str:
    """Hex digest of one bundle file as it appears in OPA's signature payload."""
    factory = HASH_ALGORITHMS.get(algorithm)
    if factory is None:
        raise BundleError(f"`{name}`: unsupported hashing algorithm `{algorithm}`")
    h = factory()
    if is_structured(name):
        h.update(canonical_text(_structured_value(name, raw)).encode())
    else:
        h.update(raw)
    digest: str = h.hexdigest()
    return digest
