"""Where in-toto link metadata comes from: a directory, or memory."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

MAX_LINK_BYTES = 16 << 20


class LinkSource(Protocol):
    """Link files by name (``STEP.KEYID8.link``), as in-toto names them."""

    def read(self, name: str) -> bytes | None:
        """The file's bytes, or ``None`` when there is no such link."""
        ...


class DirectoryLinkSource:
    """Links in one directory; names with a path separator are never looked up."""

    def __init__(self, directory: str | Path, *, max_bytes: int = MAX_LINK_BYTES) -> None:
        self._directory = Path(directory)
        self._max_bytes = max_bytes

    def read(self, name: str) -> bytes | None:
        if "/" in name or "\\" in name or name in {"", ".", ".."}:
            return None
        path = self._directory / name
        if not path.is_file():
            return None
        with path.open("rb") as handle:
            # One byte over the limit lets the reader notice an oversized link.
            return handle.read(self._max_bytes + 1)


class InMemoryLinkSource:
    """Links held in a dict (uploaded with a registration request, or in tests)."""

    def __init__(self, links: Mapping[str, bytes]) -> None:
        self._links = dict(links)

    def read(self, name: str) -> bytes | None:
        return self._links.get(name)
