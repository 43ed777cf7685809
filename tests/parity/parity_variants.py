"""One drawn request and several mutated copies: cheap inputs for the differential test."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import msgspec
from hypothesis import strategies as st

from tests.parity.parity_strategies import ADVERSARIAL, requests_for

# ---- cheap variants: one drawn request, several mutated copies --------------------------
#
# Drawing a whole request costs Hypothesis ~100 choices (about 3 ms); a mutation costs
# three. Each generated case is a drawn request plus VARIANTS copies with one field of
# its free-form parts (resource.attributes, context) deleted, nulled or replaced by an
# adversarial value: missing and mistyped fields are where engines disagree.

VARIANTS = 5
MUTATIONS = ("delete", "null", "replace")
_FREE = (("resource", "attributes"), ("context",))


def _paths(value: Any, prefix: tuple[Any, ...]) -> Iterator[tuple[Any, ...]]:
    if isinstance(value, dict):
        for key in value:
            yield (*prefix, key)
            yield from _paths(value[key], (*prefix, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield (*prefix, i)
            yield from _paths(item, (*prefix, i))


def mutable_paths(doc: dict[str, Any]) -> list[tuple[Any, ...]]:
    """Every key and list position under the request's free-form parts."""
    out: list[tuple[Any, ...]] = []
    for free in _FREE:
        node: Any = doc
        for part in free:
            node = node[part]
        out += _paths(node, free)
    return out


def mutate(doc: dict[str, Any], path: tuple[Any, ...], op: str, value: Any) -> dict[str, Any]:
    """A copy of ``doc`` with ``path`` deleted, set to null, or set to ``value``."""
    copy: dict[str, Any] = msgspec.json.decode(msgspec.json.encode(doc))
    parent: Any = copy
    for part in path[:-1]:
        parent = parent[part]
    last = path[-1]
    if op == "delete":
        del parent[last]
    else:
        parent[last] = None if op == "null" else value
    return copy


def cases_for(bundle: str) -> st.SearchStrategy[list[tuple[str, dict[str, Any]]]]:
    """A drawn request and up to VARIANTS mutated copies of it, without duplicates."""
    mutation = st.tuples(
        st.integers(0, 2**16), st.sampled_from(MUTATIONS), st.integers(0, len(ADVERSARIAL) - 1)
    )

    def expand(
        drawn: tuple[tuple[str, dict[str, Any]], list[tuple[int, str, int]]],
    ) -> list[tuple[str, dict[str, Any]]]:
        (action, doc), mutations = drawn
        paths = mutable_paths(doc)
        out = [(action, doc)]
        seen = {msgspec.json.encode(doc)}
        for index, op, value in mutations if paths else []:
            # A duplicate (say, nulling a null) moves on to the next path, a few times.
            for step in range(4):
                path = paths[(index + step) % len(paths)]
                variant = mutate(doc, path, op, ADVERSARIAL[(value + step) % len(ADVERSARIAL)])
                key = msgspec.json.encode(variant)
                if key not in seen:
                    seen.add(key)
                    out.append((action, variant))
                    break
        return out

    return st.tuples(
        requests_for(bundle), st.lists(mutation, min_size=VARIANTS, max_size=VARIANTS)
    ).map(expand)
