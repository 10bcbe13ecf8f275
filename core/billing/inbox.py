"""The webhook inbox: each Stripe event recorded once by ID, processed until it sticks.

A delivery first *claims* its event. The ``webhook_events`` primary key decides races
between concurrent deliveries: exactly one insert wins. A recorded event whose hand-off
failed (``error`` set, ``processed_at`` empty) may be claimed again by Stripe's retry;
one that is mid-hand-off elsewhere is claimable only after ``LEASE`` (its handler may
have died). Handing an event over twice is harmless anyway: the tenant workflow
dedupes by update ID = event ID. ``claim`` owns its transactions, because the row must
be committed before the hand-off starts.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import or_, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.db import Database
from core.db.models import WebhookEvent, utcnow

LEASE = timedelta(seconds=60)
PROVIDER = "stripe"


class Claim(StrEnum):
    NEW = "new"  # first delivery: ours to process
    RETRY = "retry"  # recorded, never processed: ours to process again
    DUPLICATE = "duplicate"  # already processed: nothing to do
    IN_PROGRESS = "in_progress"  # another delivery is handing it over right now


def claim(db: Database, event_id: str, event_type: str, created: datetime | None) -> Claim:
    """Record the event by ID, or say why this delivery must not process it."""
    try:
        with db.system_session() as session:
            session.add(
                WebhookEvent(
                    id=event_id, provider=PROVIDER, type=event_type, event_created_at=created
                )
            )
        return Claim.NEW
    except IntegrityError:
        pass
    with db.system_session() as session:
        return _reclaim(session, event_id)


def _reclaim(session: Session, event_id: str) -> Claim:
    stmt = (
        update(WebhookEvent)
        .where(
            WebhookEvent.id == event_id,
            WebhookEvent.processed_at.is_(None),
            or_(WebhookEvent.error.is_not(None), WebhookEvent.received_at < utcnow() - LEASE),
        )
        .values(received_at=utcnow(), error=None)
    )
    result = session.execute(stmt)
    if isinstance(result, CursorResult) and result.rowcount == 1:
        return Claim.RETRY
    row = session.get(WebhookEvent, event_id)
    if row is not None and row.processed_at is not None:
        return Claim.DUPLICATE
    return Claim.IN_PROGRESS


def mark_processed(
    session: Session, event_id: str, tenant_id: str | None, note: str | None = None
) -> None:
    """The event is handled for good (applied, ignored or rejected); ``note`` says how."""
    row = session.get(WebhookEvent, event_id)
    if row is not None:
        row.tenant_id, row.processed_at, row.error = tenant_id, utcnow(), note


def mark_failed(session: Session, event_id: str, tenant_id: str | None, error: str) -> None:
    """The hand-off failed: leave it unprocessed so Stripe's retry processes it again."""
    row = session.get(WebhookEvent, event_id)
    if row is not None:
        row.tenant_id, row.error = tenant_id, error
