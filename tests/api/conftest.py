"""An API client over the real app (lifespan run in the test's loop) on a lifecycle stack."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator

import httpx
import pytest

from api.app import create_app
from tests.lifecycle_stack import Stack

Client = httpx.AsyncClient


@pytest.fixture
async def api(process_stack: Stack) -> AsyncIterator[Client]:
    app = create_app(context=process_stack.ctx)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            yield client


async def signup(
    api: Client,
    email: str,
    password: str = "correct horse battery",  # noqa: S107 (a test user's password)
) -> dict[str, str]:
    """Sign up and return auth headers."""
    r = await api.post(
        "/auth/signup", json={"email": email, "password": password, "accept_terms": True}
    )
    assert r.status_code == 201, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


@pytest.fixture
def tokens() -> Iterator[Callable[[], str]]:
    import uuid

    yield lambda: f"{uuid.uuid4().int % 10**9 + 10**8}:AA{uuid.uuid4().hex}{uuid.uuid4().hex[:6]}"
