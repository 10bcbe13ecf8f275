"""The one error tree of the control plane.

Every expected failure is a ``TinyClawError`` carrying a stable ``code``, the
HTTP status the API answers with, and a message a customer can act on::

    TinyClawError
    ├── InvalidInput          422  bad input; the message says what to fix
    ├── Unauthorized          401  missing or wrong credentials
    ├── Forbidden             403  authenticated but not allowed
    │   └── PlanLimitExceeded 403  the plan does not allow this
    ├── PaymentRequired       402  billing state blocks the action
    ├── NotFound              404  unknown, or owned by another tenant
    ├── Conflict              409  the current state does not allow it
    │   └── IllegalTransition 409  a deployment state change that is not allowed
    ├── RateLimited           429  slow down
    └── ServiceUnavailable    503  a dependency (Temporal, Docker, Stripe) is down

Messages never contain secrets: callers pass descriptions, not values.
"""

from __future__ import annotations

from typing import Any, ClassVar


class TinyClawError(Exception):
    """Base of every expected error; maps to ``{code, message}`` with ``status_code``."""

    status_code: ClassVar[int] = 400
    default_code: ClassVar[str] = "bad_request"

    def __init__(self, message: str, *, code: str | None = None, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        """The JSON body the API returns for this error."""
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            body["details"] = self.details
        return body


class InvalidInput(TinyClawError):
    status_code = 422
    default_code = "invalid_input"


class Unauthorized(TinyClawError):
    status_code = 401
    default_code = "unauthorized"


class Forbidden(TinyClawError):
    status_code = 403
    default_code = "forbidden"


class PlanLimitExceeded(Forbidden):
    default_code = "plan_limit_exceeded"


class PaymentRequired(TinyClawError):
    status_code = 402
    default_code = "payment_required"


class NotFound(TinyClawError):
    status_code = 404
    default_code = "not_found"


class Conflict(TinyClawError):
    status_code = 409
    default_code = "conflict"


class IllegalTransition(Conflict):
    default_code = "illegal_transition"


class RateLimited(TinyClawError):
    status_code = 429
    default_code = "rate_limited"


class ServiceUnavailable(TinyClawError):
    status_code = 503
    default_code = "service_unavailable"
