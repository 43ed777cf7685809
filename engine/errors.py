"""Exceptions raised by the engine, each with a stable string code.

Evaluation problems never escape as exceptions: they travel on the
:class:`~engine.model.Decision`. These exceptions are for bad arguments and for
artefacts that cannot be accepted (a bundle that does not load, a signature
that does not verify)::

    EngineError
     ├── InvalidInput            invalid_input
     ├── BundleError             bundle_invalid
     │    ├── BundleTooLarge     bundle_too_large
     │    ├── BundleRootConflict bundle_root_conflict
     │    └── SignatureError     bundle_signature_invalid
     │         └── RollbackError bundle_rollback
     └── PolicyError             policy_error (carries every PolicyProblem found)
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PolicyProblem:
    """One problem in one policy file, with its location when known."""

    file: str
    message: str
    code: str = "policy_error"
    line: int | None = None
    col: int | None = None

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
            if self.col is not None:
                where += f":{self.col}"
        return f"{where}: {self.code}: {self.message}"


class EngineError(Exception):
    """Base of every engine exception; ``code`` is stable and machine-readable."""

    code = "engine_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(EngineError):
    """A caller passed something the engine refuses (unknown action, bad request)."""

    code = "invalid_input"


class BundleError(EngineError):
    """A bundle cannot be loaded: bad manifest, unsafe archive entry, bad data file."""

    code = "bundle_invalid"


class BundleTooLarge(BundleError):
    """A bundle or one of its files exceeds the configured size limits."""

    code = "bundle_too_large"


class BundleRootConflict(BundleError):
    """Content outside the declared roots, or two bundles claiming overlapping roots."""

    code = "bundle_root_conflict"


class SignatureError(BundleError):
    """A bundle signature is missing, malformed, untrusted or does not match the files."""

    code = "bundle_signature_invalid"


class RollbackError(SignatureError):
    """A signed revision that is not newer than the last accepted one for its name."""

    code = "bundle_rollback"


class PolicyError(EngineError):
    """Policies that do not compile or validate; ``problems`` lists every one found."""

    code = "policy_error"

    def __init__(self, problems: list[PolicyProblem]) -> None:
        self.problems = problems
        summary = "; ".join(str(p) for p in problems[:5])
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        super().__init__(summary + more)
