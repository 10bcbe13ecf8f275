"""The gateway's surface for the control plane: what activities and the API may call.

The control plane (activities, the API) reaches the gateway through this module only,
never through ``gateway.tokens``, ``gateway.shared`` or ``gateway.rollup`` directly, so the
gateway's internals can move without touching the control plane (import-linter enforces
it, see ``pyproject.toml``)::

    issue_token(session, tenant_id, deployment_id=None) -> str     per-tenant gateway token
    revoke_tenant_tokens(session, tenant_id) -> int                 revoke every token
    authenticate(session, token) -> TenantContext | None            check a token
    broadcast_revocation(redis_url, tenant_id) -> None              drop cached auth everywhere
    rollup_day(db, day) -> int                                      daily usage roll-up
    usage_summary(session, tenant_id, since) -> dict                dashboard usage figures
    plan_usage(session, tenant_id, plan_id) -> dict                 this month vs the plan
"""

from gateway.rollup import plan_usage, rollup_day, usage_summary
from gateway.shared import broadcast_revocation
from gateway.tokens import authenticate, issue_token, revoke_tenant_tokens

__all__ = [
    "authenticate",
    "broadcast_revocation",
    "issue_token",
    "plan_usage",
    "revoke_tenant_tokens",
    "rollup_day",
    "usage_summary",
]
