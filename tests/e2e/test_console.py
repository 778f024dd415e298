"""The operations console in a real browser (Debian's chromium) against the real stack:
sign-in, the live feed (filter, reconnect after the API restarts), a customer's
explanation in both languages, and the standards workflow with an admin and a read key."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Page, expect
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from classifier.auth import INTAKE_SCOPES, create_key
from classifier.config import ClassifierSettings
from tests.e2e.console_stack import ConsoleStack, browser, console_stack, screenshot, sign_in

pytestmark = pytest.mark.e2e


@pytest.fixture
def stack(
    classifier_settings: ClassifierSettings, sessions: object, tmp_path: Path
) -> Iterator[ConsoleStack]:
    with console_stack(classifier_settings, tmp_path) as running:
        yield running


async def keys(sessions: async_sessionmaker[AsyncSession]) -> dict[str, str]:
    _, admin = await create_key(sessions, "console-admin", "admin")
    _, read = await create_key(sessions, "console-read", "read")
    _, shop = await create_key(sessions, "console-shop", INTAKE_SCOPES, rate_per_second=0)
    return {"admin": admin, "read": read, "shop": shop}


async def post_order(
    client: httpx.AsyncClient, stack: ConsoleStack, shop: str, customer: str, n: int, amount: float
) -> None:
    order = {
        "order_id": f"{customer}-{n}",
        "customer_id": customer,
        "amount": amount,
        "currency": "USD",
        "placed_at": (datetime.now(UTC) - timedelta(days=2, minutes=n)).isoformat(),
        "status": "paid",
    }
    answer = await client.post(
        stack.ingest + "/v1/orders", json=order, headers={"Authorization": f"Bearer {shop}"}
    )
    assert answer.status_code == 202, answer.text


async def shown_ids(page: Page) -> list[int]:
    ids = await page.locator("#feed-rows tr").evaluate_all("rs => rs.map(r => r.dataset.id)")
    return [int(i) for i in ids]


async def feed(client: httpx.AsyncClient, stack: ConsoleStack, key: str) -> list[dict[str, Any]]:
    """Every change the feed announced so far, oldest first (read with an API key)."""
    changes: list[dict[str, Any]] = []
    after = 0
    while True:
        page = (
            await client.get(
                stack.api + "/v1/changes",
                params={"after": after, "limit": 1000},
                headers={"Authorization": f"Bearer {key}"},
            )
        ).json()
        changes += page["changes"]
        if not page["changes"]:
            return changes
        after = page["next_cursor"]


async def rows_of(page: Page, customer: str) -> Any:
    return page.locator(f"#feed-rows tr:has(td.customer a:text-is('{customer}'))")


async def test_live_feed_signs_in_filters_and_misses_nothing_across_an_api_restart(
    stack: ConsoleStack, sessions: async_sessionmaker[AsyncSession]
) -> None:
    k = await keys(sessions)
    async with browser() as chromium, httpx.AsyncClient(timeout=10) as client:
        page = await chromium.new_page(viewport={"width": 1280, "height": 800})
        await sign_in(page, stack.api, k["read"])
        cookies = {c["name"]: c for c in await page.context.cookies()}
        session, csrf = cookies["classifier_session"], cookies["classifier_csrf"]
        assert session["httpOnly"]
        assert session["sameSite"] == "Strict"
        assert not csrf["httpOnly"]
        assert csrf["sameSite"] == "Strict"
        await expect(page.locator(".status.live")).to_be_visible()

        # Warm up (the worker joins its consumer group), then one order within 2 s.
        await post_order(client, stack, k["shop"], "warm-up", 1, 10)
        await expect(await rows_of(page, "warm-up")).not_to_have_count(0, timeout=30_000)
        await post_order(client, stack, k["shop"], "feed-1", 1, 42)
        posted = time.monotonic()
        behaviour = page.locator(
            "#feed-rows tr[data-dimension='purchase_behavior']:has(a:text-is('feed-1'))"
        )
        await expect(behaviour).to_have_count(1, timeout=2_000)
        assert time.monotonic() - posted < 2.0
        await expect(behaviour.locator(".to")).to_have_attribute("data-cls", "occasional")
        await expect(behaviour.locator(".from")).to_have_attribute("data-cls", "")
        await expect(behaviour.locator(".to")).to_have_text("偶尔购买者")
        await screenshot(page, "feed")

        # Filter to one dimension: the others disappear.
        await page.select_option("select[name=dimension]", "purchase_behavior")
        rows = page.locator("#feed-rows tr")
        await expect(rows).to_have_count(2)  # warm-up's and feed-1's
        assert set(await rows.evaluate_all("rs => rs.map(r => r.dataset.dimension)")) == {
            "purchase_behavior"
        }
        await page.select_option("select[name=dimension]", "")

        # A stream of orders while the API is down and comes back: afterwards the page
        # holds every change the feed announced, each once, some of them delivered after
        # the reconnect (with Last-Event-ID).
        burst = [f"burst-{n}" for n in range(16)]

        async def stream_orders(customers: list[str]) -> None:
            for customer in customers:
                await post_order(client, stack, k["shop"], customer, 1, 20)
                await asyncio.sleep(0.1)

        streaming = asyncio.create_task(stream_orders(burst[:8]))
        await asyncio.sleep(0.3)
        await asyncio.to_thread(stack.stop_api)
        await streaming
        await expect(page.locator(".status.down")).to_be_visible()
        before = set(await shown_ids(page))
        await stream_orders(burst[8:])  # announced while the API is down
        await asyncio.to_thread(stack.start_api)
        await expect(page.locator(".status.live")).to_be_visible(timeout=10_000)
        deadline = time.monotonic() + 30
        announced: list[dict[str, Any]] = []
        while time.monotonic() < deadline:  # every burst customer's first class announced
            announced = await feed(client, stack, k["admin"])
            firsts = {c["customer_id"] for c in announced if c["dimension"] == "value"}
            if firsts >= set(burst):
                break
            await asyncio.sleep(0.3)
        expected = {c["id"] for c in announced}
        shown: list[int] = []
        while time.monotonic() < deadline:
            shown = await shown_ids(page)
            if set(shown) >= expected:
                break
            await asyncio.sleep(0.3)
        assert len(shown) == len(set(shown)), "a change shown twice"
        assert expected <= set(shown), f"missing after reconnect: {expected - set(shown)}"
        assert set(shown) - before, "nothing arrived after the reconnect"

        # CSRF: a state-changing call with the cookie but without the token is refused.
        jar = {"classifier_session": session["value"], "classifier_csrf": csrf["value"]}
        as_browser = httpx.AsyncClient(timeout=10, cookies=jar)
        refused = await as_browser.delete(stack.api + "/v1/console/session")
        assert refused.status_code == 403
        # Sign-out ends the session server-side: the old cookie is refused.
        await page.click("#sign-out")
        await expect(page.locator("#signin")).to_be_visible()
        gone = await as_browser.get(stack.api + "/v1/changes/head")
        assert gone.status_code == 401
        await as_browser.aclose()


async def test_customer_page_explains_classes_in_both_languages(
    stack: ConsoleStack, sessions: async_sessionmaker[AsyncSession]
) -> None:
    k = await keys(sessions)
    async with browser() as chromium, httpx.AsyncClient(timeout=10) as client:
        for n in (1, 2):
            await post_order(client, stack, k["shop"], "cust-7", n, 600)
        deadline = time.monotonic() + 30
        auth = {"Authorization": f"Bearer {k['read']}"}
        answer: dict[str, Any] = {}
        while time.monotonic() < deadline:
            got = await client.get(stack.api + "/v1/customers/cust-7", headers=auth)
            if got.status_code == 200 and got.json()["aggregates"]["order_count"] == 2:
                answer = got.json()
                break
            await asyncio.sleep(0.2)
        assert answer, "the customer was not classified"

        page = await chromium.new_page(viewport={"width": 1280, "height": 900})
        await sign_in(page, stack.api, k["read"])
        await page.click("#nav a[data-view=customer]")
        await page.fill("#customer-id", "cust-7")
        await page.click("#view-customer button[type=submit]")
        card = page.locator(".class-card[data-dimension=purchase_behavior]")
        await expect(card.locator(".cls")).to_have_text("偶尔购买者")
        await expect(card.locator(".rule")).to_contain_text("bought_within_a_year")
        await expect(card.locator(".why")).to_contain_text("recency_days")
        await expect(card.locator("dl.features")).to_contain_text("recency_days")
        history = await client.get(stack.api + "/v1/customers/cust-7/history", headers=auth)
        periods = len(history.json()["periods"])
        assert periods >= len(answer["classes"])
        await expect(page.locator("#customer-history li")).to_have_count(periods)
        # The "what it takes" line where the API gives it (the `next` field).
        nexts = {d: c["next"] for d, c in answer["classes"].items() if c.get("next")}
        for dim, nxt in nexts.items():
            line = page.locator(f".class-card[data-dimension={dim}] .next")
            await expect(line).to_contain_text(nxt["text"]["zh"])
        await screenshot(page, "customer")

        await page.click("#lang")
        await expect(card.locator(".cls")).to_have_text("Occasional")
        await expect(page.locator("#nav a[data-view=customer]")).to_have_text("Customer")
        for dim, nxt in nexts.items():
            line = page.locator(f".class-card[data-dimension={dim}] .next")
            await expect(line).to_contain_text(nxt["text"]["en"])
        await page.click("#lang")
        await expect(card.locator(".cls")).to_have_text("偶尔购买者")

        # The rendering of `next` itself, from a fixture answer (whether or not the API
        # gives the field yet).
        fixture = {
            **answer["classes"]["purchase_behavior"],
            "next": {
                "class": "regular",
                "change": {"feature": "orders_365d", "more": 2},
                "text": {"en": "2 more orders within 365 days", "zh": "365天内再下2单"},
            },
        }
        rendered = await page.evaluate(
            """async (answer) => {
                const m = await import('/console/customer.js');
                return m.classCard('purchase_behavior', answer).querySelector('.next').textContent;
            }""",
            fixture,
        )
        assert rendered.endswith("365天内再下2单")


async def wait_for_customers(
    client: httpx.AsyncClient, stack: ConsoleStack, key: str, ids: list[str]
) -> None:
    deadline = time.monotonic() + 30
    auth = {"Authorization": f"Bearer {key}"}
    while time.monotonic() < deadline:
        found = await client.post(
            stack.api + "/v1/customers:lookup", json={"ids": ids}, headers=auth
        )
        if found.status_code == 200 and not found.json()["unknown"]:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"{ids} not classified in time")


async def test_standards_draft_preview_activate_roll_back_and_read_keys_cannot(
    stack: ConsoleStack, sessions: async_sessionmaker[AsyncSession]
) -> None:
    k = await keys(sessions)
    customers = [f"std-{n}" for n in range(3)]
    async with browser() as chromium, httpx.AsyncClient(timeout=10) as client:
        for customer in customers:
            await post_order(client, stack, k["shop"], customer, 1, 500)  # value: low
        await wait_for_customers(client, stack, k["read"], customers)

        context = await chromium.new_context(viewport={"width": 1280, "height": 900})
        page = await context.new_page()
        await sign_in(page, stack.api, k["admin"])
        await page.click("#nav a[data-view=overview]")
        bar = page.locator(".overview-card[data-dimension=value] .bar-row[data-cls=low] .num")
        await expect(bar).to_have_text("3")
        await expect(page.locator("#flows")).to_be_visible()
        await screenshot(page, "overview")
        phone_context = await chromium.new_context(
            viewport={"width": 390, "height": 844}, storage_state=await context.storage_state()
        )
        phone = await phone_context.new_page()
        await phone.goto(stack.api + "/console/#/feed")
        await expect(phone.locator(".status.live")).to_be_visible()
        await screenshot(phone, "feed-phone")
        await phone_context.close()

        await page.click("#nav a[data-view=standards]")
        editor = page.locator("#draft-editor")
        await expect(editor).not_to_have_value("")
        source = await editor.input_value()
        broken = source.replace("      - class: occasional\n", "      - class: sometimes\n", 1)
        assert broken != source
        await editor.fill(broken)
        await page.click("#save-draft")
        await page.click("#confirm .ok")
        errors = page.locator("#draft-errors")
        await expect(errors).to_contain_text("dimensions.purchase_behavior.rules[1].class")
        line = broken.split("\n").index("      - class: sometimes") + 1
        await expect(errors.locator(f"li[data-line='{line}']")).to_have_count(1)
        await expect(editor).to_have_attribute("aria-invalid", "true")
        await screenshot(page, "standards-error")

        fixed = source.replace("gte: 1000}", "gte: 100}", 1)  # medium from 100 on
        assert fixed != source
        await editor.fill(fixed)
        await page.click("#save-draft")
        await page.click("#confirm .ok")
        await expect(page.locator("#standards-message")).to_contain_text("v2")
        draft = page.locator("#scheme-versions tr[data-version='2']")
        await draft.locator("button[data-action=preview]").click()
        value = page.locator("#preview tr[data-dimension=value]")
        await expect(value).to_contain_text("低价值客户 → 中价值客户: 3")
        await screenshot(page, "standards-preview")

        await draft.locator("button[data-action=activate]").click()
        await page.click("#confirm .ok")
        await expect(page.locator("#job .job[data-status=succeeded]")).to_be_visible(timeout=30_000)
        await expect(page.locator("#job")).to_contain_text("3 / 3")
        await expect(page.locator("#scheme-versions tr[data-version='2']")).to_have_attribute(
            "data-status", "active"
        )
        await screenshot(page, "standards")

        await page.click("#roll-back")
        await page.click("#confirm .ok")
        await expect(page.locator("#scheme-versions tr[data-version='1']")).to_have_attribute(
            "data-status", "active", timeout=30_000
        )
        await expect(page.locator("#job .job[data-status=succeeded]")).to_be_visible()

        # Another draft, uploaded with the admin key; a read key sees it but cannot act.
        admin = {"Authorization": f"Bearer {k['admin']}", "Content-Type": "application/yaml"}
        uploaded = await client.post(stack.api + "/v1/schemes", content=fixed, headers=admin)
        assert uploaded.status_code == 201, uploaded.text
        version = uploaded.json()["version"]
        reader = await (await chromium.new_context()).new_page()
        await sign_in(reader, stack.api, k["read"])
        await reader.click("#nav a[data-view=standards]")
        row = reader.locator(f"#scheme-versions tr[data-version='{version}']")
        await expect(row.locator("button[data-action=activate]")).to_be_disabled()
        await expect(reader.locator("#save-draft")).to_be_disabled()
        await expect(reader.locator("#roll-back")).to_be_disabled()
        csrf = next(
            c["value"] for c in await reader.context.cookies() if c["name"] == "classifier_csrf"
        )
        refused = await reader.request.post(
            stack.api + f"/v1/schemes/{version}/activate",
            headers={"X-CSRF-Token": csrf, "Content-Type": "application/json"},
            data="{}",
        )
        assert refused.status == 403
        assert "admin" in (await refused.json())["detail"]
        # The admin's actions are in the audit trail under its key.
        trail = await client.get(
            stack.api + "/v1/audit", headers={"Authorization": f"Bearer {k['admin']}"}
        )
        actions = [e["action"] for e in trail.json()["entries"]]
        assert "console.sign_in" in actions
        assert "scheme.upload" in actions
