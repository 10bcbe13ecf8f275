"""What the platform last saw of a tenant's runtime, recorded for the API to show.

The engine-events watcher and the health sweep mark a runtime *down* the moment they see
it die or stop answering; the restart that brings it back records ``healthy`` again, whose
later ``healthy_at`` supersedes the mark (``Deployment.runtime_health``).
"""

from __future__ import annotations

from datetime import UTC, datetime

from core.db import Database
from core.db.models import utcnow
from core.deployment_state import DeploymentState as S
from core.deployments import current_deployment


def latest_state(db: Database, tenant_id: str) -> str | None:
    """The tenant's current deployment state (None: no deployment, or no such tenant)."""
    with db.tenant_session(tenant_id) as session:
        dep = current_deployment(session, tenant_id)
        return dep.state if dep else None


def mark_down(db: Database, tenant_id: str, reason: str, at: datetime | None = None) -> bool:
    """Record that a runtime which should be serving is down; False when it should not be
    serving anyway (paused, deploying, deleted...), or ``at`` (when it died) is older than
    the restart that made it healthy, and nothing was recorded."""
    with db.tenant_session(tenant_id) as session:
        dep = current_deployment(session, tenant_id)
        if dep is None or dep.state != S.HEALTHY:
            return False
        healthy = dep.healthy_at
        if at is not None and healthy is not None:
            if at <= (healthy.replace(tzinfo=UTC) if healthy.tzinfo is None else healthy):
                return False  # an old death, already cured (e.g. the restart's own stop)
        dep.runtime_down_at = utcnow()
        dep.runtime_down_reason = reason
        return True
