"""The dashboard in a real browser: headless Chromium (Debian's /usr/bin/chromium, never a
downloaded one) driven by Playwright against ``river ui`` processes on a real Postgres.

It clicks what a person clicks: from the overview to a list, a filter, a job, its actions with
their confirmations, bulk actions over a selection and over every job matching a filter,
queue pause/resume and cluster-wide settings; it checks that hostile data renders as text,
that a read-only dashboard offers and accepts no change, and that the page survives a
database outage without a reload.

Skipped when Chromium is missing, unless ``RIVER_REQUIRE_BROWSER=1`` (CI sets it).
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from worker_apps.harness import free_port

from tests.conftest import REPO_ROOT, _create_database, _drop_database, _uri_with_db
from tests.netproxy import CuttableProxy, server_address
from tests.test_ui_api import add_queue, error, insert_job

CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
XSS_ARGS = "<img src=x onerror=alert(1)>"
XSS_ERROR = "<script>alert(2)</script>"

if not CHROMIUM.exists():
    if os.environ.get("RIVER_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{CHROMIUM} is missing and RIVER_REQUIRE_BROWSER=1", pytrace=False)
    pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)", allow_module_level=True)

from playwright.sync_api import Browser, Page, expect, sync_playwright  # noqa: E402

expect.set_options(timeout=10_000)


# --------------------------------------------------------------------------------------------
# Servers and the browser
# --------------------------------------------------------------------------------------------


class UiServer:
    """A ``river ui`` process on 127.0.0.1 and a free port."""

    def __init__(self, url: str, *flags: str, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "river.cli",
                "ui",
                "--database-url",
                url,
                "--port",
                str(self.port),
                *flags,
            ],
            cwd=REPO_ROOT,
            env={**os.environ, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    out = self.proc.stdout.read() if self.proc.stdout else ""
                    self.stop()
                    raise AssertionError(f"river ui did not start:\n{out}") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()


@pytest.fixture(scope="module")
def ui_db(server_url: str, _template_db: str) -> Iterator[str]:
    """One migrated database for the module (each test works on jobs of its own)."""
    name = f"rq_ui_{uuid.uuid4().hex[:12]}"
    _create_database(server_url, name, template=_template_db)
    url = _uri_with_db(server_url, name)
    with psycopg.connect(url, autocommit=True) as conn:
        add_queue(conn, "default")
        add_queue(conn, "mail")
        add_queue(conn, "batch")
    try:
        yield url
    finally:
        _drop_database(server_url, name)


@pytest.fixture(scope="module")
def server(ui_db: str) -> Iterator[UiServer]:
    s = UiServer(ui_db)
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    dialogs: list[str] = []
    errors: list[str] = []
    # A native dialog would mean injected script ran (or a confirm() that tests cannot see):
    # the dashboard uses a <dialog> element for its confirmations.
    pg.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    # Nothing leaves the machine: any request to another origin is a failure.
    outside: list[str] = []
    pg.on(
        "request", lambda r: None if r.url.startswith("http://127.0.0.1") else outside.append(r.url)
    )
    try:
        yield pg
    finally:
        context.close()
    assert dialogs == [], f"native dialogs fired: {dialogs}"
    assert outside == [], f"requests left the machine: {outside}"
    unexpected = [e for e in errors if "503" not in e and "Failed to load resource" not in e]
    assert unexpected == [], unexpected


@pytest.fixture
def db(ui_db: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(ui_db, autocommit=True) as conn:
        yield conn


def state_of(db: psycopg.Connection, job_id: int) -> str | None:
    row = db.execute("SELECT state::text FROM river_job WHERE id = %s", (job_id,)).fetchone()
    return row[0] if row else None


def eventually(check: Callable[[], Any], timeout: float = 10, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def confirm(page: Page, expected_text: str | re.Pattern[str] | None = None) -> None:
    dialog = page.locator("dialog#confirm")
    expect(dialog).to_be_visible()
    if expected_text is not None:
        expect(dialog.locator("#confirm-text")).to_contain_text(expected_text)
    dialog.locator("#confirm-yes").click()
    expect(dialog).to_be_hidden()


# --------------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------------


def test_navigate_filter_and_act_on_one_job(
    server: UiServer, db: psycopg.Connection, page: Page
) -> None:
    failing = insert_job(
        db,
        kind="sync_invoices",
        queue="default",
        state="retryable",
        attempt=1,
        args={"invoice": 981},
        errors=[
            error(
                1,
                "RuntimeError: ledger locked",
                trace='Traceback (most recent call last):\n  File "app.py", line 3\nRuntimeError',
            )
        ],
        scheduled_at=datetime.now(UTC) + timedelta(minutes=30),
    )
    waiting = insert_job(db, kind="sync_invoices", queue="default", args={"invoice": 982})
    doomed = insert_job(db, kind="sync_invoices", queue="default", state="completed")

    page.goto(server.base + "/")
    expect(page.locator("h1")).to_have_text("Overview")
    (retryable,) = db.execute("SELECT count(*) FROM river_job WHERE state = 'retryable'").fetchone()
    expect(page.locator('.tile[data-state="retryable"] .n')).to_have_text(str(retryable))
    expect(page.locator("svg.chart").first).to_be_visible()

    # Overview -> the retryable jobs -> filter by kind -> the job.
    page.locator('.tile[data-state="retryable"]').click()
    expect(page).to_have_url(re.compile(r"/jobs\?state=retryable$"))
    page.fill('input[name="kind"]', "sync_invoices")
    page.get_by_role("button", name="Apply").click()
    expect(page).to_have_url(re.compile(r"kind=sync_invoices"))
    rows = page.locator("tbody tr[data-job]")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("ledger locked")
    page.get_by_role("link", name=str(failing), exact=True).click()
    expect(page).to_have_url(re.compile(rf"/jobs/{failing}$"))
    expect(page.locator("h1")).to_contain_text("sync_invoices")
    expect(page.locator("pre.json").first).to_contain_text('"invoice": 981')
    expect(page.locator("pre.trace")).to_contain_text('File "app.py", line 3')
    expect(page.locator(".timeline")).to_contain_text("Attempt 1 failed")
    expect(page.locator(".timeline")).to_contain_text("Retry scheduled")

    # Retry, with its confirmation: the page follows the new state by itself.
    page.locator('button[data-action="retry"]').click()
    confirm(page, f"Retry job {failing}")
    eventually(lambda: state_of(db, failing) == "available", what="retry")
    expect(page.locator("h1 .badge")).to_have_text("available")

    # Cancel another job; backing out of a confirmation changes nothing.
    page.goto(f"{server.base}/jobs/{waiting}")
    page.locator('button[data-action="cancel"]').click()
    page.locator("#confirm-no").click()
    assert state_of(db, waiting) == "available"
    page.locator('button[data-action="cancel"]').click()
    confirm(page)
    eventually(lambda: state_of(db, waiting) == "cancelled", what="cancel")
    expect(page.locator('button[data-action="cancel"]')).to_be_disabled()

    # Delete: back to the list.
    page.goto(f"{server.base}/jobs/{doomed}")
    page.locator('button[data-action="delete"]').click()
    confirm(page, f"Delete job {doomed}")
    expect(page).to_have_url(re.compile(r"/jobs$"))
    assert state_of(db, doomed) is None


def test_bulk_selection_and_all_matching(
    server: UiServer, db: psycopg.Connection, page: Page
) -> None:
    ids = [insert_job(db, kind="bulk_mail", queue="mail", args={"n": i}) for i in range(8)]
    page.goto(server.base + "/jobs?kind=bulk_mail")
    rows = page.locator("tbody tr[data-job]")
    expect(rows).to_have_count(8)
    for job_id in ids[:2]:
        page.locator(f'tr[data-job="{job_id}"] input[type="checkbox"]').check()
    expect(page.locator(".bulk")).to_contain_text("2 selected")
    page.locator('button[data-bulk="cancel"]').click()
    confirm(page, "Cancel 2 selected jobs?")
    eventually(lambda: [state_of(db, i) for i in ids[:2]] == ["cancelled"] * 2, what="bulk cancel")
    expect(page.locator("#toast")).to_contain_text("Cancelled 2 of 2 jobs")
    assert state_of(db, ids[2]) == "available"

    # Every job matching the filter, whatever the page: the confirmation shows the count.
    page.locator('button[data-action="select-all-matching"]').click()
    expect(page.locator(".bulk")).to_contain_text("All 8 jobs matching this filter are selected")
    page.locator('button[data-bulk="delete"]').click()
    confirm(page, re.compile(r"Delete all 8 jobs matching this filter \(kind bulk_mail\)"))
    eventually(lambda: all(state_of(db, i) is None for i in ids), what="bulk delete")
    expect(page.locator(".table-wrap")).to_contain_text("No jobs match.")


def test_paging_through_a_long_list(server: UiServer, db: psycopg.Connection, page: Page) -> None:
    db.execute(
        "INSERT INTO river_job (kind, queue, args, max_attempts)"
        " SELECT 'paged', 'batch', jsonb_build_object('i', i), 25 FROM generate_series(1, 120) i"
    )
    ids = [
        r[0] for r in db.execute("SELECT id FROM river_job WHERE kind = 'paged' ORDER BY id DESC")
    ]
    page.goto(server.base + "/jobs?kind=paged")
    first_row = page.locator("tbody tr[data-job]").first
    expect(first_row).to_have_attribute("data-job", str(ids[0]))
    page.locator('button[data-action="next-page"]').click()
    expect(first_row).to_have_attribute("data-job", str(ids[50]))
    page.locator('button[data-action="next-page"]').click()
    expect(first_row).to_have_attribute("data-job", str(ids[100]))
    expect(page.locator("tbody tr[data-job]")).to_have_count(20)
    expect(page.locator('button[data-action="next-page"]')).to_have_count(0)
    page.get_by_role("button", name="← Previous").click()
    expect(first_row).to_have_attribute("data-job", str(ids[50]))
    previous = page.get_by_role("button", name="← Previous")
    previous.click()
    expect(first_row).to_have_attribute("data-job", str(ids[0]))
    expect(previous).to_have_count(0)

    # The trail belongs to each page of the history: Back to page 2, then Previous, is page
    # 1 (a trail kept for the page shown last went forward to page 2 again).
    page.locator('button[data-action="next-page"]').click()
    page.locator('button[data-action="next-page"]').click()
    expect(first_row).to_have_attribute("data-job", str(ids[100]))
    page.go_back()
    expect(first_row).to_have_attribute("data-job", str(ids[50]))
    previous.click()
    expect(first_row).to_have_attribute("data-job", str(ids[0]))
    # Apply with the same filter: page 1, with no Previous (it showed, and went to page 2).
    page.locator('button[data-action="next-page"]').click()
    page.locator('button[data-action="next-page"]').click()
    page.get_by_role("button", name="Apply").click()
    expect(first_row).to_have_attribute("data-job", str(ids[0]))
    expect(previous).to_have_count(0)


def test_queue_pause_resume_and_cluster_settings(
    server: UiServer, db: psycopg.Connection, page: Page
) -> None:
    def paused() -> bool:
        (value,) = db.execute(
            "SELECT paused_at IS NOT NULL FROM river_queue WHERE name = 'batch'"
        ).fetchone()
        return bool(value)

    page.goto(server.base + "/")
    page.locator(".nav a[data-nav=queues]").click()
    row = page.locator('tr[data-queue="batch"]')
    row.locator('button[data-action="pause"]').click()
    eventually(paused, what="pause")
    expect(row.locator(".badge")).to_have_text("paused")
    row.locator('button[data-action="resume"]').click()
    eventually(lambda: not paused(), what="resume")
    expect(row.locator(".badge")).to_have_text("active")

    row.get_by_role("link", name="batch").click()
    expect(page.locator("h1")).to_contain_text("batch")
    page.fill('input[name="max_workers"]', "7")
    page.get_by_role("button", name="Apply to every client").click()
    expect(page.locator(".panel").filter(has_text="Cluster-wide settings")).to_contain_text(
        "Override now: max_workers 7"
    )

    def settings() -> Any:
        return db.execute(
            "SELECT metadata #> '{river_py,settings}' FROM river_queue WHERE name = 'batch'"
        ).fetchone()[0]

    assert settings() == {"max_workers": 7}
    page.locator('button[data-clear="max_workers"]').click()
    expect(page.locator(".panel").filter(has_text="Cluster-wide settings")).to_contain_text(
        "Override now: —"
    )
    assert settings() is None


def test_big_integers_show_and_copy_exactly(
    server: UiServer, db: psycopg.Connection, page: Page
) -> None:
    """Integers beyond 2**53 (64-bit ids) in args and metadata show, and copy, as stored: the
    browser's JSON.parse turned 1234567890123456789 into 1234567890123456800."""
    big = 1234567890123456789
    job = insert_job(db, kind="big_ints", args={"user_id": big}, metadata={"trace": big + 2})
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.goto(server.base + f"/jobs/{job}")
    expect(page.locator("pre.json").nth(0)).to_contain_text(f'"user_id": {big}')
    expect(page.locator("pre.json").nth(1)).to_contain_text(f'"trace": {big + 2}')
    page.locator("section.panel").filter(has_text="Args").get_by_role("button", name="Copy").click()
    expect(page.locator("#toast")).to_contain_text("Copied")  # the copy has happened
    copied = page.evaluate("navigator.clipboard.readText()")
    assert str(big) in copied, copied

    # A queue's metadata too; and its panel stays as the reader left it across polls.
    db.execute(
        "UPDATE river_queue SET metadata = jsonb_build_object('owner_id', %s::bigint)"
        " WHERE name = 'batch'",
        (big,),
    )
    page.goto(server.base + "/queues/batch")
    panel = page.locator("section.panel").filter(has_text="Metadata")
    expect(panel.locator("pre.json")).to_contain_text(f'"owner_id": {big}')
    panel.locator("summary").click()  # closed
    expect(panel.locator("details")).not_to_have_attribute("open", "")
    for _ in range(2):  # two polls of the page come and go: still closed
        with page.expect_response(lambda r: "/api/queue?name=batch" in r.url, timeout=10_000):
            pass
    expect(panel.locator("details")).not_to_have_attribute("open", "")


def test_a_failed_action_with_refresh_off_still_recovers(
    server: UiServer, db: psycopg.Connection, page: Page
) -> None:
    """An action answered 503 shows the banner, which says the page retries every 2 s: with
    the refresh off, nothing retried, and the banner stayed after the database was back."""
    page.goto(server.base + "/queues")
    page.select_option("#refresh", "0")
    row = page.locator('tr[data-queue="batch"]')
    expect(row).to_be_visible()

    def unavailable(route: Any) -> None:
        route.fulfill(
            status=503,
            content_type="application/json",
            body='{"error": "database unreachable", "reason": "unreachable"}',
        )

    page.route("**/api/**", unavailable)
    row.locator("button[data-action]").first.click()
    expect(page.locator("#banner")).to_be_visible()
    page.unroute("**/api/**")
    expect(page.locator("#banner")).to_be_hidden(timeout=6000)


def test_hostile_data_renders_as_text(server: UiServer, db: psycopg.Connection, page: Page) -> None:
    job_id = insert_job(
        db,
        kind="<b>kind</b>",
        queue="default",
        state="discarded",
        attempt=1,
        tags=["<i>tag</i>"],
        args={"html": XSS_ARGS},
        metadata={
            "note": "<svg onload=alert(3)>",
            "periodic": True,
            "river:periodic_job_id": "<x>",
        },
        errors=[error(1, XSS_ERROR, trace="<img src=y onerror=alert(4)>")],
    )
    for path in [
        "/",
        "/jobs?state=discarded",
        f"/jobs/{job_id}",
        "/queues",
        "/queues/default",
        "/periodic",
    ]:
        page.goto(server.base + path)
        page.wait_for_selector("main h1")
        expect(page.locator("main")).not_to_contain_text("Loading…")
        assert (
            page.locator("main img, main script, main b, main i, main svg:not(.chart)").count() == 0
        ), path
    page.goto(f"{server.base}/jobs/{job_id}")
    expect(page.locator("pre.json").first).to_contain_text(XSS_ARGS)
    expect(page.locator(".error-text")).to_have_text(XSS_ERROR)
    expect(page.locator("h1")).to_contain_text("<b>kind</b>")
    page.goto(server.base + "/jobs?state=discarded")
    expect(page.locator(f'tr[data-job="{job_id}"] td.args')).to_contain_text(XSS_ARGS)
    page.goto(server.base + "/periodic")
    expect(page.locator("main")).to_contain_text("<x>")


def test_read_only_dashboard(ui_db: str, db: psycopg.Connection, browser: Browser) -> None:
    job_id = insert_job(db, kind="ro", state="discarded")
    ro = UiServer(ui_db, "--read-only")
    context = browser.new_context()
    page = context.new_page()
    try:
        page.goto(f"{ro.base}/jobs/{job_id}")
        expect(page.locator("h1")).to_contain_text("ro")
        expect(page.locator("#read-only-badge")).to_be_visible()
        assert (
            page.locator("main button").filter(has_text=re.compile("Retry|Cancel|Delete")).count()
            == 0
        )
        page.goto(f"{ro.base}/jobs")
        expect(page.locator("tbody tr[data-job]").first).to_be_visible()
        assert page.locator('main input[type="checkbox"], button[data-bulk]').count() == 0
        page.goto(f"{ro.base}/queues")
        expect(page.locator('tr[data-queue="default"]')).to_be_visible()
        assert page.locator("button[data-action=pause], button[data-action=resume]").count() == 0
        page.goto(f"{ro.base}/queues/default")
        expect(page.locator("main")).to_contain_text("Read-only dashboard")
        status = page.evaluate(
            """async (id) => {
                const token = document.querySelector('meta[name="river-csrf"]').content;
                const headers = {"X-River-CSRF": token};
                const r = await fetch(`/api/jobs/${id}/delete`, {method: "POST", headers});
                return r.status;
            }""",
            job_id,
        )
        assert status == 403
    finally:
        context.close()
        ro.stop()
    assert state_of(db, job_id) == "discarded"


class ProxyThread:
    """tests/netproxy.py's CuttableProxy on an event loop of its own thread, so that a sync test
    can cut the database away from a ``river ui`` process while the browser watches."""

    def __init__(self, db_url: str) -> None:
        self._target = server_address(db_url)
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self.proxy: CuttableProxy | None = None
        self._thread = threading.Thread(target=self._run, name="ui-test-proxy", daemon=True)
        self._thread.start()
        assert self._ready.wait(10)

    def _run(self) -> None:
        async def main() -> None:
            self._stop = asyncio.Event()
            async with CuttableProxy(*self._target) as proxy:
                self.proxy = proxy
                self._ready.set()
                await self._stop.wait()

        self._loop.run_until_complete(main())
        self._loop.close()

    def sever(self) -> None:
        """The proxy's ``sever()``, on its own loop; returns once it is done."""
        assert self.proxy is not None
        done = threading.Event()

        def sever() -> None:
            assert self.proxy is not None
            self.proxy.sever()
            done.set()

        self._loop.call_soon_threadsafe(sever)
        assert done.wait(10)

    def close(self) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


def test_database_outage_shows_a_banner_and_recovers(
    ui_db: str, db: psycopg.Connection, page: Page
) -> None:
    proxy = ProxyThread(ui_db)
    assert proxy.proxy is not None
    app_name = f"river-ui-outage-{uuid.uuid4().hex[:6]}"
    ui = UiServer(proxy.proxy.url(ui_db, app_name))
    try:
        page.goto(ui.base + "/")
        page.select_option("#refresh", "1")
        expect(page.locator('.tile[data-state="available"] .n')).not_to_have_text("")
        page.evaluate("window.__sameDocument = true")

        proxy.sever()  # also a pool connection still being set up (its backend has no name yet)
        db.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = %s AND datname = current_database()",
            (app_name,),
        )
        banner = page.locator("#banner")
        expect(banner).to_be_visible(timeout=15_000)
        expect(banner).to_contain_text("Database unreachable")

        insert_job(db, kind="after_outage", queue="default")
        (available,) = db.execute(
            "SELECT count(*) FROM river_job WHERE state = 'available'"
        ).fetchone()
        proxy.proxy.mend()
        expect(banner).to_be_hidden(timeout=15_000)
        expect(page.locator('.tile[data-state="available"] .n')).to_have_text(str(available))
        assert page.evaluate("window.__sameDocument") is True  # no reload happened
    finally:
        ui.stop()
        proxy.close()


def test_bulk_retry_reports_what_it_left(
    server: UiServer, db: psycopg.Connection, page: Page
) -> None:
    """A bulk retry over a filter skips the jobs whose unique key another job holds, and says
    so; the list says why a time order fell back to id order."""
    holder = insert_job(db, kind="bulk_uniq", queue="batch")
    blocked = insert_job(db, kind="bulk_uniq", queue="batch", state="discarded")
    free = [insert_job(db, kind="bulk_uniq", queue="batch", state="discarded") for _ in range(2)]
    for job_id in (holder, blocked):
        db.execute(
            "UPDATE river_job SET unique_key = 'k-browser', unique_states = 245::integer::bit(8)"
            " WHERE id = %s",
            (job_id,),
        )
    page.goto(server.base + "/jobs?kind=bulk_uniq&sort=time")
    expect(page.locator("tbody tr[data-job]")).to_have_count(4)
    expect(page.locator('[data-note="sort"]')).to_contain_text("needs one state")
    page.goto(server.base + "/jobs?kind=bulk_uniq&state=discarded")
    expect(page.locator('[data-note="sort"]')).to_have_count(0)
    page.locator('button[data-action="select-all-matching"]').click()
    expect(page.locator(".bulk")).to_contain_text("All 3 jobs matching this filter are selected")
    page.locator('button[data-bulk="retry"]').click()
    confirm(page, re.compile(r"Retry all 3 jobs matching this filter"))
    toast = page.locator("#toast")
    expect(toast).to_contain_text("Retried 2 of 3 jobs")
    expect(toast).to_contain_text("1 kept: another job holds their unique key")
    assert [state_of(db, i) for i in free] == ["available"] * 2
    assert state_of(db, blocked) == "discarded"
    # A text search says which ids it read.
    page.goto(server.base + "/jobs?q=nothing-matches-this")
    expect(page.locator('[data-note="searched"]')).to_contain_text("Searched jobs #")


def test_finalized_tab_by_time_and_a_count_over_several_calls(
    server: UiServer, db: psycopg.Connection, page: Page
) -> None:
    """The completed tab lists the most recently finalized first and says so; "newest first"
    lists by id. "Select all matching" on a text search counts window by window until the
    count is whole, and the confirmation shows that count."""
    base = datetime(2026, 1, 1, tzinfo=UTC)
    done = [
        insert_job(db, kind="fin_tab", state="completed", finalized_at=base + timedelta(seconds=s))
        for s in (30, 10, 20)
    ]
    insert_job(db, kind="fin_tab")  # newer, available
    by_time = [done[0], done[2], done[1]]
    page.goto(server.base + "/jobs?state=completed&kind=fin_tab")
    rows = page.locator("tbody tr[data-job]")
    expect(rows).to_have_count(3)
    for index, job_id in enumerate(by_time):
        expect(rows.nth(index)).to_have_attribute("data-job", str(job_id))
    expect(page.locator('[data-note="order"]')).to_contain_text(
        "Ordered by when each job was finalized, latest first"
    )
    expect(page.locator("thead")).to_contain_text("Finalized")
    expect(page.locator('select[name="sort"]')).to_have_value("time:desc")
    # A filter applied without touching the order keeps the tab's default.
    page.fill('input[name="queue"]', "default")
    page.get_by_role("button", name="Apply").click()
    expect(page).to_have_url(re.compile(r"queue=default"))
    assert "sort=" not in page.url
    expect(rows.first).to_have_attribute("data-job", str(by_time[0]))
    # "Newest first": by id, a window of ids per page, said so.
    page.select_option('select[name="sort"]', "id:desc")
    page.get_by_role("button", name="Apply").click()
    expect(page).to_have_url(re.compile(r"sort=id"))
    expect(rows.first).to_have_attribute("data-job", str(max(done)))
    expect(page.locator('[data-note="order"]')).to_have_count(0)
    expect(page.locator('[data-note="searched"]')).to_contain_text("id order")

    # Ids far apart: the server counts a text search a million ids per call, newest first.
    needles = [insert_job(db, kind="count_me", args={"needle": "far-apart"}) for _ in range(4)]
    far = 2_500_000
    try:
        db.execute(
            "INSERT INTO river_job (id, kind, queue, state, args, max_attempts)"
            " VALUES (%s, 'count_me', 'default', 'available', '{\"needle\": \"far-apart\"}', 25)",
            (far,),
        )
        page.goto(server.base + "/jobs?q=far-apart")
        expect(rows.first).to_have_attribute("data-job", str(far))
        page.locator('button[data-action="select-all-matching"]').click()
        expect(page.locator(".bulk")).to_contain_text(
            "All 5 jobs matching this filter are selected"
        )
        page.locator('button[data-bulk="cancel"]').click()
        confirm(page, re.compile(r"Cancel all 5 jobs matching this filter"))
        expect(page.locator("#toast")).to_contain_text("Cancelled 5 of 5 jobs", timeout=30_000)
        assert [state_of(db, i) for i in [*needles, far]] == ["cancelled"] * 5
    finally:
        db.execute("DELETE FROM river_job WHERE id = %s", (far,))


def test_odd_urls_and_names_keep_the_page(
    server: UiServer, db: psycopg.Connection, page: Page
) -> None:
    """A queue named ".." (written by SQL: River's own names never are) has a page; a URL with
    broken percent-encoding shows "Not found" instead of a blank page; an available job that is
    already due offers no retry."""
    due = insert_job(db, kind="odd", queue="..")
    page.goto(server.base + "/queues")
    page.select_option("#refresh", "1")  # the counts of a second ago may not have it yet
    page.locator('tr[data-queue=".."] a').first.click()
    expect(page.locator("main h1")).to_contain_text("..")
    expect(page).to_have_url(re.compile(r"/queues\?name=\.\.$"))
    expect(page.locator('.tile[data-state="available"] .n')).to_have_text("1")
    page.goto(server.base + "/queues/%E0%A4%A")
    expect(page.locator("main h1")).to_have_text("Not found")
    page.goto(f"{server.base}/jobs/{due}")
    retry = page.locator('button[data-action="retry"]')
    expect(retry).to_be_disabled()
    expect(retry).to_have_attribute("title", re.compile("Nothing to do"))
    expect(page.locator('button[data-action="cancel"]')).to_be_enabled()


def test_the_overview_shows_when_the_throughput_fails(
    server: UiServer, db: psycopg.Connection, page: Page
) -> None:
    """The throughput chart is one panel of the overview and of a queue's page: when its
    request fails (a 500, as one error row with an impossible date once caused), the other
    panels still show and the chart's panel says why. Only the browser's HTTP answer is
    replaced; the rest of the page reads the real database."""
    insert_job(db, kind="tp_fails", queue="default")
    page.route(
        "**/api/throughput*",
        lambda route: route.fulfill(
            status=500, content_type="application/json", body='{"error": "boom"}'
        ),
    )
    for path, queue_row in (("/", True), ("/queues/default", False)):
        page.goto(server.base + path)
        expect(page.locator('.tile[data-state="available"] .n')).not_to_have_text("")
        expect(page.locator('[data-error="throughput"]')).to_have_text(
            "Throughput unavailable: boom"
        )
        if queue_row:
            expect(page.locator('tr[data-queue="default"]')).to_be_visible()
        expect(page.locator("#toast")).not_to_be_visible()
