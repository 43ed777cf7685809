"""The agent catalog: templates shipped as data files, configs checked against their JSON Schema."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jsonschema import Draft7Validator, FormatChecker

from server.errors import InvalidInputError, NotFoundError

_FORMATS = FormatChecker()


@_FORMATS.checks("uri", raises=ValueError)
def _is_uri(value: object) -> bool:
    # jsonschema checks `uri` only with an optional package; a scheme and a
    # target after it are what a repository URL needs.
    if not isinstance(value, str):
        return True
    scheme, sep, rest = value.partition(":")
    return bool(sep and scheme and scheme[0].isalpha() and rest and " " not in value)


@dataclass(frozen=True)
class Template:
    """One catalog template and its compiled config validator."""

    doc: dict[str, Any]
    validator: Draft7Validator

    @property
    def id(self) -> str:
        return str(self.doc["id"])

    @property
    def secret_fields(self) -> frozenset[str]:
        """Config fields declared ``format: secret``: never echoed, logged or recorded."""
        props = self.doc["config_schema"].get("properties", {})
        return frozenset(k for k, v in props.items() if v.get("format") == "secret")

    def check(self, config: dict[str, Any]) -> None:
        """Raise 400 naming every problem of ``config``."""
        problems = sorted(self.validator.iter_errors(config), key=lambda e: list(map(str, e.path)))
        if problems:
            secret = self.secret_fields
            shown = "; ".join(
                # A message about a secret field would quote the secret: say less.
                f"{'/'.join(map(str, p.path)) or 'config'}: "
                f"{'is not a valid secret value' if p.path and p.path[0] in secret else p.message}"
                for p in problems
            )
            raise InvalidInputError(f"config does not match template `{self.id}`: {shown}")


class Catalog:
    """The templates in a folder of JSON files."""

    def __init__(self, folder: Path = Path(__file__).parent) -> None:
        self._templates: dict[str, Template] = {}
        for file in sorted(folder.glob("*.json")):
            doc = json.loads(file.read_text())
            Draft7Validator.check_schema(doc["config_schema"])
            self._templates[doc["id"]] = Template(
                doc, Draft7Validator(doc["config_schema"], format_checker=_FORMATS)
            )

    def list(self) -> list[dict[str, Any]]:
        """Every template document."""
        return [t.doc for t in self._templates.values()]

    def get(self, template_id: str) -> Template:
        """One template, or 404."""
        found = self._templates.get(template_id)
        if found is None:
            raise NotFoundError(f"no catalog template `{template_id}`")
        return found
