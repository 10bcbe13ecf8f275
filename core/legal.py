"""Legal documents (terms of service, privacy policy, data processing agreement): which
version is in force, and who accepted which version when.

The texts are operator-edited Jinja files (``TCC_LEGAL_DIR``); ``TCC_LEGAL_VERSION`` names
the version in force. A user whose latest acceptance is of another version is asked to
accept again at the next login.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.db.models import LegalAcceptance
from core.errors import Conflict, InvalidInput
from core.settings import Settings

DOCUMENTS = {
    "terms": "Terms of service",
    "privacy": "Privacy policy",
    "dpa": "Data processing agreement",
}


def accepted_version(session: Session, user_id: str) -> str | None:
    """The version the user accepted last, or None."""
    return session.scalars(
        select(LegalAcceptance.version)
        .where(LegalAcceptance.user_id == user_id)
        .order_by(LegalAcceptance.accepted_at.desc(), LegalAcceptance.id.desc())
        .limit(1)
    ).first()


def needs_acceptance(session: Session, settings: Settings, user_id: str) -> bool:
    """Whether the user has yet to accept the version in force."""
    return accepted_version(session, user_id) != settings.legal_version


def accept(
    session: Session, settings: Settings, user_id: str, accepted: bool, version: str | None
) -> str:
    """Record the user's acceptance of the version in force (``version``, when the client
    names the one it showed, must be it); 4xx without acceptance."""
    if not accepted:
        raise InvalidInput(
            "Accept the terms of service, privacy policy and data processing agreement to "
            "continue (accept_terms).",
            code="terms_not_accepted",
            field="accept_terms",
        )
    if version is not None and version != settings.legal_version:
        raise Conflict(
            f"The legal documents changed: version {settings.legal_version} is in force, "
            f"you accepted {version}. Read and accept the current version.",
            code="terms_outdated",
        )
    session.add(LegalAcceptance(user_id=user_id, version=settings.legal_version))
    session.flush()
    return settings.legal_version


def history(session: Session, user_id: str) -> list[LegalAcceptance]:
    """Every acceptance of the user, oldest first (for the data export)."""
    return list(
        session.scalars(
            select(LegalAcceptance)
            .where(LegalAcceptance.user_id == user_id)
            .order_by(LegalAcceptance.accepted_at, LegalAcceptance.id)
        )
    )
