"""File digests as OPA computes them for bundle signatures."""

from __future__ import annotations

import hashlib

import pytest

from engine.bundle.canonical import canonical_text, file_digest, is_structured, parse_json_exact
from engine.errors import BundleError


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.mark.parametrize("name", ["data.json", "a/b/data.json", ".manifest"])
def test_structured_digest_ignores_whitespace_and_key_order(name: str) -> None:
    compact = b'{"b":[1,2,{"y":true,"x":null}],"a":"s"}'
    spaced = b'{\n  "a" : "s",\n\t"b": [ 1, 2, {"x": null, "y": true} ]\n}\n'
    assert file_digest(name, compact) == file_digest(name, spaced)
    assert file_digest(name, compact) == _sha256('{"a":"s","b":[1,2,{"x":null,"y":true}]}')


def test_structured_digest_changes_with_content() -> None:
    assert file_digest("data.json", b'{"a": 1}') != file_digest("data.json", b'{"a": 2}')
    # Array order is content, unlike object key order.
    assert file_digest("data.json", b"[1, 2]") != file_digest("data.json", b"[2, 1]")


@pytest.mark.parametrize(
    ("left", "right"), [(b'{"a": 1.0}', b'{"a": 1}'), (b"[1e2]", b"[100]"), (b"[0.50]", b"[0.5]")]
)
def test_number_literals_are_kept_like_go_json_number(left: bytes, right: bytes) -> None:
    assert file_digest("data.json", left) != file_digest("data.json", right)


def test_number_literal_text_is_what_gets_hashed() -> None:
    raw = b'{"big": 12345678901234567890123, "f": 1.0, "e": -1.5E+3, "i": -0}'
    expected = '{"big":12345678901234567890123,"e":-1.5E+3,"f":1.0,"i":-0}'
    assert canonical_text(parse_json_exact(raw, "data.json")) == expected
    assert file_digest("data.json", raw) == _sha256(expected)


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        ("\u2028", '"\\u2028"'),
        ("a\u2029b", '"a\\u2029b"'),
        ("<&>", '"<&>"'),  # HTML escaping is off, as in OPA
        ("é€😀", '"é€😀"'),  # non-ASCII stays as UTF-8
        ('q"b\\', '"q\\"b\\\\"'),
        ("\n\t\r", '"\\n\\t\\r"'),
        ("\x01\x1f", '"\\u0001\\u001f"'),
    ],
)
def test_strings_are_escaped_like_go(value: str, encoded: str) -> None:
    assert canonical_text(value) == encoded
    assert canonical_text({value: value}) == "{" + encoded + ":" + encoded + "}"


def test_line_separator_in_a_data_file_is_hashed_escaped() -> None:
    raw = '{"s": "x\u2028y"}'.encode()
    assert file_digest("data.json", raw) == _sha256('{"s":"x\\u2028y"}')


def test_canonical_text_of_a_nested_sample() -> None:
    sample = {
        "zeta": [3, {"b": False, "a": None}, []],
        "alpha": {"y": "two words", "x": {}},
        "Mid": True,
        "n": -7,
    }
    assert canonical_text(sample) == (
        '{"Mid":true,"alpha":{"x":{},"y":"two words"},"n":-7,"zeta":[3,{"a":null,"b":false},[]]}'
    )


def test_rego_is_hashed_as_raw_bytes() -> None:
    raw = b"package p\n\ndeny contains 1 if false\n"
    assert file_digest("p.rego", raw) == hashlib.sha256(raw).hexdigest()
    reformatted = raw.replace(b"\n\n", b"\n")
    assert file_digest("p.rego", reformatted) != file_digest("p.rego", raw)


def test_non_structured_json_files_are_hashed_as_bytes() -> None:
    # Only data.json / data.yaml / .manifest are documents; anything else is bytes.
    raw = b'{ "b": 1, "a": 2 }'
    assert file_digest("links.cedarlinks.json", raw) == hashlib.sha256(raw).hexdigest()
    assert file_digest("schema.cedarschema.json", raw) != file_digest("data.json", raw)
    assert not is_structured("x/links.cedarlinks.json")
    assert is_structured("x/data.yaml")


def test_yaml_data_ignores_layout() -> None:
    block = b"b:\n  - 1\n  - two\na: true\n"
    flow = b"{a: true, b: [1, two]}\n"
    assert file_digest("data.yaml", block) == file_digest("data.yml", flow)
    assert file_digest("data.yaml", block) == _sha256('{"a":true,"b":[1,"two"]}')


@pytest.mark.parametrize(
    ("algorithm", "factory"),
    [("SHA-256", hashlib.sha256), ("SHA-512", hashlib.sha512), ("MD5", hashlib.md5)],
)
def test_hash_algorithms(algorithm: str, factory: type) -> None:
    raw = b"package p\n"
    assert file_digest("p.rego", raw, algorithm) == factory(raw).hexdigest()
    assert file_digest("data.json", b'{"a": 1}', algorithm) == factory(b'{"a":1}').hexdigest()


def test_unknown_hash_algorithm_is_refused() -> None:
    with pytest.raises(BundleError, match="unsupported hashing algorithm `SHA-3`"):
        file_digest("p.rego", b"x", "SHA-3")


@pytest.mark.parametrize("raw", [b"{", b"\xff\xfe", b'{"a": }'])
def test_invalid_structured_file_is_a_bundle_error(raw: bytes) -> None:
    with pytest.raises(BundleError, match=r"`data\.json`: invalid JSON"):
        file_digest("data.json", raw)
