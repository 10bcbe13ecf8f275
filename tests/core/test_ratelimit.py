"""The API's limiters on the ``limits`` library: in process by default, shared by every
API replica through a real redis-server when ``TCC_REDIS_URL`` is set, and never a failed
request when Redis is down."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pydantic import SecretStr

from core.db import Database
from core.ratelimit import LoginThrottle, SlidingWindow, share_through
from tests.api.light_app import PASSWORD, client, light_app
from tests.conftest import free_port
from tests.gateway.conftest import redis_url  # noqa: F401  (the fixture)


@pytest.fixture
def shared(redis_url: str) -> Iterator[str]:  # noqa: F811
    share_through(redis_url)
    yield redis_url
    share_through(None)


def test_a_window_admits_its_limit_then_says_how_long_to_wait() -> None:
    window = SlidingWindow(limit=3, window_s=60, name="t-basic")
    assert [window.hit("k") for _ in range(3)] == [None, None, None]
    wait = window.hit("k")
    assert wait is not None and 0 < wait <= 60
    assert window.hit("other") is None
    window.reset("k")
    assert window.hit("k") is None


def test_in_process_two_instances_count_apart() -> None:
    """Two apps in one process (tests, the sandbox) keep their own counts."""
    a, b = SlidingWindow(1, 60, name="t-apart"), SlidingWindow(1, 60, name="t-apart")
    assert a.hit("k") is None and b.hit("k") is None
    assert a.hit("k") is not None


def test_replicas_sharing_redis_admit_the_limit_in_total(shared: str) -> None:
    replica_a = SlidingWindow(limit=4, window_s=60, name="t-shared")
    replica_b = SlidingWindow(limit=4, window_s=60, name="t-shared")
    answers = [(replica_a if i % 2 else replica_b).hit("bot-1") for i in range(6)]
    assert answers[:4] == [None] * 4
    assert all(wait is not None and wait > 0 for wait in answers[4:])


def test_login_failures_count_across_replicas(shared: str) -> None:
    a, b = LoginThrottle(per_pair=3), LoginThrottle(per_pair=3)
    for throttle in (a, b, a):
        throttle.failed("192.0.2.7", "victim@example.com")
    assert b.retry_after("192.0.2.7", "victim@example.com") is not None
    assert a.retry_after("192.0.2.8", "victim@example.com") is None  # another address
    b.succeeded("192.0.2.7", "victim@example.com")
    assert a.retry_after("192.0.2.7", "victim@example.com") is None


def test_redis_down_counts_in_process_instead_of_failing() -> None:
    share_through(f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    try:
        window = SlidingWindow(limit=2, window_s=60, name="t-down")
        assert [window.hit("k") for _ in range(3)][:2] == [None, None]
        assert window.hit("k") is not None
    finally:
        share_through(None)


async def test_two_api_replicas_share_the_sign_up_limit(
    tmp_path,
    db: Database,
    redis_url: str,  # noqa: F811
) -> None:
    """Two API processes behind one address: the hourly sign-up limit is the limit, not
    twice it."""
    url = SecretStr(redis_url)
    one = light_app(tmp_path, db, signups_per_hour_per_ip=3, redis_url=url)
    two = light_app(tmp_path, db, signups_per_hour_per_ip=3, redis_url=url)
    try:
        codes = []
        async with client(one, "192.0.2.9") as a, client(two, "192.0.2.9") as b:
            for i in range(5):
                c = a if i % 2 else b
                body = {"email": f"r{i}@example.com", "password": PASSWORD}
                codes.append((await c.post("/auth/signup", json=body)).status_code)
        assert codes[:3] == [201, 201, 201] and codes[3:] == [429, 429], codes
    finally:
        share_through(None)
