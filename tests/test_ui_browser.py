"""The agents' pages in a real browser: Playwright for Python driving Debian's Chromium, headless, on loopback.

Needs ``pip install -e '.[ui-test]'`` (Playwright's Python package; never a browser download) and Debian's
``chromium``; skipped otherwise, except where ``TRIAGE_REQUIRE_BROWSER_TEST=1`` (``.ci/run`` installs both and sets it). The store is filled by ``triage demo`` with the
embedded model, as a newcomer would. Screenshots go to ``$TRIAGE_UI_SCREENSHOTS`` when set, else a temporary folder.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from helpdesk_triage.api.app import create_app
from helpdesk_triage.api.decision_store import open_store
from helpdesk_triage.evaluation.monitoring import figures
from helpdesk_triage.policy.settings import Settings
from tests.api_test_server import serve_in_thread

try:
    from playwright import sync_api
except ImportError:
    sync_api = None
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
MISSING = ("no Playwright: pip install -e '.[ui-test]'" if sync_api is None
           else "no Debian chromium: apt install chromium" if CHROMIUM is None else None)

# Without the background-networking flags Chromium keeps trying to reach Google's hosts, which this machine refuses.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
KEY_OF = {"category": dict(zip("ABCD", "1234")), "severity": dict(zip(("low", "medium", "high", "critical"), "qwer")),
          "sentiment": dict(zip(("negative", "neutral", "positive"), "zxc"))}


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory) -> Path:
    folder = Path(os.environ.get("TRIAGE_UI_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def demo_db(tmp_path_factory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('demo')}/demo.db"
    done = subprocess.run([sys.executable, "-m", "helpdesk_triage.api.cli", "demo", "--database-url", url],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr
    assert "300 decisions" in done.stderr
    return url


@pytest.fixture(scope="module")
def server(demo_db):
    app = create_app(Settings(database_url=demo_db))
    with serve_in_thread(app) as url:
        assert app.state.service.wait_ready(120)
        yield url


@pytest.fixture(scope="module")
def browser():
    if MISSING:  # CI (.ci/run) installs both and sets TRIAGE_REQUIRE_BROWSER_TEST=1: there a missing browser fails
        (pytest.fail if os.environ.get("TRIAGE_REQUIRE_BROWSER_TEST") == "1" else pytest.skip)(MISSING)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def test_an_agent_corrects_an_item_with_the_keyboard_and_it_is_stored_and_marked_done(browser, server, demo_db,
                                                                                         screenshots):
    page = browser.new_page(viewport={"width": 1280, "height": 900}, locale="zh-CN")
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{server}/ui/review")
    items = page.locator("#queue .item")
    assert items.count() > 0
    page.screenshot(path=str(screenshots / "review.png"))
    page.fill("#agent-input", "王芳")
    page.locator("#agent-input").dispatch_event("change")
    page.locator("h1").click()  # focus leaves the name field, so keys go to the queue

    page.keyboard.press("j")  # the second item becomes current
    current = page.locator("#queue .item.current")
    assert current.get_attribute("data-id") == items.nth(1).get_attribute("data-id")
    item_id = current.get_attribute("data-id")
    model = {head: current.get_attribute(f"data-model-{head}") for head in KEY_OF}
    # A correction of two heads: another category and another severity, sentiment as the model said.
    category = next(code for code in "DCBA" if code != model["category"])
    severity = next(code for code in ("critical", "high", "medium", "low") if code != model["severity"])
    page.keyboard.press(KEY_OF["category"][category])
    page.keyboard.press(KEY_OF["severity"][severity])
    page.keyboard.press("Enter")
    done = page.locator(f'#queue .item[data-id="{item_id}"]')
    sync_api.expect(done).to_have_class("item done", timeout=10_000)
    sync_api.expect(done.locator(".status")).to_contain_text("已更正")
    # The next open item is current, and nothing was reloaded (the first item is still there, not done).
    assert "done" not in (items.nth(0).get_attribute("class") or "")
    page.screenshot(path=str(screenshots / "review-after-correction.png"))
    assert errors == []

    store = open_store(demo_db)
    try:
        verdicts = {row["id"]: row["verdicts"] for row in store.window("1970", "9999")}
        stored = {e["id"]: e for e in store.corrected_examples()}
    finally:
        store.close()
    assert verdicts[item_id] == {"category": category, "severity": severity, "sentiment": model["sentiment"]}
    assert stored[item_id]["agent"] == "王芳"
    page.reload()
    assert page.locator(f'#queue .item[data-id="{item_id}"]').count() == 0  # done: out of the queue
    page.close()


def test_with_keys_on_the_browser_signs_in_once_and_keeps_the_session(browser, demo_db, screenshots):
    app = create_app(Settings(database_url=demo_db, api_keys="browser-test-key-0123456789"))
    with serve_in_thread(app) as url:
        assert app.state.service.wait_ready(120)
        context = browser.new_context(locale="zh-CN")
        page = context.new_page()
        page.goto(f"{url}/ui/review?severity=critical")
        assert page.url.startswith(f"{url}/ui/login?next=")
        page.fill("#login-agent", "李强")
        page.fill("#login-key", "wrong-key")
        page.click("button[type=submit]")
        sync_api.expect(page.locator("#login-status")).to_contain_text("登录失败：API 密钥不对")
        page.fill("#login-key", "browser-test-key-0123456789")
        page.click("button[type=submit]")
        page.wait_for_url(f"{url}/ui/review?severity=critical")
        sync_api.expect(page.locator("#agent-name")).to_have_text("李强")
        [session] = [c for c in context.cookies() if c["name"] == "triage_session"]
        assert session["httpOnly"] and session["sameSite"] == "Strict"
        page.goto(f"{url}/ui/review")  # the session is kept: no second sign-in
        assert page.url == f"{url}/ui/review"
        page.screenshot(path=str(screenshots / "review-signed-in.png"))
        context.close()


def test_the_monitor_shows_charts_and_the_figures_of_triage_monitor_json(browser, server, demo_db, screenshots):
    until = datetime.now(ZoneInfo("Asia/Shanghai")).date()
    since = until - timedelta(days=30)
    cli = subprocess.run([sys.executable, "-m", "helpdesk_triage.api.cli", "monitor", "--database-url", demo_db,
                          "--since", since.isoformat(), "--until", until.isoformat(), "--json"],
                         capture_output=True, text=True, timeout=120)
    assert cli.returncode == 0, cli.stderr
    expected = figures(json.loads(cli.stdout))
    page = browser.new_page(viewport={"width": 1280, "height": 1000}, locale="zh-CN")
    page.goto(f"{server}/ui/monitor?since={since}&until={until}")
    assert page.locator("svg").count() >= 4  # volume, label mix, accuracy, drift
    shown = page.eval_on_selector_all("[data-figure]", "els => els.map(e => [e.dataset.figure, e.dataset.value])")
    assert len(shown) > 50
    for name, value in shown:
        want = expected[name]
        assert (value == "" and want is None) or float(value) == pytest.approx(want, abs=1e-9), name
    on_page = dict(shown)
    assert int(on_page["total.volume"]) == 300
    assert on_page["total.accuracy.category"] != ""  # the demo's agents reviewed decisions
    page.screenshot(path=str(screenshots / "monitor.png"), full_page=True)
    page.close()
