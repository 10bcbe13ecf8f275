"""Gateway-specific errors and their OpenAI- / Anthropic-shaped bodies.

Every refusal is a ``core.errors.TinyClawError`` subclass with a stable code;
``OUTCOMES`` maps that code to the ``usage_events.outcome`` it is metered as.
"""

from __future__ import annotations

from typing import Any

from core.errors import (
    Forbidden,
    NotFound,
    PaymentRequired,
    RateLimited,
    ServiceUnavailable,
    TinyClawError,
    UpstreamRejected,
)


class ModelNotAllowed(Forbidden):
    default_code = "model_not_allowed"


class ModelNotFound(NotFound):
    default_code = "model_not_found"


class ProviderKeyMissing(Forbidden):
    default_code = "provider_key_missing"


class BudgetExceeded(PaymentRequired):
    default_code = "budget_exceeded"


class MonthlyMessagesExceeded(PaymentRequired):
    default_code = "monthly_messages_exceeded"


class RateLimitExceeded(RateLimited):
    default_code = "rate_limit_exceeded"


class RequestTooLarge(TinyClawError):
    """The request body is over the gateway's size limit (refused before it is read)."""

    status_code = 413
    default_code = "request_too_large"


def too_large(limit: int) -> RequestTooLarge:
    """The 413 refusal; it states the limit and never quotes the body."""
    return RequestTooLarge(
        f"The request body is larger than this gateway accepts ({limit} bytes, "
        f"{limit / (1 << 20):.0f} MiB). Send a shorter conversation or smaller attachments.",
        limit_bytes=limit,
    )


def database_unavailable() -> ServiceUnavailable:
    """The 503 for a call the gateway cannot check or meter because its database is away."""
    return ServiceUnavailable(
        "The gateway cannot reach its database right now; retry in a few seconds.",
        code="database_unavailable",
        retry_after=5,
    )


OUTCOMES = {
    "model_not_allowed": "refused_model",
    "model_not_found": "refused_model",
    "provider_key_missing": "refused_no_key",
    "budget_exceeded": "refused_budget",
    "monthly_messages_exceeded": "refused_quota",
    "rate_limit_exceeded": "refused_rate",
    "invalid_input": "refused_invalid",
    "request_too_large": "refused_invalid",
    "upstream_unavailable": "upstream_error",
    "upstream_rejected": "upstream_rejected",
    "upstream_auth_failed": "upstream_rejected",
    "upstream_rate_limited": "upstream_rejected",
}

_OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "insufficient_quota",
    403: "permission_error",
    404: "invalid_request_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}
_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    422: "invalid_request_error",
    429: "rate_limit_error",
    503: "overloaded_error",
}


def status_of(exc: TinyClawError) -> int:
    """The HTTP status to answer with."""
    return exc.status if isinstance(exc, UpstreamRejected) else exc.status_code


def openai_body(status: int, code: str, message: str) -> dict[str, Any]:
    """``{"error": {"message", "type", "code"}}`` as OpenAI clients expect."""
    kind = _OPENAI_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return {"error": {"message": message, "type": kind, "code": code}}


def anthropic_body(status: int, message: str) -> dict[str, Any]:
    """``{"type": "error", "error": {"type", "message"}}`` as Anthropic clients expect."""
    kind = _ANTHROPIC_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    return {"type": "error", "error": {"type": kind, "message": message}}


def upstream_rejection(status: int, byok: bool) -> UpstreamRejected:
    """A safe error for an upstream 4xx: a fixed message per status, never upstream text."""
    if status in (401, 403):
        msg = (
            "The model provider rejected your own API key. Update it in the dashboard."
            if byok
            else "The platform's model provider refused the request; we have been alerted."
        )
        return UpstreamRejected(msg, status=502, code="upstream_auth_failed")
    if status == 429:
        return UpstreamRejected(
            "The model provider is rate limiting; retry shortly.",
            status=429,
            code="upstream_rate_limited",
        )
    return UpstreamRejected(
        f"The model provider rejected the request (HTTP {status}). Check the model name "
        "and parameters.",
        status=status if 400 <= status < 500 else 502,
    )
