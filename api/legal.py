"""Legal documents over the API (which version is in force, accept it) and their rendering
from the operator's Jinja templates (``TCC_LEGAL_DIR``, else the shipped defaults)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from fastapi import APIRouter
from jinja2 import ChoiceLoader, FileSystemLoader, TemplateNotFound, select_autoescape
from jinja2.sandbox import SandboxedEnvironment
from markupsafe import Markup
from pydantic import BaseModel, Field

from api.deps import ContextDep, CurrentUser
from api.schemas import UtcDatetime
from core import legal
from core.errors import NotFound, ServiceUnavailable
from core.settings import Settings
from core.tenants import audit

router = APIRouter(tags=["legal"])
DEFAULT_DIR = Path(__file__).resolve().parent / "legal_defaults"


class DocumentOut(BaseModel):
    name: str
    title: str
    url: str


class LegalOut(BaseModel):
    version: str
    documents: list[DocumentOut]


class AcceptIn(BaseModel):
    accept_terms: bool = Field(description="true: you accept the documents in force")
    version: str | None = Field(
        default=None, max_length=64, description="the version you read (refused if outdated)"
    )


class AcceptedOut(BaseModel):
    version: str
    accepted_at: UtcDatetime | None = None


@lru_cache(maxsize=8)
def _environment(directory: str | None) -> SandboxedEnvironment:
    # Operator files first; a document the operator did not write falls back to ours.
    paths = [FileSystemLoader(directory)] if directory else []
    return SandboxedEnvironment(
        loader=ChoiceLoader([*paths, FileSystemLoader(str(DEFAULT_DIR))]),
        autoescape=select_autoescape(default=True, default_for_string=True),
    )


def render_document(settings: Settings, name: str) -> Markup:
    """The HTML body of one legal document (404 for an unknown one)."""
    if name not in legal.DOCUMENTS:
        raise NotFound("There is no such legal document.", code="document_not_found")
    env = _environment(str(settings.legal_dir) if settings.legal_dir else None)
    try:
        template = env.get_template(f"{name}.html")
    except TemplateNotFound:  # pragma: no cover - the defaults ship all three
        raise ServiceUnavailable("This legal document is missing on this installation.") from None
    text = template.render(version=settings.legal_version, entity=settings.legal_entity)
    return Markup(text)  # noqa: S704 (operator-written, rendered with autoescape)


def documents() -> list[DocumentOut]:
    """The documents and where the dashboard shows them."""
    return [DocumentOut(name=n, title=t, url=f"/app/legal/{n}") for n, t in legal.DOCUMENTS.items()]


@router.get("/legal")
def legal_documents(ctx: ContextDep) -> LegalOut:
    """The legal documents in force and their version (accept it at sign-up)."""
    return LegalOut(version=ctx.settings.legal_version, documents=documents())


@router.get("/auth/terms")
def my_acceptance(user: CurrentUser, ctx: ContextDep) -> dict[str, object]:
    """The version in force and the one you accepted last."""
    with ctx.db.system_session() as session:
        accepted = legal.accepted_version(session, user.user_id)
    version = ctx.settings.legal_version
    return {"version": version, "accepted_version": accepted, "up_to_date": accepted == version}


@router.post("/auth/terms")
def accept_terms(body: AcceptIn, user: CurrentUser, ctx: ContextDep) -> AcceptedOut:
    """Accept the legal documents in force (asked again after they change)."""
    return AcceptedOut(version=record(ctx, user.user_id, body.accept_terms, body.version))


def record(ctx: ContextDep, user_id: str, accepted: bool, version: str | None) -> str:
    """Shared by the API and the dashboard: record an acceptance, audited."""
    with ctx.db.system_session() as session:
        done = legal.accept(session, ctx.settings, user_id, accepted, version)
        audit(session, tenant_id=None, actor=f"user:{user_id}", action="legal.accepted",
              version=done)  # fmt: skip
        return done
