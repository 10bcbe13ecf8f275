"""Types shared by the API's response models."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, Field


def _utc(value: datetime) -> datetime:
    # SQLite hands back naive datetimes; every time we store is UTC.
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


UtcDatetime = Annotated[datetime, AfterValidator(_utc)]
"""A timestamp that always serialises with its timezone (``...Z`` / ``+00:00``)."""


class ErrorOut(BaseModel):
    """The body of every error answer."""

    code: str = Field(description="stable, machine-readable: branch on this")
    message: str = Field(description="for people: says what to fix")
    details: dict[str, object] | None = None
