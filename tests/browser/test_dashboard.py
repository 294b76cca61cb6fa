"""The dashboard in headless Chromium, against the real API, engine and migrated PostgreSQL.

Data goes in through `StatusEngine.apply_batch`, exactly as the consumer applies events, and
the page reads it back through the HTTP API it polls. Screenshots are written to
docs/screenshots/ only with SYNCSTATUS_SCREENSHOTS=1.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from hashlib import sha256
from pathlib import Path

import pytest
import sqlalchemy as sa

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    if os.environ.get("CI"):
        pytest.fail("CI must run the browser tests: `make chromium` did not install chromium")
    pytest.skip(
        "Debian's chromium is not installed (apt-get install chromium)", allow_module_level=True
    )
playwright_api = pytest.importorskip("playwright.sync_api")

import httpx  # noqa: E402
import uvicorn  # noqa: E402
from playwright.sync_api import Browser, Page, expect, sync_playwright  # noqa: E402

from syncstatus.api.app import create_app  # noqa: E402
from syncstatus.bootstrap import Application, _webhook_relay, build  # noqa: E402
from syncstatus.devtools.embedded import free_port  # noqa: E402
from syncstatus.runtime.metrics import Metrics  # noqa: E402
from syncstatus.schemas.messages import EventMessages  # noqa: E402
from syncstatus.service.inbound import Inbound, Origin  # noqa: E402
from syncstatus.settings import Settings  # noqa: E402
from syncstatus.statemachine.connection import Outcome  # noqa: E402
from syncstatus.statemachine.events import (  # noqa: E402
    Account,
    EventType,
    Failure,
    FailureClass,
    SessionEvent,
    Substage,
)
from tests.helpers.factories import event  # noqa: E402
from tests.helpers.webhook_receiver import always, receiving  # noqa: E402

pytestmark = pytest.mark.integration

E = EventType
TOKEN = "t0ken"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
LIVE_TIMEOUT_MS = 8000  # the page polls every 2 s


# ---------------------------------------------------------------------------------------------
# The API on a free port, fed through the real engine


@dataclass
class Feed:
    """Applies events to the engine with strictly increasing occurrence times."""

    application: Application
    apps: dict[str, str] = field(default_factory=dict)
    last: datetime = field(default_factory=lambda: datetime.now(UTC))

    def _at(self) -> datetime:
        self.last = max(datetime.now(UTC), self.last + timedelta(milliseconds=1))
        return self.last

    def apply(
        self,
        connection_id: str,
        session: str,
        *kinds: EventType,
        failure: Failure | None = None,
        **fields,
    ) -> None:
        app = self.apps[connection_id]
        self.application.engine.apply_batch(
            [
                Inbound(
                    replace(
                        event(kind, connection_id, session, at=self._at(), app=app, **fields),
                        failure=failure,
                    )
                )
                for kind in kinds
            ]
        )

    def refuse(
        self, connection_id: str, session: str, kind: EventType, offset: int
    ) -> SessionEvent:
        """An event the auth service sends at the wrong time, as the consumer takes it from
        its topic: with the message it came in, so that it can be redriven."""
        sent = event(
            kind,
            connection_id,
            session,
            at=self._at(),
            app=self.apps[connection_id],
            producer="auth-svc",
        )
        message = Origin(
            "syncstatus.auth",
            0,
            offset,
            connection_id.encode(),
            EventMessages().encode(sent),
            (("trace", b"t-1"),),
        )
        self.application.engine.apply_batch([Inbound(sent, message)])
        return sent

    def authorize(
        self,
        connection_id: str,
        app: str,
        business_account: str,
        business_account_id: str,
        session: str = "s-1",
        credential: str | None = None,
    ) -> None:
        self.apps[connection_id] = app
        self.apply(connection_id, session, E.AUTHORIZATION_STARTED)
        self.apply(
            connection_id,
            session,
            E.AUTHORIZATION_SUCCEEDED,
            attributes={
                "business_account": business_account,
                "business_account_id": business_account_id,
                "credential_id": credential or f"cred-{connection_id}-{session}",
            },
        )

    def accounts(self, connection_id: str, *names: str, session: str = "s-1") -> None:
        listed = tuple(
            Account(f"{connection_id}-acc-{i + 1}", name, "active") for i, name in enumerate(names)
        )
        self.apply(connection_id, session, E.ACCOUNTS_SYNCED, accounts=listed)

    def processing(self, connection_id: str, session: str, substages=tuple(Substage)) -> None:
        self.apply(connection_id, session, E.PROCESSING_STARTED)
        for substage in substages:
            self.apply(connection_id, session, E.PROCESSING_SUBSTAGE_COMPLETED, substage=substage)

    def synced(self, connection_id: str, session: str) -> None:
        self.apply(connection_id, session, E.LOADING_STARTED, E.LOADING_COMPLETED)
        self.apply(connection_id, session, E.STRUCTURING_STARTED, E.STRUCTURING_COMPLETED)
        self.processing(connection_id, session)
        self.apply(connection_id, session, E.PROCESSING_COMPLETED, E.SYNC_COMPLETED)


def seed(feed: Feed) -> None:
    """Eight connections, one per colour and situation a support person meets."""
    feed.authorize("conn-fb", "facebook_ads", "ads@acme.example", "act_1029384756")
    feed.accounts("conn-fb", "Acme Brand", "Acme Retail")
    feed.synced("conn-fb", "s-1")

    # Synced once after a loading error and a retry; the next session is processing now.
    feed.authorize("conn-gads", "google_ads", "marketing@acme.example", "123-456-7890")
    feed.accounts("conn-gads", "Acme Search", "Acme Display", "Acme YouTube")
    feed.apply("conn-gads", "s-1", E.LOADING_STARTED)
    feed.apply(
        "conn-gads", "s-1", E.LOADING_FAILED, error="Google Ads API answered 429: quota exceeded"
    )
    feed.synced("conn-gads", "s-1")
    feed.apply("conn-gads", "s-2", E.LOADING_STARTED, E.LOADING_COMPLETED)
    feed.apply("conn-gads", "s-2", E.STRUCTURING_STARTED, E.STRUCTURING_COMPLETED)
    feed.processing("conn-gads", "s-2", (Substage.MONITORING, Substage.FORECASTING))

    feed.authorize("conn-hub", "hubspot", "crm@acme.example", "hub-7781")
    feed.accounts("conn-hub", "Acme CRM")
    feed.apply(
        "conn-hub",
        "s-1",
        E.DEAUTHORIZED,
        error="Refresh token expired: the HubSpot password was changed",
    )

    feed.authorize("conn-plaid", "plaid", "finance@acme.example", "item-5f3a9c")
    feed.accounts("conn-plaid", "Checking ••4821")
    feed.apply("conn-plaid", "s-1", E.WEBHOOK_PENDING)

    feed.authorize("conn-li", "linkedin_ads", "social@acme.example", "urn:li:sponsoredAccount:508")

    feed.authorize("conn-sf", "salesforce", "ops@acme.example", "00D5g000004XyZ")
    feed.accounts("conn-sf", "Acme Production")
    feed.synced("conn-sf", "s-1")
    feed.apply("conn-sf", "s-1", E.DISCONNECTED)

    feed.authorize("conn-tt", "tiktok_ads", "growth@acme.example", "7301928374650")
    feed.accounts("conn-tt", "Acme TikTok")
    feed.apply("conn-tt", "s-1", E.LOADING_STARTED, E.LOADING_COMPLETED, E.STRUCTURING_STARTED)
    feed.apply(
        "conn-tt",
        "s-1",
        E.STRUCTURING_FAILED,
        error="Unexpected column 'video_views_p75' in the report",
    )

    feed.apps["conn-bing"] = "bing_ads"
    feed.apply("conn-bing", "s-1", E.AUTHORIZATION_STARTED)


ALL_SOURCES = [
    "facebook_ads",
    "google_ads",
    "hubspot",
    "plaid",
    "linkedin_ads",
    "salesforce",
    "tiktok_ads",
    "bing_ads",
]


@dataclass
class Dashboard:
    url: str
    application: Application
    feed: Feed

    def commands(self) -> list[tuple[str, str]]:
        with self.application.database.connect() as connection:
            return [
                tuple(row)
                for row in connection.execute(
                    sa.text("SELECT connection_id, command FROM commands ORDER BY requested_at")
                )
            ]


@pytest.fixture
def dashboard(
    request: pytest.FixtureRequest, db_engine: sa.Engine, database_url: str
) -> Iterator[Dashboard]:
    """Reads are public unless a test parametrizes this fixture with False."""
    settings = Settings(
        database_url=database_url,
        api_token=TOKEN,
        api_tokens=f"globex:operate:{sha256(GLOBEX_TOKEN.encode()).hexdigest()}:globex",
        api_port=free_port(),
        api_public_reads=getattr(request, "param", True),
        # Webhooks to a loopback receiver, retried within a second: for the tests that start
        # the relay (webhook_relay), since `syncstatus run`'s loops do not run here.
        webhook_allow_http_loopback=True,
        webhook_retry_initial_s=0.05,
        webhook_retry_max_s=0.2,
        webhook_retry_period_s=1,
        relay_idle_s=0.05,
    )
    application = build(settings)
    config = uvicorn.Config(
        create_app(application),
        host="127.0.0.1",
        port=settings.api_port,
        log_level="warning",
        lifespan="off",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="api", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the API did not start"
        time.sleep(0.02)
    feed = Feed(application)
    seed(feed)
    try:
        yield Dashboard(f"http://127.0.0.1:{settings.api_port}", application, feed)
    finally:
        server.should_exit = True
        thread.join(10)
        application.close()


# ---------------------------------------------------------------------------------------------
# Chromium


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser, dashboard: Dashboard) -> Iterator[Page]:
    context = browser.new_context(
        viewport={"width": 1440, "height": 900}, locale="en-US", timezone_id="UTC"
    )
    context.set_default_timeout(10_000)
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.on(
        "console",
        lambda message: (
            problems.append(f"console {message.type}: {message.text}")
            if message.type == "error" and "status of 40" not in message.text
            else None
        ),
    )
    # Anything but the API itself (a CDN, a font) would fail at test time: refuse it now.
    page.route(
        lambda url: not url.startswith(dashboard.url),
        lambda route: (problems.append(f"external request: {route.request.url}"), route.abort()),
    )
    yield page
    context.close()
    assert problems == []


def screenshot(page: Page, name: str) -> None:
    if os.environ.get("SYNCSTATUS_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / name), full_page=True)


def rows(page: Page):
    return page.get_by_test_id("connection-row")


def row(page: Page, connection_id: str):
    return page.locator(f'[data-testid="connection-row"][data-connection-id="{connection_id}"]')


def sources(page: Page):
    """The Data source cells, in order; expect(...).to_have_text([...]) waits for a refresh."""
    return rows(page).get_by_test_id("source-id")


def set_token(page: Page, token: str = TOKEN) -> None:
    page.get_by_test_id("token-input").fill(token)
    expect(page.get_by_test_id("token-state")).to_have_text("saved")


def open_connection(page: Page, dashboard: Dashboard, connection_id: str, tab: str = "") -> None:
    page.goto(f"{dashboard.url}/#/connections/{connection_id}{f'?tab={tab}' if tab else ''}")
    expect(page.get_by_test_id("connection-title")).to_be_visible()


# ---------------------------------------------------------------------------------------------
# Tests


def test_the_list_shows_every_column_of_the_connected_sources(page: Page, dashboard: Dashboard):
    page.goto(dashboard.url)
    expect(rows(page)).to_have_count(len(ALL_SOURCES))
    expect(page.get_by_test_id("total-count")).to_have_text("8 connections")
    # Newest first by default.
    expect(sources(page)).to_have_text(ALL_SOURCES[::-1])

    fb = row(page, "conn-fb")
    expect(fb.get_by_test_id("cell-business-account")).to_have_text("ads@acme.example")
    expect(fb.get_by_test_id("cell-credentials")).to_have_text("Active")
    expect(fb.get_by_test_id("cell-account-status")).to_have_text("2 accounts")
    expect(fb.get_by_test_id("cell-business-account-id")).to_have_text("act_1029384756")
    expect(fb.get_by_test_id("sync-status")).to_have_text("Synced")
    expect(fb.get_by_test_id("sync-status")).to_have_attribute("data-tone", "synced")
    expect(fb.get_by_test_id("sync-status-stage")).to_contain_text("end")
    expect(fb.get_by_test_id("action-extract")).to_be_enabled()

    tones = {
        "conn-gads": ("Processing", "progress"),
        "conn-hub": ("Deauthorized", "ended"),
        "conn-plaid": ("Waiting For Webhook", "progress"),
        "conn-sf": ("Disconnected", "ended"),
        "conn-tt": ("Structuring Error", "error"),
        "conn-bing": ("Authorization", "progress"),
    }
    for connection_id, (name, tone) in tones.items():
        status = row(page, connection_id).get_by_test_id("sync-status")
        expect(status).to_have_text(name)
        expect(status).to_have_attribute("data-tone", tone)

    bing = row(page, "conn-bing")
    expect(bing.get_by_test_id("cell-account-status")).to_have_text("Loading accounts")
    expect(bing.get_by_test_id("cell-last-authorization")).to_have_text("—")
    expect(row(page, "conn-li").get_by_test_id("cell-account-status")).to_have_text("No accounts")

    # Credentials in error: the "+" shows the errors, and hides them again.
    hub = row(page, "conn-hub")
    expect(hub.get_by_test_id("cell-credentials")).to_contain_text("Error")
    detail = page.locator('[data-testid="errors-row"][data-connection-id="conn-hub"]')
    expect(detail).to_be_hidden()
    hub.get_by_test_id("errors-toggle").click()
    expect(detail).to_be_visible()
    expect(detail).to_contain_text("Refresh token expired: the HubSpot password was changed")
    expect(hub.get_by_test_id("errors-toggle")).to_have_attribute("aria-expanded", "true")
    screenshot(page, "connections.png")
    hub.get_by_test_id("errors-toggle").click()
    expect(detail).to_be_hidden()


def test_each_row_and_connection_page_show_the_source_sync_and_the_plan_refresh(
    page: Page, dashboard: Dashboard
):
    page.goto(dashboard.url)
    fb, tt, bing = (row(page, c) for c in ("conn-fb", "conn-tt", "conn-bing"))
    expect(fb.get_by_test_id("source-sync-state")).to_have_text("Success")
    expect(fb.get_by_test_id("data-refresh-state")).to_have_text("Success")
    expect(fb.get_by_test_id("data-refresh-started")).to_have_attribute("datetime", re.compile("."))
    expect(tt.get_by_test_id("source-sync-state")).to_have_text("Error")
    expect(tt.get_by_test_id("source-sync-state")).to_have_attribute("data-tone", "error")
    expect(tt.get_by_test_id("data-refresh")).to_have_text("—")
    expect(bing.get_by_test_id("source-sync")).to_have_text("—")
    expect(row(page, "conn-gads").get_by_test_id("data-refresh-state")).to_have_text("In progress")

    # The "+" of an error status shows its reason, once, under the part it belongs to.
    errors = page.locator('[data-testid="errors-row"][data-connection-id="conn-tt"]')
    tt.get_by_test_id("errors-toggle").click()
    expect(errors.get_by_test_id("source-sync-error")).to_contain_text(
        "Unexpected column 'video_views_p75' in the report"
    )
    expect(errors.get_by_test_id("status-error")).to_have_count(0)

    open_connection(page, dashboard, "conn-tt")
    expect(page.get_by_test_id("connection-source-sync-state")).to_have_text("Error")
    expect(page.get_by_test_id("connection-source-sync-started")).to_have_attribute(
        "datetime", re.compile(".")
    )
    expect(page.get_by_test_id("connection-data-refresh")).to_have_text("—")
    expect(page.get_by_test_id("source-sync-error")).to_contain_text("video_views_p75")

    # A retry is in progress again, live.
    dashboard.feed.apply("conn-tt", "s-1", E.STRUCTURING_STARTED)
    expect(page.get_by_test_id("connection-source-sync-state")).to_have_text(
        "In progress", timeout=LIVE_TIMEOUT_MS
    )


def test_search_sort_and_pages_survive_the_live_refresh(page: Page, dashboard: Dashboard):
    page.goto(dashboard.url)
    expect(rows(page)).to_have_count(8)

    page.get_by_test_id("search-input").fill("_ads")
    expect(sources(page)).to_have_text(
        ["bing_ads", "tiktok_ads", "linkedin_ads", "google_ads", "facebook_ads"]
    )
    assert "q=_ads" in page.url
    page.get_by_test_id("search-input").fill("Tiktok Ads")
    expect(sources(page)).to_have_text(["tiktok_ads"])
    page.get_by_test_id("search-input").fill("no such source")
    expect(page.get_by_test_id("empty")).to_contain_text("No connection matches")
    page.get_by_test_id("search-input").fill("")
    expect(rows(page)).to_have_count(8)

    page.get_by_test_id("sort-data_source").click()
    expect(page.get_by_test_id("col-data_source")).to_have_attribute("aria-sort", "ascending")
    expect(sources(page)).to_have_text(sorted(ALL_SOURCES))
    page.get_by_test_id("sort-data_source").click()
    expect(page.get_by_test_id("col-data_source")).to_have_attribute("aria-sort", "descending")
    expect(sources(page)).to_have_text(sorted(ALL_SOURCES, reverse=True))

    # Account status sorts Loading accounts, then Error, then by the number of accounts.
    page.get_by_test_id("sort-account_status").click()
    expect(page.get_by_test_id("col-account_status")).to_have_attribute("aria-sort", "ascending")
    page.get_by_test_id("sort-account_status").click()
    expect(page.get_by_test_id("col-account_status")).to_have_attribute("aria-sort", "descending")
    expect(sources(page)).to_have_text(
        [
            "google_ads",
            "facebook_ads",
            "hubspot",
            "plaid",
            "salesforce",
            "tiktok_ads",
            "linkedin_ads",
            "bing_ads",
        ]
    )

    # Neither Status nor Sync status nor Actions can be sorted.
    for column in ("col-status", "col-sync-status", "col-actions"):
        expect(page.get_by_test_id(column).locator("button")).to_have_count(0)

    # Searched ("s" leaves plaid and finance@ out), three a page, by business account a-z.
    page.goto(f"{dashboard.url}/#/?sort=business_account&order=asc&size=3&q=s")
    expect(page.get_by_test_id("page-info")).to_have_text("Page 1 of 3")
    expect(page.get_by_test_id("page-range")).to_have_text("1–3 of 7")
    page.get_by_test_id("page-next").click()
    expect(page.get_by_test_id("page-info")).to_have_text("Page 2 of 3")
    accounts = rows(page).get_by_test_id("cell-business-account")
    second_page = ["marketing@acme.example", "ops@acme.example", "social@acme.example"]
    expect(accounts).to_have_text(second_page)

    # A status change arrives; the search, sort and page stay as they were.
    dashboard.feed.apply("conn-gads", "s-2", E.PROCESSING_FAILED, error="forecast model failed")
    status = row(page, "conn-gads").get_by_test_id("sync-status")
    expect(status).to_have_text("Processing error", timeout=LIVE_TIMEOUT_MS)
    expect(page.get_by_test_id("page-info")).to_have_text("Page 2 of 3")
    expect(page.get_by_test_id("search-input")).to_have_value("s")
    expect(page.get_by_test_id("col-business_account")).to_have_attribute("aria-sort", "ascending")
    expect(accounts).to_have_text(second_page)
    assert "page=2" in page.url and "q=s" in page.url


def test_a_connection_page_follows_its_status_live(page: Page, dashboard: Dashboard):
    page.goto(dashboard.url)
    row(page, "conn-gads").get_by_role("link", name="google_ads").click()
    expect(page).to_have_url(f"{dashboard.url}/#/connections/conn-gads")
    expect(page.get_by_test_id("connection-title")).to_have_text("Google Ads")
    expect(page.get_by_test_id("connection-business-account")).to_contain_text(
        "marketing@acme.example"
    )
    expect(page.get_by_test_id("connection-credentials")).to_have_text("Active")
    expect(page.get_by_test_id("connection-accounts-count")).to_have_text("3")
    expect(page.get_by_test_id("connection-can-extract")).to_have_attribute(
        "data-can-extract", "true"
    )
    expect(page.get_by_test_id("sync-refresh")).to_be_enabled()
    expect(page.get_by_test_id("reconnect")).to_be_enabled()

    # Accounts tab.
    expect(page.get_by_test_id("tab-accounts")).to_have_attribute("aria-selected", "true")
    expect(page.get_by_test_id("account-name")).to_have_text(
        ["Acme Display", "Acme Search", "Acme YouTube"]
    )
    expect(page.get_by_test_id("sync-accounts")).to_be_enabled()

    # Credentials tab.
    page.get_by_test_id("tab-credentials").click()
    expect(page.get_by_test_id("credential-row")).to_have_count(1)
    expect(page.get_by_test_id("credential-row")).to_have_attribute("data-role", "main")

    # History: two sessions, newest first; the first has the loading error and its retry.
    page.get_by_test_id("tab-history").click()
    groups = page.get_by_test_id("session-group")
    expect(groups).to_have_count(2)
    expect(groups.nth(0)).to_have_attribute("data-session-id", "s-2")
    first = groups.nth(1)
    expect(first.get_by_test_id("session-status")).to_have_text("Synced")
    expect(first.get_by_test_id("history-error")).to_have_text(
        "Google Ads API answered 429: quota exceeded"
    )
    expect(first.locator('[data-kind="activity"]')).to_have_count(1)
    expect(groups.nth(0).get_by_test_id("session-duration")).to_have_text("in progress")
    expect(page.get_by_test_id("connection-status")).to_have_text("Processing")
    screenshot(page, "connection.png")

    # The pipeline moves on while the page is open.
    for substage in (Substage.INSIGHTS, Substage.BENCHMARKING, Substage.HISTORICAL_DATA_CLEANING):
        dashboard.feed.apply("conn-gads", "s-2", E.PROCESSING_SUBSTAGE_COMPLETED, substage=substage)
    dashboard.feed.apply("conn-gads", "s-2", E.PROCESSING_COMPLETED)
    status = page.get_by_test_id("connection-status")
    expect(status).to_have_text("Processed", timeout=LIVE_TIMEOUT_MS)
    expect(status).to_have_attribute("data-tone", "progress")
    dashboard.feed.apply("conn-gads", "s-2", E.SYNC_COMPLETED)
    expect(status).to_have_text("Synced", timeout=LIVE_TIMEOUT_MS)
    expect(status).to_have_attribute("data-tone", "synced")
    newest = page.get_by_test_id("session-group").nth(0)
    expect(newest.locator('[data-kind="status_change"]').last).to_have_attribute(
        "data-to", "Synced"
    )
    expect(newest.get_by_test_id("session-duration")).not_to_have_text("in progress")
    expect(page.get_by_test_id("tab-history")).to_have_attribute("aria-selected", "true")

    # Back to the list: its search and sort state come back with it.
    page.get_by_test_id("back-link").click()
    expect(row(page, "conn-gads").get_by_test_id("sync-status")).to_have_text("Synced")


def test_writes_need_the_token_and_report_what_the_api_says(page: Page, dashboard: Dashboard):
    open_connection(page, dashboard, "conn-fb")
    page.get_by_test_id("reconnect").click()
    message = page.get_by_test_id("message")
    expect(message).to_have_attribute("data-kind", "error")
    expect(message).to_contain_text("a bearer token is required")

    set_token(page, "wrong")
    page.get_by_test_id("reconnect").click()
    expect(message).to_contain_text("the bearer token is not valid")

    set_token(page)
    page.get_by_test_id("reconnect").click()
    expect(message).to_have_attribute("data-kind", "success")
    expect(message).to_contain_text("Re-connect requested for Facebook Ads")
    page.get_by_test_id("sync-refresh").click()
    expect(message).to_contain_text("Sync and Refresh requested for Facebook Ads")
    assert dashboard.commands() == [("conn-fb", "RECONNECT"), ("conn-fb", "SYNC_AND_REFRESH")]

    # The token outlives a reload (localStorage).
    page.reload()
    expect(page.get_by_test_id("token-input")).to_have_value(TOKEN)

    page.get_by_test_id("tab-settings").click()
    page.get_by_test_id("frequency-select").select_option("60")
    page.get_by_test_id("frequency-save").click()
    expect(message).to_contain_text("Facebook Ads will sync every hour")
    expect(page.get_by_test_id("frequency-current")).to_contain_text("every hour")


def test_sync_is_refused_for_a_connection_without_accounts(page: Page, dashboard: Dashboard):
    page.goto(dashboard.url)
    set_token(page)
    extract = row(page, "conn-li").get_by_test_id("action-extract")
    expect(extract).to_be_disabled()
    expect(row(page, "conn-li").get_by_test_id("action-extract-wrapper")).to_have_attribute(
        "title", "No account is connected: sync accounts first"
    )
    expect(row(page, "conn-li").get_by_test_id("action-reconnect")).to_be_enabled()

    open_connection(page, dashboard, "conn-li")
    sync = page.get_by_test_id("sync-refresh")
    expect(sync).to_be_disabled()
    expect(sync).to_have_attribute("title", "No account is connected: sync accounts first")
    expect(page.get_by_test_id("connection-can-extract")).to_contain_text("sync accounts first")
    expect(page.get_by_test_id("reconnect")).to_be_enabled()
    expect(page.get_by_test_id("empty")).to_contain_text("No account is connected")

    # Forced past the disabled button, the API refuses it and the page says why.
    sync.evaluate("button => { button.disabled = false; button.click(); }")
    message = page.get_by_test_id("message")
    expect(message).to_have_attribute("data-kind", "refused")
    expect(message).to_contain_text("no account is connected: sync accounts first")
    expect(sync).to_be_disabled()
    assert dashboard.commands() == []

    # Once accounts are synced, the button comes alive by itself.
    dashboard.feed.accounts("conn-li", "Acme Sponsored")
    expect(sync).to_be_enabled(timeout=LIVE_TIMEOUT_MS)
    expect(page.get_by_test_id("connection-accounts-count")).to_have_text("1")


def test_delete_asks_first_then_the_connection_leaves_the_list(page: Page, dashboard: Dashboard):
    page.goto(dashboard.url)
    set_token(page)
    dialog = page.get_by_test_id("confirm-dialog")

    # From the list: cancelled, nothing happens.
    row(page, "conn-hub").get_by_test_id("action-delete").click()
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("Hubspot")
    expect(dialog).to_contain_text("stops data extraction for it immediately")
    expect(dialog).to_contain_text("This cannot be undone.")
    page.get_by_test_id("confirm-cancel").click()
    expect(dialog).to_be_hidden()
    expect(row(page, "conn-hub")).to_have_count(1)
    assert dashboard.commands() == []

    # From the list: confirmed.
    row(page, "conn-hub").get_by_test_id("action-delete").click()
    page.get_by_test_id("confirm-ok").click()
    expect(page.get_by_test_id("message")).to_contain_text("Hubspot (crm@acme.example) was deleted")
    expect(row(page, "conn-hub")).to_have_count(0)
    expect(page.get_by_test_id("total-count")).to_have_text("7 connections")

    # From the connection page: confirmed, back to the list without it.
    open_connection(page, dashboard, "conn-tt")
    page.get_by_test_id("delete").click()
    expect(dialog).to_be_visible()
    page.get_by_test_id("confirm-ok").click()
    expect(page.get_by_test_id("connections-table")).to_be_visible()
    expect(rows(page)).to_have_count(6)
    expect(row(page, "conn-tt")).to_have_count(0)
    assert dashboard.commands() == [("conn-hub", "DELETE"), ("conn-tt", "DELETE")]

    # Its history stays reachable, read-only, from the message.
    page.get_by_test_id("deleted-history-link").click()
    gone = page.get_by_test_id("connection-gone")
    expect(gone).to_contain_text("Deleted connection")
    expect(gone).to_have_attribute("data-history-kept", "true")
    expect(page.get_by_test_id("tab-accounts")).to_be_hidden()
    history = page.get_by_test_id("history").get_by_test_id("history-to")
    expect(history.first).to_be_visible()
    expect(history.last).to_contain_text("Disconnected")
    expect(page.get_by_test_id("history")).to_contain_text("Structuring Error")
    expect(page.get_by_test_id("history")).to_contain_text("Unexpected column 'video_views_p75'")
    expect(page.get_by_test_id("sync-refresh")).to_have_count(0)
    expect(page.get_by_test_id("delete")).to_have_count(0)

    # A connection never seen has no history to show.
    page.goto(f"{dashboard.url}/#/connections/conn-never")
    expect(page.get_by_test_id("connection-gone")).to_contain_text("Connection not found")
    expect(page.get_by_test_id("connection-gone")).to_have_attribute("data-history-kept", "false")


def test_the_plus_row_opens_a_loading_error_with_its_reason_and_class(
    page: Page, dashboard: Dashboard
):
    dashboard.feed.apply("conn-fb", "s-2", E.LOADING_STARTED)
    dashboard.feed.apply(
        "conn-fb",
        "s-2",
        E.LOADING_FAILED,
        error="Facebook answered 613: calls to this API have exceeded the rate limit",
        failure=Failure(FailureClass.RATE_LIMIT, retryable=True, code="613"),
    )
    page.goto(dashboard.url)
    fb = row(page, "conn-fb")
    expect(fb.get_by_test_id("sync-status")).to_contain_text("Loading Error")
    errors = page.locator('[data-testid="errors-row"][data-connection-id="conn-fb"]')
    expect(errors).to_be_hidden()
    fb.get_by_test_id("errors-toggle").click()
    expect(errors).to_be_visible()
    box = errors.get_by_test_id("source-sync-error")
    expect(box).to_contain_text("exceeded the rate limit")
    expect(box.get_by_test_id("source-sync-error-class")).to_have_text("rate limit")
    # The status's error is the run's: said once, not twice.
    expect(errors.get_by_test_id("status-error")).to_have_count(0)
    screenshot(page, "loading-error.png")


def test_a_sync_refused_while_one_runs_says_why_and_may_be_forced(page: Page, dashboard: Dashboard):
    open_connection(page, dashboard, "conn-gads")
    set_token(page)
    page.get_by_test_id("sync-refresh").click()
    message = page.get_by_test_id("message")
    expect(message).to_have_attribute("data-kind", "refused")
    expect(message).to_contain_text("a sync is in progress")
    assert dashboard.commands() == []
    message.get_by_test_id("sync-force").click()
    expect(message).to_have_attribute("data-kind", "success")
    expect(message).to_contain_text("Sync and Refresh requested for Google Ads")
    assert dashboard.commands() == [("conn-gads", "SYNC_AND_REFRESH")]


def test_why_this_status_says_what_can_move_the_connection(page: Page, dashboard: Dashboard):
    dashboard.feed.apply("conn-gads", "s-2", E.SYNC_COMPLETED)  # early: parked
    dashboard.feed.apply("conn-gads", "s-2", E.AUTHORIZATION_SUCCEEDED)  # refused
    open_connection(page, dashboard, "conn-gads", tab="why")
    explain = page.get_by_test_id("explain")
    expect(explain.get_by_test_id("explain-status")).to_contain_text("Processing")
    waiting = explain.get_by_test_id("explain-waiting-item")
    expect(waiting.first).to_be_visible()
    expect(explain.get_by_test_id("explain-waiting")).to_contain_text(
        "Processing substage completed"
    )
    expect(explain.get_by_test_id("explain-waiting")).to_contain_text("last sent by tests")
    expect(explain.get_by_test_id("explain-substage")).to_have_count(len(Substage) - 2)
    expect(explain.get_by_test_id("explain-deadline-item")).to_contain_text("Stage timed out")
    parked = explain.get_by_test_id("explain-parked-item")
    expect(parked).to_have_count(1)
    expect(parked).to_contain_text("Sync completed")
    refusal = explain.get_by_test_id("explain-refusal")
    expect(refusal).to_have_count(1)
    expect(refusal).to_contain_text("Authorization succeeded")
    expect(explain.get_by_test_id("explain-extraction-item")).to_have_text("Possible now.")
    screenshot(page, "why-this-status.png")


def test_the_list_and_page_name_each_source_as_people_write_it(page: Page, dashboard: Dashboard):
    page.goto(dashboard.url)
    fb = row(page, "conn-fb")
    expect(fb.get_by_test_id("source-name")).to_have_text("Facebook Ads")
    expect(fb.get_by_test_id("source-id")).to_have_text("facebook_ads")
    page.get_by_test_id("search-input").fill("tiktok ads")
    expect(sources(page)).to_have_text(["tiktok_ads"])
    open_connection(page, dashboard, "conn-li")
    expect(page.get_by_test_id("connection-title")).to_have_text("Linkedin Ads")
    expect(page.get_by_test_id("connection-source-id")).to_have_text("linkedin_ads")


@pytest.mark.parametrize("dashboard", [False], indirect=True)
def test_with_private_reads_the_dashboard_asks_for_a_token_once(page: Page, dashboard: Dashboard):
    page.goto(dashboard.url)
    message = page.get_by_test_id("message")
    expect(message).to_contain_text("needs an API token to read connections")
    expect(page.get_by_test_id("token-input")).to_be_focused()
    expect(rows(page)).to_have_count(0)
    set_token(page)
    expect(rows(page)).to_have_count(len(ALL_SOURCES))
    expect(message).to_have_count(0)
    # Kept for the browser session: a reload reads at once, without asking again.
    page.reload()
    expect(rows(page)).to_have_count(len(ALL_SOURCES))
    expect(page.get_by_test_id("token-state")).to_have_text("saved")
    expect(page.get_by_test_id("message")).to_have_count(0)


def redriven_by(dashboard: Dashboard) -> list[tuple[str, str | None]]:
    with dashboard.application.database.connect() as connection:
        return [
            tuple(row)
            for row in connection.execute(
                sa.text("SELECT connection_id, redriven_by FROM dead_letters ORDER BY id")
            )
        ]


def test_dead_letters_are_listed_explained_and_redriven(page: Page, dashboard: Dashboard):
    feed = dashboard.feed
    revoked = feed.refuse("conn-sf", "revocation", E.DEAUTHORIZED, offset=7)  # from Disconnected
    feed.refuse("conn-plaid", "s-1", E.AUTHORIZATION_SUCCEEDED, offset=8)
    page.goto(f"{dashboard.url}/#/dead-letters")
    set_token(page)
    letters = page.get_by_test_id("dead-letter-row")
    expect(letters).to_have_count(2)
    expect(page.get_by_test_id("dead-letters-count")).to_have_text("2 dead letters")
    score = page.get_by_test_id("score-row")
    expect(score.first).to_contain_text("auth-svc")
    expect(page.get_by_test_id("score-count")).to_have_text(["2"])

    page.get_by_test_id("filter-connection_id").fill("conn-sf")
    expect(letters).to_have_count(1)
    expect(page).to_have_url(re.compile(r"#/dead-letters\?connection_id=conn-sf$"))
    letters.get_by_test_id("dead-letter-toggle").click()
    detail = page.get_by_test_id("dead-letter-detail")
    expect(detail.get_by_test_id("dead-letter-origin")).to_have_text(
        "syncstatus.auth · partition 0 · offset 7"
    )
    expect(detail).to_contain_text("trace: t-1")
    expect(detail.get_by_test_id("dead-letter-event")).to_contain_text('"type": "DEAUTHORIZED"')

    detail.get_by_test_id("dry-run").click()
    verdict = detail.get_by_test_id("verdict")
    expect(verdict).to_have_attribute("data-outcome", "refused")
    expect(verdict).to_contain_text("Would be refused again: illegal_transition")

    # The re-authorization that came before the revocation, delivered late.
    late = event(
        E.AUTHORIZATION_STARTED,
        "conn-sf",
        "s-2",
        at=revoked.occurred_at - timedelta(milliseconds=1),
        app="salesforce",
    )
    result = dashboard.application.engine.apply_batch([Inbound(late)])
    assert result.outcomes == [Outcome.APPLIED], result
    detail.get_by_test_id("dry-run").click()
    expect(verdict).to_have_attribute("data-outcome", "applied")
    expect(verdict).to_have_text("Would apply: Authorization → Deauthorized")
    assert redriven_by(dashboard) == [("conn-sf", None), ("conn-plaid", None)], (
        "a dry run keeps nothing"
    )

    detail.get_by_test_id("redrive").click()
    expect(page.get_by_test_id("message")).to_contain_text("queued to go through its input topic")
    expect(letters.get_by_test_id("dead-letter-redriven")).to_contain_text("by default")
    expect(detail).to_contain_text("default, ")
    assert redriven_by(dashboard) == [("conn-sf", "default"), ("conn-plaid", None)]
    screenshot(page, "dead-letters.png")


def test_a_connection_page_shows_what_was_refused_of_it(page: Page, dashboard: Dashboard):
    dashboard.feed.refuse("conn-sf", "revocation", E.DEAUTHORIZED, offset=7)
    dashboard.feed.refuse("conn-plaid", "s-1", E.AUTHORIZATION_SUCCEEDED, offset=8)
    open_connection(page, dashboard, "conn-sf", tab="refused")
    letters = page.get_by_test_id("dead-letter-row")
    expect(letters).to_have_count(1)
    expect(letters.get_by_test_id("dead-letter-reason")).to_contain_text("illegal_transition")
    expect(letters.get_by_test_id("dead-letter-producer")).to_have_text("auth-svc")
    page.get_by_role("link", name="Open in Dead letters").click()
    expect(page.get_by_test_id("nav-dead-letters")).to_have_attribute("aria-current", "page")
    expect(page.get_by_test_id("dead-letter-row")).to_have_count(1)


GLOBEX_TOKEN = "globex-t0ken"


def globex(feed: Feed) -> None:
    """Two connections of another customer's workspace."""
    for connection_id, app in (("conn-gx-pin", "pinterest_ads"), ("conn-gx-snap", "snapchat_ads")):
        feed.apps[connection_id] = app
        feed.apply(connection_id, "s-1", E.AUTHORIZATION_STARTED, workspace_id="globex")


def test_the_workspace_picker_lists_one_workspace_at_a_time(page: Page, dashboard: Dashboard):
    globex(dashboard.feed)
    page.goto(dashboard.url)
    picker = page.get_by_test_id("workspace-select")
    expect(picker.locator("option")).to_have_text(
        ["All workspaces", f"default ({len(ALL_SOURCES)})", "globex (2)"]
    )
    expect(rows(page)).to_have_count(len(ALL_SOURCES) + 2)
    picker.select_option("globex")
    expect(sources(page)).to_have_text(["snapchat_ads", "pinterest_ads"])
    expect(page).to_have_url(re.compile(r"#/\?ws=globex$"))
    row(page, "conn-gx-pin").get_by_role("link").click()
    expect(page.get_by_test_id("connection-workspace")).to_have_text("globex")
    page.get_by_test_id("back-link").click()
    expect(sources(page)).to_have_text(["snapchat_ads", "pinterest_ads"])
    picker.select_option("")
    expect(rows(page)).to_have_count(len(ALL_SOURCES) + 2)


@pytest.mark.parametrize("dashboard", [False], indirect=True)
def test_a_token_scoped_to_a_workspace_sees_that_workspace_alone(page: Page, dashboard: Dashboard):
    globex(dashboard.feed)
    page.goto(dashboard.url)
    set_token(page, GLOBEX_TOKEN)
    picker = page.get_by_test_id("workspace-select")
    expect(picker.locator("option")).to_have_text(["globex (2)"])
    expect(picker).to_be_disabled()
    expect(sources(page)).to_have_text(["snapchat_ads", "pinterest_ads"])
    open_connection(page, dashboard, "conn-fb")
    expect(page.get_by_test_id("connection-gone")).to_contain_text("Connection not found")


@pytest.mark.parametrize("dashboard", [False], indirect=True)
def test_status_changes_arrive_on_the_change_feed_with_the_token(page: Page, dashboard: Dashboard):
    streams: list[str | None] = []
    page.on(
        "request",
        lambda r: (
            streams.append(r.headers.get("authorization"))
            if r.url.endswith("/changes/stream")
            else None
        ),
    )
    page.goto(dashboard.url)
    set_token(page)
    open_connection(page, dashboard, "conn-plaid")
    expect(page.locator("body")).to_have_attribute("data-stream", "up")
    assert f"Bearer {TOKEN}" in streams
    dashboard.feed.apply("conn-plaid", "s-1", E.WEBHOOK_RECEIVED)
    expect(page.get_by_test_id("connection-status")).not_to_contain_text("Waiting")


# ---------------------------------------------------------------------------------------------
# Webhooks

ADMIN = {"Authorization": f"Bearer {TOKEN}"}


@contextmanager
def webhook_relay(application: Application) -> Iterator[None]:
    """The webhook relay loop of `syncstatus run`, alone: what makes the delivery log."""
    loop = _webhook_relay(application, Metrics())
    stop = threading.Event()
    thread = threading.Thread(target=loop.run, args=(stop,), name="webhook-relay", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=15)
        assert not thread.is_alive()


def subscribe(dashboard: Dashboard, url: str, **body) -> str:
    """A subscription to every record ever recorded (the seeded ones too), as the API makes it."""
    created = httpx.post(
        f"{dashboard.url}/webhooks", json={"url": url, "after": "0-0", **body}, headers=ADMIN
    )
    assert created.status_code == 201, created.text
    return created.json()["id"]


def webhook_api(dashboard: Dashboard, path: str, **params) -> dict:
    answer = httpx.get(f"{dashboard.url}/webhooks/{path}", params=params, headers=ADMIN)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_a_failing_webhook_shows_its_delivery_log_and_resumes(page: Page, dashboard: Dashboard):
    with receiving(always(500)) as receiver, webhook_relay(dashboard.application):
        sid = subscribe(dashboard, receiver.url(), description="CRM sync")
        page.goto(f"{dashboard.url}/#/webhooks")
        set_token(page)
        listed = page.get_by_test_id("webhook-row")
        expect(listed).to_have_count(1)
        expect(listed.get_by_test_id("webhook-link")).to_have_text(receiver.url())
        expect(listed.get_by_test_id("webhook-description")).to_have_text("CRM sync")
        expect(listed.get_by_test_id("webhook-filters")).to_have_text("every change")
        state = listed.get_by_test_id("webhook-state")
        expect(state).to_have_attribute("data-state", "failing", timeout=LIVE_TIMEOUT_MS)
        expect(listed.get_by_test_id("webhook-pause-reason")).to_contain_text("failed attempts")

        listed.get_by_test_id("webhook-link").click()
        expect(page.get_by_test_id("nav-webhooks")).to_have_attribute("aria-current", "page")
        tried = len(webhook_api(dashboard, f"{sid}/deliveries")["deliveries"])
        deliveries = page.get_by_test_id("delivery-row")
        expect(deliveries).to_have_count(tried)
        expect(deliveries.get_by_test_id("delivery-status-code")).to_have_text(["500"] * tried)
        expect(deliveries.get_by_test_id("delivery-outcome")).to_have_text(["rejected"] * tried)
        attempts = [str(n) for n in range(tried, 0, -1)]
        expect(deliveries.get_by_test_id("delivery-attempt")).to_have_text(attempts)
        expect(deliveries.get_by_test_id("delivery-ms").first).to_have_text(re.compile(r" ms$"))
        expect(deliveries.first.get_by_test_id("delivery-connection")).to_have_text("conn-fb")
        expect(page.get_by_test_id("webhook-attempts")).to_have_text(str(tried))
        expect(page.get_by_test_id("redeliveries-none")).to_be_visible()
        screenshot(page, "webhooks.png")

        # Nothing of conn-fb was passed yet: the API refuses a redelivery, and says why.
        page.get_by_test_id("redeliver-connection").fill("conn-fb")
        page.get_by_test_id("redeliver").click()
        message = page.get_by_test_id("message")
        expect(message).to_have_attribute("data-kind", "refused")
        expect(message).to_contain_text("has not passed sequence 1 of conn-fb yet")

        receiver.behaviour = always(200)
        page.get_by_test_id("webhook-resume").click()
        expect(message).to_have_attribute("data-kind", "success")
        assert webhook_api(dashboard, sid)["state"] == "active"
        expect(page.get_by_test_id("webhook-state")).to_have_attribute("data-state", "active")
        expect(page.get_by_test_id("webhook-resume")).to_have_count(0)
        first = deliveries.first
        expect(first.get_by_test_id("delivery-status-code")).to_have_text(
            "200", timeout=LIVE_TIMEOUT_MS
        )
        expect(first).to_have_attribute("data-outcome", "delivered")


def recorded(dashboard: Dashboard) -> int:
    with dashboard.application.database.connect() as connection:
        return connection.execute(sa.text("SELECT count(*) FROM status_history")).scalar_one()


def test_a_webhook_delivery_log_pages_back_and_shows_redeliveries(page: Page, dashboard: Dashboard):
    total = recorded(dashboard)
    assert total > 50, "the seed fills more than one page of the log"
    with receiving() as receiver, webhook_relay(dashboard.application):
        sid = subscribe(dashboard, receiver.url())
        receiver.wait_for(lambda r: len(r.at("/hook")) >= total, what="every record")
        page.goto(f"{dashboard.url}/#/webhooks/{sid}")
        set_token(page)
        deliveries = page.get_by_test_id("delivery-row")
        expect(deliveries).to_have_count(50)
        expect(page.get_by_test_id("deliveries-newer")).to_be_disabled()
        page.get_by_test_id("deliveries-older").click()
        expect(page).to_have_url(re.compile(rf"#/webhooks/{sid}\?before=\d+$"))
        expect(deliveries).to_have_count(total - 50)
        oldest = deliveries.last
        expect(oldest.get_by_test_id("delivery-connection")).to_have_text("conn-fb")
        expect(oldest.get_by_test_id("delivery-sequence")).to_have_text("1")
        expect(oldest.get_by_test_id("delivery-status-code")).to_have_text("200")
        expect(page.get_by_test_id("deliveries-older")).to_be_disabled()

        page.get_by_test_id("redeliver-connection").fill("conn-fb")
        page.get_by_test_id("redeliver-from").fill("2")
        page.get_by_test_id("redeliver").click()
        expect(page.get_by_test_id("message")).to_contain_text("Redelivery of conn-fb, sequences 2")
        redelivery = page.get_by_test_id("redelivery-row")
        expect(redelivery).to_have_count(1)
        expect(redelivery.get_by_test_id("redelivery-what")).to_contain_text("conn-fb")
        done = redelivery.get_by_test_id("redelivery-done")
        expect(done).not_to_have_text("queued", timeout=LIVE_TIMEOUT_MS)
        page.get_by_test_id("deliveries-newer").click()
        expect(page).to_have_url(re.compile(rf"#/webhooks/{sid}$"))
        newest = deliveries.first
        expect(newest.get_by_test_id("delivery-redelivery")).to_have_text("redelivery")
        expect(newest.get_by_test_id("delivery-connection")).to_have_text("conn-fb")


def test_the_webhooks_page_needs_an_admin_token(page: Page, dashboard: Dashboard):
    """Reads are public here, but not subscriptions: their targets and logs are admin's."""
    page.goto(f"{dashboard.url}/#/webhooks")
    message = page.get_by_test_id("message")
    expect(message).to_contain_text("needs an API token to read webhooks")
    set_token(page, GLOBEX_TOKEN)
    expect(message).to_contain_text("role (operate) does not allow this; it needs admin")
    set_token(page)
    expect(page.get_by_test_id("webhooks-count")).to_have_text("0 subscriptions")
    expect(page.get_by_test_id("empty")).to_contain_text("No webhook subscriptions")
    expect(message).to_have_count(0)
