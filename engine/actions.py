"""The governed action vocabulary and how each action is named in Rego and Cedar."""

from __future__ import annotations

from typing import Final

from engine.errors import InvalidInput

ACTIONS: Final[tuple[str, ...]] = (
    "agent.create",
    "agent.update",
    "agent.deploy",
    "agent.disable",
    "tool.bind",
    "tool.unbind",
    "tool.invoke",
    "task.submit",
    "model.register",
    "artifact.register",
    "bundle.activate",
    "memory.write",
    "memory.read",
)

ACTION_DOMAINS: Final = frozenset(a.split(".")[0] for a in ACTIONS)
REGO_PREFIX: Final = "aion"
REGO_COMMON_PACKAGE: Final = "aion.common"


def check_action(action: str) -> str:
    """Return ``action`` if it is governed, else raise :class:`InvalidInput`."""
    if action not in ACTIONS:
        raise InvalidInput(f"unknown action `{action}`; expected one of {', '.join(ACTIONS)}")
    return action


def rego_package(action: str) -> str:
    """The Rego package holding the rules of ``action``: ``agent.deploy`` → ``aion.agent.deploy``."""
    return f"{REGO_PREFIX}.{action}"


def cedar_action_uid(action: str) -> str:
    """The Cedar action entity of ``action``, as Cedar surface syntax."""
    return f'Action::"{action}"'


def unknown_action(action: str) -> bool:
    """Whether a policy names an action outside the governed vocabulary."""
    return action not in ACTIONS


def package_action(package: str) -> str | None:
    """The action a package like ``aion.agent.deploy`` is for; None for other packages.

    Test packages (``..._test``) and libraries (``aion.lib...``) are not action packages.
    """
    parts = package.split(".")
    if len(parts) != 3 or parts[0] != REGO_PREFIX or parts[1] not in ACTION_DOMAINS:
        return None
    if parts[2].endswith("_test"):
        return None
    return f"{parts[1]}.{parts[2]}"
