"""Bring this installation's runtimes in line with the platform being down or up.

``pause_all`` (``tinyclaw-cloud down``, and Ctrl-C on ``up``) stops every runtime this
installation owns: without the gateway they could only answer "I can't reach my model".
``reconcile_all`` (``up`` at start) runs every runtime whose tenant should be serving and
stops every other one we own. Neither changes a deployment's state: the tenant asked for
a serving bot, and gets it back as soon as the platform is up again.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select

from core.db import Database
from core.db.models import Deployment, Tenant, utcnow
from core.deployment_state import DeploymentState as S
from core.deployments import current_deployment
from core.runtimes import RuntimeDriver
from core.runtimes.base import RuntimeDriverError

SERVING = {S.HEALTHY}
DOWN_REASON = "The platform was stopped; the runtime is paused until it is back."


@dataclass
class Reconciled:
    """What ``pause_all`` / ``reconcile_all`` did, tenant ids per outcome."""

    started: list[str] = field(default_factory=list)
    stopped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


def _states(db: Database) -> dict[str, str]:
    """Our tenants' latest deployment states (the latest row of each tenant wins)."""
    with db.system_session() as session:
        states = {tid: S.PENDING.value for tid in session.scalars(select(Tenant.id))}
        rows = session.execute(
            select(Deployment.tenant_id, Deployment.state).order_by(Deployment.created_at)
        ).all()
    states.update({tid: state for tid, state in rows})
    return states


def _set_down(db: Database, tenant_id: str, down: bool) -> None:
    with db.tenant_session(tenant_id) as session:
        dep = current_deployment(session, tenant_id)
        if dep is not None:
            dep.runtime_down_at = utcnow() if down else None
            dep.runtime_down_reason = DOWN_REASON if down else None


def pause_all(db: Database, driver: RuntimeDriver) -> Reconciled:
    """Stop every runtime of this installation's tenants (their states are kept)."""
    states = _states(db)
    done = Reconciled()
    for tid in driver.list_tenants():
        if tid not in states:
            continue  # another installation's runtime on a shared engine
        try:
            if driver.status(tid).running:
                driver.stop(tid)
                done.stopped.append(tid)
            if states[tid] in SERVING:
                _set_down(db, tid, down=True)
        except RuntimeDriverError:
            done.failed.append(tid)
    return done


def reconcile_all(db: Database, driver: RuntimeDriver) -> Reconciled:
    """Run the runtimes of tenants that should be serving; stop the others we own."""
    states = _states(db)
    done = Reconciled()
    for tid in driver.list_tenants():
        state = states.get(tid)
        if state is None:
            continue
        try:
            running = driver.status(tid).running
            if state in SERVING and not running:
                driver.start(tid)
                done.started.append(tid)
            elif state in (S.PAUSED, S.SUSPENDED) and running:
                driver.stop(tid)
                done.stopped.append(tid)
            if state in SERVING:
                _set_down(db, tid, down=False)
        except RuntimeDriverError:
            done.failed.append(tid)
    return done
