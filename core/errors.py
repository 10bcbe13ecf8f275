"""The one error tree of the control plane.

Every expected failure is a ``TinyClawError`` carrying a stable ``code``, the
HTTP status the API answers with, and a message a customer can act on. The API maps
any of them to ``{code, message}`` with that status (``api/errors.py``); activities map
them to a typed ``ApplicationError`` (``activities/lifecycle.py``); the gateway answers
them in the provider's shape (``gateway/errors.py``). The whole tree, with where each
class lives (``tests/api/test_error_tree.py`` keeps this drawing complete)::

    class                       status  code                        where
    TinyClawError               400     bad_request                 core/errors.py
    ├── InvalidInput            422     invalid_input               the message says what to fix
    │   ├── MissingCredential   422     missing_telegram_token      core/provisioning.py
    │   ├── TemplateProblem     422     invalid_bundle              core/rendering.py
    │   ├── BadTelegramToken    422     bad_telegram_token          core/channels/telegram.py
    │   ├── EgressRefused       422     provider_url_refused        core/egress.py
    │   └── ControlBackupError  422     invalid_input               core/control_backup.py
    ├── Unauthorized            401     unauthorized                missing or wrong credentials
    ├── Forbidden               403     forbidden                   authenticated but not allowed
    │   ├── PlanLimitExceeded   403     plan_limit_exceeded         the plan does not allow this
    │   ├── AnalyticsNotInPlan  403     analytics_not_in_plan       core/customer_analytics.py
    │   ├── FeatureNotInPlan    403     feature_not_in_plan         core/organizations.py
    │   ├── RoleTooLow          403     role_forbidden              core/organizations.py
    │   ├── InvitationWrongAccount 403  invitation_wrong_account    core/invitations.py
    │   ├── ModelNotOffered     403     model_not_allowed           core/model_catalog.py
    │   ├── ModelNotAllowed     403     model_not_allowed           gateway/errors.py
    │   └── ProviderKeyMissing  403     provider_key_missing        gateway/errors.py
    ├── PaymentRequired         402     payment_required            billing blocks the action
    │   ├── BudgetExceeded      402     budget_exceeded             gateway/errors.py
    │   └── MonthlyMessagesExceeded 402 monthly_messages_exceeded   gateway/errors.py
    ├── NotFound                404     not_found                   unknown, or another tenant's
    │   ├── SecretNotFound      404     secret_not_found            core/secrets/base.py
    │   └── ModelNotFound       404     model_not_found             gateway/errors.py
    ├── Conflict                409     conflict                    the state does not allow it
    │   └── IllegalTransition   409     illegal_transition          a state change not allowed
    ├── RateLimited             429     rate_limited                slow down
    │   └── RateLimitExceeded   429     rate_limit_exceeded         gateway/errors.py
    ├── ServiceUnavailable      503     service_unavailable         a dependency is down
    │   ├── SecretStoreUnavailable 503  secret_store_unavailable    core/secrets/__init__.py
    │   ├── UpstreamUnavailable 503     upstream_unavailable        Telegram, Stripe, a model down
    │   │   └── NoUpstreamAvailable 503 upstream_unavailable        gateway/upstreams.py
    │   └── RuntimeDriverError  503     runtime_error               core/runtimes/base.py
    │       ├── ImageMissingError 503   runtime_image_missing       no runtime image on the host
    │       └── RuntimeNotFoundError 404 runtime_not_found          no runtime for the tenant
    ├── UpstreamRejected        502     upstream_rejected           refused; text withheld
    ├── RequestTooLarge         413     request_too_large           gateway/errors.py
    ├── WebhookRejected         400     webhook_rejected            core/billing/events.py
    │   ├── MissingSignature    400     signature_missing           core/billing/events.py
    │   ├── BadSignature        400     signature_invalid           core/billing/events.py
    │   ├── StaleSignature      400     signature_stale             core/billing/events.py
    │   └── MalformedEvent      400     malformed_event             core/billing/events.py
    └── SecretIntegrityError    500     secret_integrity            core/secrets/__init__.py

A class's ``code`` is its default; a raise may name a narrower stable code (Stripe down is
an ``UpstreamUnavailable`` with ``stripe_unavailable``). Codes never change once shipped:
clients and workflows (``ApplicationError.type``) match on them.

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


class UpstreamUnavailable(ServiceUnavailable):
    """An upstream we call (Telegram, Stripe, a model provider) is down or timing out."""

    default_code = "upstream_unavailable"


class UpstreamRejected(TinyClawError):
    """The upstream refused the request (4xx); its own text is withheld: it may echo keys.

    ``status`` is the upstream's (the gateway answers the runtime with it); the control
    plane's API answers 502: the fault is between us and the upstream, not the caller's.
    """

    status_code = 502
    default_code = "upstream_rejected"

    def __init__(self, message: str, *, status: int, code: str | None = None, **kw: Any) -> None:
        super().__init__(message, code=code, **kw)
        self.status = status
