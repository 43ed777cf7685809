"""Rego that OPA and the embedded engine would read differently: found before it ships.

OPA evaluates the arguments of a call (and both sides of ``x in s``) before
the call, so ``not f(input.missing)`` leaves the rule body undefined and the
rule does not fire; regorus fires it. For a deny rule that is fail-open in
OPA and fail-closed in process, so a bundle that depends on it means two
things. This module finds every ``not`` whose call or membership takes an
argument that may be undefined: a reference into ``input`` or ``data``
(imports included), or a rule of the package that has no default. Local
variables, function parameters, literals and partial set/object rules (an
empty set when nothing matches) are always defined.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from engine.errors import PolicyProblem

CODE = "rego_not_undefined_argument"
_COMPREHENSIONS = frozenset({"ArrayCompr", "SetCompr", "ObjectCompr"})
_REFS = frozenset({"RefDot", "RefBrack"})


def _one(node: Any) -> tuple[str, Any] | None:
    if isinstance(node, dict) and len(node) == 1:
        ((tag, body),) = node.items()
        return str(tag), body
    return None


def _var(node: Any) -> str | None:
    found = _one(node)
    if found and found[0] == "Var" and isinstance(found[1], dict):
        value = found[1].get("value")
        return value if isinstance(value, str) else None
    return None


def _root(node: Any) -> tuple[str | None, int]:
    """The variable a reference starts from and how many steps it takes from it."""
    depth = 0
    found = _one(node)
    while found and found[0] in _REFS and isinstance(found[1], dict):
        depth += 1
        node = found[1].get("refr")
        found = _one(node)
    return _var(node), depth


def _text(source: str, span: Any) -> str | None:
    if isinstance(span, dict) and "start" in span and "end" in span:
        return source[int(span["start"]) : int(span["end"])]
    return None


def _bound(node: Any, source: str) -> set[str]:
    """Names a statement binds: `:=`/`=` targets, `some` and `every` variables."""
    names: set[str] = set()
    found = _one(node)
    if found is None:
        return names
    tag, body = found
    if tag == "Expr" and isinstance(body, dict):
        expr = _one(body.get("expr"))
        if expr and expr[0] == "AssignExpr":
            names |= {v for n in _nodes(expr[1].get("lhs")) if (v := _var(n))}
            if expr[1].get("op") == "Eq":  # unification binds on either side
                names |= {v for n in _nodes(expr[1].get("rhs")) if (v := _var(n))}
    elif tag == "SomeIn" and isinstance(body, dict):
        for part in ("key", "value"):
            names |= {v for n in _nodes(body.get(part)) if (v := _var(n))}
    elif tag == "SomeVars" and isinstance(body, dict):
        for span in body.get("vars", []):
            if (text := _text(source, span)) is not None:
                names.add(text)
    elif tag == "Every" and isinstance(body, dict):
        for part in ("key", "value"):
            if (text := _text(source, body.get(part))) is not None:
                names.add(text)
    return names


def _nodes(node: Any) -> Iterator[Any]:
    """Every tagged node under ``node``, not entering comprehensions (their own scope)."""
    found = _one(node)
    if found is not None:
        yield node
        if found[0] in _COMPREHENSIONS:
            return
    if isinstance(node, dict):
        for value in node.values():
            yield from _nodes(value)
    elif isinstance(node, list):
        for value in node:
            yield from _nodes(value)


def _arguments(expr: Any) -> Iterator[Any]:
    """The arguments of every call and membership test in a negated expression."""
    for node in _nodes(expr):
        tag, body = _one(node) or ("", None)
        if tag == "Call" and isinstance(body, dict):
            yield from body.get("params", [])
        elif tag == "Membership" and isinstance(body, dict):
            yield from (body.get(k) for k in ("key", "value", "collection") if body.get(k))


def _guarded(ref: str, used: set[str]) -> bool:
    """Whether ``ref`` (or something inside it) is needed elsewhere in the body."""
    return any(u == ref or u.startswith((ref + ".", ref + "[")) for u in used)


class _Module:
    def __init__(self, module: dict[str, Any], source: str) -> None:
        self.file = str(module.get("source", {}).get("file", "?"))
        self.ast = module.get("ast", {})
        self.source = source
        self.defined, self.rules = self._rules()
        self.imports = {
            name
            for imp in self.ast.get("imports", [])
            if (name := self._import_name(imp)) is not None
        }

    def _import_name(self, imp: Any) -> str | None:
        alias = _text(self.source, imp.get("as")) if isinstance(imp, dict) else None
        if alias:
            return alias
        refr = imp.get("refr") if isinstance(imp, dict) else None
        found = _one(refr)
        if found and found[0] == "RefDot" and isinstance(found[1], dict):
            field = found[1].get("field")
            if isinstance(field, list) and field and isinstance(field[-1], str):
                return field[-1]
        return _var(refr)

    def _rules(self) -> tuple[set[str], set[str]]:
        """(rules always defined: default, unconditional else, partial set/object; all rules)."""
        defined: set[str] = set()
        names: set[str] = set()
        for rule in self.ast.get("rules", []):
            tag, body = _one(rule) or ("", None)
            if not isinstance(body, dict):
                continue
            head = _one(body.get("head")) if tag == "Spec" else ("Default", body)
            if head is None or not isinstance(head[1], dict):
                continue
            name, _ = _root(head[1].get("refr"))
            if name is None:
                continue
            names.add(name)
            unconditional_else = any(
                b.get("is_else") and not b.get("query", {}).get("stmts")
                for b in body.get("bodies", [])
            )
            if tag == "Default" or head[0] in ("Set",) or unconditional_else:
                defined.add(name)
        return defined, names

    def _may_be_undefined(self, arg: Any, local: set[str]) -> str | None:
        """The offending reference's text when ``arg`` may be undefined."""
        tag, body = _one(arg) or ("", None)
        if tag == "Call" and isinstance(body, dict):
            for param in body.get("params", []):
                if (found := self._may_be_undefined(param, local)) is not None:
                    return found
            return None
        root, depth = _root(arg)
        if root is None or root in local:
            return None
        text = _text(self.source, (body or {}).get("span")) or root
        if root in ("input", "data"):
            return text if depth else None
        if root in self.imports:
            return text
        if root in self.rules and (depth or root not in self.defined):
            return text
        return None

    def problems(self) -> list[PolicyProblem]:
        found: list[PolicyProblem] = []
        for rule in self.ast.get("rules", []):
            tag, body = _one(rule) or ("", None)
            if tag != "Spec" or not isinstance(body, dict):
                continue
            params: set[str] = set()
            head = _one(body.get("head"))
            if head and head[0] == "Func" and isinstance(head[1], dict):
                params = {v for a in head[1].get("args", []) for n in _nodes(a) if (v := _var(n))}
            for each in body.get("bodies", []):
                found += self._query(each.get("query", {}), set(params))
        return found

    def _used(self, stmts: list[Any]) -> set[str]:
        """References the body needs defined outside any ``not``: when one of them is
        undefined the body fails in both engines, whatever a ``not`` says."""
        used: set[str] = set()
        for stmt in stmts:
            literal = _one(stmt.get("literal"))
            if literal is None or literal[0] == "NotExpr":
                continue
            for node in _nodes(literal[1]):
                tag, body = _one(node) or ("", None)
                if tag in _REFS or tag == "Var":
                    text = _text(self.source, (body or {}).get("span"))
                    if text:
                        used.add(text)
        return used

    def _query(self, query: Any, local: set[str]) -> list[PolicyProblem]:
        found: list[PolicyProblem] = []
        stmts = query.get("stmts", []) if isinstance(query, dict) else []
        local = set(local) | {n for s in stmts for n in _bound(s.get("literal"), self.source)}
        used = self._used(stmts)
        for stmt in stmts:
            literal = _one(stmt.get("literal"))
            if literal is None or not isinstance(literal[1], dict):
                continue
            if literal[0] == "Every":
                found += self._query(literal[1].get("query"), local)
            if literal[0] != "NotExpr":
                continue
            for arg in _arguments(literal[1].get("expr")):
                offending = self._may_be_undefined(arg, local)
                if offending is not None and not _guarded(offending, used):
                    span = stmt.get("span", {})
                    found.append(
                        PolicyProblem(
                            self.file,
                            f"`not` over a call or `in` whose argument `{offending}` may be "
                            "undefined: OPA does not fire this rule then, the embedded engine "
                            "does; make the argument always defined (object.get with a default, "
                            "or a helper rule); see docs/policies.md",
                            CODE,
                            int(span.get("line", 0)) or None,
                            int(span.get("col", 0)) or None,
                        )
                    )
                    break
        return found


def undefined_under_not(
    modules: list[dict[str, Any]], sources: dict[str, str]
) -> list[PolicyProblem]:
    """Every ``not`` in ``modules`` (regorus AST) that OPA and regorus would read differently.

    ``sources`` maps each module's file name to its text (the AST names some
    variables only by their position in it).
    """
    problems: list[PolicyProblem] = []
    for module in modules:
        file = str(module.get("source", {}).get("file", "?"))
        problems += _Module(module, sources.get(file, "")).problems()
    return problems
