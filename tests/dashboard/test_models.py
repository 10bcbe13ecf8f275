"""The dashboard's model picker (bot page and wizard) and its demo-model notice."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

import httpx

from core.model_catalog import CatalogModel
from core.tenants import require_tenant
from tests.dashboard.conftest import new_bot, sign_up
from tests.lifecycle_stack import Stack


def use_catalog(stack: Stack) -> None:
    stack.ctx.settings.upstream_urls = [stack.upstream.base_url]
    stack.ctx.settings.model_catalog = [
        CatalogModel(
            id="house/fast", name="House Fast", input_per_m=Decimal("1"),
            output_per_m=Decimal("2"), plans=("starter",), roles=("default",),
        ),
        CatalogModel(
            id="house/cheap", name="House Cheap", input_per_m=Decimal("0.5"),
            output_per_m=Decimal("1"), plans=("starter",),
        ),
        CatalogModel(id="house/big", input_per_m=Decimal("9"), output_per_m=Decimal("9"),
                     plans=("business",)),
    ]  # fmt: skip


def picked(stack: Stack, tid: str) -> str | None:
    with stack.db.tenant_session(tid) as s:
        return require_tenant(s, tid).model


async def test_without_upstream_the_pages_say_it_is_the_demo_model(
    browsers: Callable[[], httpx.AsyncClient],
) -> None:
    b = await sign_up(browsers)
    tid = await new_bot(b)
    for path in (f"/app/bots/{tid}", f"/app/bots/{tid}/setup/model"):
        text = (await b.client.get(path)).text
        assert 'id="demo-model-notice"' in text and "offline demo model" in text, path


async def test_bot_page_picker_lists_the_plans_models_and_validates(
    browsers: Callable[[], httpx.AsyncClient], process_stack: Stack
) -> None:
    use_catalog(process_stack)
    b = await sign_up(browsers)
    tid = await new_bot(b)
    page = (await b.client.get(f"/app/bots/{tid}")).text
    assert "demo-model-notice" not in page
    assert "House Fast" in page and "House Cheap" in page and "house/big" not in page
    assert '<option value="house/fast" selected>' in page

    refused = await b.post(f"/app/bots/{tid}/model", {"model": "house/big"})
    assert (refused.status_code, refused.headers["location"]) == (
        303,
        f"/app/bots/{tid}#model-outcome",
    )
    shown = (await b.client.get(f"/app/bots/{tid}")).text.split('id="model-outcome"')[1]
    assert "not available on the Starter plan" in shown.split("</p>")[0]
    assert picked(process_stack, tid) is None
    ok = await b.post(f"/app/bots/{tid}/model", {"model": "house/cheap"})
    assert ok.status_code == 303 and picked(process_stack, tid) == "house/cheap"
    page = (await b.client.get(f"/app/bots/{tid}")).text
    assert '<option value="house/cheap" selected>' in page


async def test_wizard_saves_the_managed_model(
    browsers: Callable[[], httpx.AsyncClient], process_stack: Stack
) -> None:
    use_catalog(process_stack)
    b = await sign_up(browsers)
    tid = await new_bot(b)
    form = (await b.client.get(f"/app/bots/{tid}/setup/model")).text
    assert 'name="managed_model"' in form and "House Cheap" in form
    assert 'value="openrouter"' in form and 'value="anthropic"' in form
    bad = await b.post(
        f"/app/bots/{tid}/setup/model", {"mode": "managed", "managed_model": "house/big"}
    )
    assert bad.status_code == 403
    r = await b.post(
        f"/app/bots/{tid}/setup/model", {"mode": "managed", "managed_model": "house/cheap"}
    )
    assert r.status_code == 303 and picked(process_stack, tid) == "house/cheap"
