"""Domain errors of the server, each mapped once to an HTTP status and ``{"code", "message"}``.

AppError
 ├── InvalidInputError   400 invalid_input
 ├── UnauthorizedError   401 unauthorized
 ├── ForbiddenError      403 forbidden
 ├── PolicyDeniedError   403 policy_denied (+ decision_id, reasons)
 ├── NotFoundError       404 not_found
 ├── ConflictError       409 conflict
 ├── PayloadTooLargeError 413 payload_too_large
 ├── RateLimitedError    429 rate_limited (+ Retry-After)
 └── UnavailableError    503 unavailable (decision log cannot be written, ...)
"""

from __future__ import annotations

from typing import Any


class AppError(Exception):
    """An error a client sees: stable ``code``, HTTP ``status``, human ``message``."""

    status = 500
    code = "internal_error"

    def __init__(self, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extra

    def body(self) -> dict[str, Any]:
        """The JSON error body."""
        return {"code": self.code, "message": self.message, **self.extra}

    def headers(self) -> dict[str, str]:
        """Extra response headers."""
        return {}


class InvalidInputError(AppError):
    status, code = 400, "invalid_input"


class UnauthorizedError(AppError):
    status, code = 401, "unauthorized"

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Bearer realm="aion"'}


class ForbiddenError(AppError):
    status, code = 403, "forbidden"


class PolicyDeniedError(AppError):
    status, code = 403, "policy_denied"


class NotFoundError(AppError):
    status, code = 404, "not_found"


class ConflictError(AppError):
    status, code = 409, "conflict"


class PayloadTooLargeError(AppError):
    status, code = 413, "payload_too_large"


class RateLimitedError(AppError):
    status, code = 429, "rate_limited"

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class ApprovalPendingError(AppError):
    """Not an error for the client: the request is parked (202) until approved."""

    status, code = 202, "pending_approval"


class UnavailableError(AppError):
    status, code = 503, "unavailable"
