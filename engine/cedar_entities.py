"""Cedar requests and entities built from a decision request.

The principal (``User`` or ``Service``) gets ``tenant``, ``roles`` and
``kind`` attributes and ``Role`` parents; the resource (``Agent``, ``Tool``
...) gets ``tenant`` and its stored attributes and its ``Tenant`` as parent.
Values Cedar cannot hold are mapped: floats to ``decimal``, ``null`` dropped,
lists to sets; keys that would let data forge an entity reference
(``__entity``, ``__extn``) are dropped.

Cedar spends most of a decision parsing entities and context, so only what
the policies can read is sent (:class:`AttributeUse`): entity attributes and
top-level context keys that some policy names (``x.attr`` or ``x has attr``).
Nothing else can influence a Cedar decision: entities are compared by uid,
never as records, and the context is kept whole whenever a policy uses
``context`` itself as a value.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

#: Resource ``type`` values of the decision model and their Cedar entity types.
RESOURCE_TYPES = {
    "agent": "Agent",
    "tool": "Tool",
    "model": "Model",
    "task": "Task",
    "bundle": "Bundle",
    "tenant": "Tenant",
    "artifact": "Artifact",
    "memory": "Memory",
    "deployment": "Deployment",
    "run": "Run",
}
_MAX_LONG = 2**63 - 1
_MAX_DECIMAL = 922337203685477.0


@dataclass(frozen=True, slots=True)
class AttributeUse:
    """Which attribute names the policies of a set can read.

    ``names`` is None when nothing may be left out (no policies analysed).
    """

    names: frozenset[str] | None = None
    whole_context: bool = True

    @classmethod
    def of(cls, policies: Iterable[Mapping[str, Any]]) -> AttributeUse:
        """Collect the names from policies in Cedar's JSON form (EST)."""
        names: set[str] = set()
        whole = False
        for policy in policies:
            for node, parent in _walk(policy, None):
                for op in (".", "has"):
                    access = node.get(op)
                    if isinstance(access, dict) and isinstance(access.get("attr"), str):
                        names.add(access["attr"])
                if node.get("Var") == "context" and not _is_access_of(parent, node):
                    whole = True
        return cls(frozenset(names), whole)

    def attrs(self, attrs: dict[str, Any]) -> dict[str, Any]:
        """Entity attributes a policy could read."""
        if self.names is None:
            return attrs
        return {k: v for k, v in attrs.items() if k in self.names}

    def context(self, context: dict[str, Any]) -> dict[str, Any]:
        """Context keys a policy could read."""
        if self.names is None or self.whole_context:
            return context
        return {k: v for k, v in context.items() if k in self.names}


EVERYTHING = AttributeUse()


def _walk(node: Any, parent: Any) -> Iterator[tuple[dict[str, Any], Any]]:
    if isinstance(node, dict):
        yield node, parent
        for value in node.values():
            yield from _walk(value, node)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value, parent)


def _is_access_of(parent: Any, node: dict[str, Any]) -> bool:
    # In the EST `x.attr` and `x has attr` are {".": {"left": x, "attr": ...}};
    # the walk hands us the inner object as the parent of `x`.
    return isinstance(parent, dict) and "attr" in parent and parent.get("left") is node


def cedar_value(value: Any) -> Any:
    """A JSON value as Cedar can hold it (see module docs); None means "leave out"."""
    if isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return value if -_MAX_LONG - 1 <= value <= _MAX_LONG else str(value)
    if isinstance(value, float):
        if not -_MAX_DECIMAL <= value <= _MAX_DECIMAL:
            return None  # outside Cedar's decimal range: left out, like a null
        try:
            quantized = Decimal(repr(value)).quantize(Decimal("0.0001"))
        except InvalidOperation:
            return None
        return {"__extn": {"fn": "decimal", "arg": f"{quantized:f}"}}
    if isinstance(value, dict):
        out = {}
        for key, child in value.items():
            if key in ("__entity", "__extn"):
                continue
            mapped = cedar_value(child)
            if mapped is not None:
                out[str(key)] = mapped
        return out
    if isinstance(value, list | tuple | set | frozenset):
        return [m for m in (cedar_value(v) for v in value) if m is not None]
    return None


def entity_type(resource_type: str) -> str:
    """The Cedar entity type of a resource type (``agent`` → ``Agent``)."""
    return RESOURCE_TYPES.get(resource_type, resource_type[:1].upper() + resource_type[1:])


def request_entities(
    doc: Mapping[str, Any], use: AttributeUse = EVERYTHING
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The Cedar request and entity list for a decision request document.

    ``Role`` and ``Tenant`` appear only as parents: Cedar resolves ``in``
    through the parent links, so they need no entities of their own.
    """
    principal, resource = doc["principal"], doc["resource"]
    p_type = "Service" if principal.get("kind") == "service" else "User"
    r_type = entity_type(resource["type"])
    roles = [str(r) for r in principal.get("roles", [])]
    tenant = str(resource["tenant"])
    p_uid = {"type": p_type, "id": str(principal["id"])}
    r_uid = {"type": r_type, "id": str(resource["id"])}
    entities: list[dict[str, Any]] = [
        {
            "uid": p_uid,
            "attrs": use.attrs(
                {"tenant": str(principal["tenant"]), "roles": roles, "kind": p_type.lower()}
            ),
            "parents": [{"type": "Role", "id": r} for r in roles],
        },
    ]
    if r_type != "Tenant":
        attrs = cedar_value(use.attrs(resource.get("attributes") or {}))
        attrs["tenant"] = tenant
        entities.append(
            {"uid": r_uid, "attrs": attrs, "parents": [{"type": "Tenant", "id": tenant}]}
        )
    request = {
        "principal": p_uid,
        "action": {"type": "Action", "id": doc["action"]},
        "resource": r_uid,
        "context": cedar_value(use.context(doc.get("context") or {})),
    }
    return request, entities
