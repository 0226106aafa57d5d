"""The dashboard in a real headless Chromium (Debian's ``chromium`` + ``chromium-driver``),
driven by Selenium against a real HTTP server thread on 127.0.0.1.

``python3 tasks.py test`` installs the two packages when it runs as root and they are missing;
without them these tests are skipped with the reason, never silently. Each page's screenshot is
written to ``var/screenshots/`` for a reviewer to look at.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from pathlib import Path

import pytest
from checkout import checkout_lock
from dashboard_kit import PASSWORD, make_dashboard

CHROMIUM = os.environ.get("HUB_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("HUB_CHROMEDRIVER", "/usr/bin/chromedriver")
SHOTS = Path(__file__).resolve().parents[1] / "var" / "screenshots"

pytestmark = pytest.mark.skipif(
    not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)),
    reason=f"BROWSER TESTS SKIPPED: no {CHROMIUM} / {CHROMEDRIVER}; install Debian's chromium "
    "and chromium-driver (python3 tasks.py test does so when run as root)",
)


@pytest.fixture
def server(hub_factory, tmp_path):
    """The dashboard's app on a real werkzeug server thread; yields (harness, base URL)."""
    from werkzeug.serving import make_server

    harness = make_dashboard(hub_factory, tmp_path)
    http = make_server("127.0.0.1", 0, harness.app, threaded=True)
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    yield harness, f"http://127.0.0.1:{http.server_port}"
    http.shutdown()
    thread.join(10)


@pytest.fixture
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="hub-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",  # root in CI and containers
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1280,1000",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _shot(driver, name: str) -> None:
    if not SHOTS.exists():
        with checkout_lock("var"):  # not while test_readme watches for a new var/
            SHOTS.mkdir(parents=True, exist_ok=True)
    height = driver.execute_script("return document.body.scrollHeight")
    driver.set_window_size(1280, max(min(height + 40, 4000), 600))
    driver.execute_script("window.scrollTo(0, 0)")
    driver.save_screenshot(str(SHOTS / f"{name}.png"))
    driver.set_window_size(1280, 1000)


def _wait_for_text(driver, text: str) -> None:
    """Wait until a navigation finished and the new page shows ``text``."""
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, 15).until(lambda d: text in d.page_source)


def _sign_in(driver, base: str, email: str) -> None:
    from selenium.webdriver.common.by import By

    driver.get(f"{base}/dashboard/")
    assert "/dashboard/sign-in" in driver.current_url
    driver.find_element(By.ID, "email").send_keys(email)
    driver.find_element(By.ID, "password").send_keys(PASSWORD)
    driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    _wait_for_text(driver, "Sign out")


def test_an_admin_walks_through_the_dashboard(server, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    harness, base = server
    browser.get(f"{base}/dashboard/sign-in")
    _shot(browser, "sign-in")
    _sign_in(browser, base, "admin@agency.example")
    assert browser.find_element(By.TAG_NAME, "h1").text == "Clients"
    rows = browser.find_elements(By.CSS_SELECTOR, "table.portfolio tbody tr")
    assert [r.find_element(By.CSS_SELECTOR, "th a").text for r in rows] == [
        "Acme Shoes",
        "Globex Corp",
    ]
    assert len(browser.find_elements(By.CSS_SELECTOR, "svg.spark")) == 10
    _shot(browser, "portfolio")

    browser.find_element(By.LINK_TEXT, "Acme Shoes").click()
    assert browser.find_element(By.TAG_NAME, "h1").text == "Acme Shoes"
    # times were rewritten into the viewer's zone, the client's time kept in the tooltip
    first_time = browser.find_element(By.CSS_SELECTOR, "time[data-zone]")
    assert first_time.get_attribute("title").startswith("Client's time: ")
    copy = browser.find_element(By.CSS_SELECTOR, "button[data-copy]")
    copy.click()
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(browser, 5, poll_frequency=0.1).until(lambda _d: copy.text == "Copied")
    _shot(browser, "client")

    browser.find_element(By.CSS_SELECTOR, "table tbody td a").click()
    assert browser.find_element(By.TAG_NAME, "h1").text.startswith("Checkout cs_")
    browser.find_element(By.CSS_SELECTOR, "details summary").click()  # the raw payload
    assert "raw payload of cs_" in browser.find_element(By.CSS_SELECTOR, "pre.raw").text
    _shot(browser, "journey")

    search = browser.find_element(By.ID, "top-search")
    search.send_keys("nobody@example.com", Keys.ENTER)
    _wait_for_text(browser, "Nothing matches")
    assert "Nothing matches" in browser.find_element(By.TAG_NAME, "main").text

    browser.get(f"{base}/dashboard/clients/acme/preview")
    browser.find_element(By.ID, "event").send_keys(
        '{"kind": "checkout.abandoned", "checkout_id": "cart_1", "occurred_at": '
        '"2026-11-30T10:00:00Z", "customer": {"email": "jane@example.com", "first_name": '
        '"Jane"}, "consent": {"email": "opt_in"}, "recovery_url": "https://shop.example/r/1"}'
    )
    browser.find_element(By.CSS_SELECTOR, "#preview-form button[type=submit]").click()
    _wait_for_text(browser, "What would happen")
    result = browser.find_element(By.ID, "preview-result")
    assert "default" in result.text and "j***@example.com" in result.text
    frame = browser.find_element(By.CSS_SELECTOR, "iframe.mail")
    assert frame.get_attribute("sandbox") == ""
    assert "/preview/mail/" in frame.get_attribute("src")  # its own policy, not srcdoc's
    browser.switch_to.frame(frame)
    body = browser.find_element(By.TAG_NAME, "body")
    assert "Jane" in body.text
    # the e-mail's inline styles apply (the dashboard's own policy would block them)
    assert body.value_of_css_property("background-color") == "rgba(244, 244, 245, 1)"
    browser.switch_to.default_content()
    _shot(browser, "preview")


def test_a_viewer_gets_404_for_another_clients_page(server, browser):
    from selenium.webdriver.common.by import By

    _harness, base = server
    _sign_in(browser, base, "viewer@acme.example")
    assert browser.current_url.endswith("/dashboard/clients/acme/")
    browser.get(f"{base}/dashboard/clients/globex/")
    assert browser.find_element(By.TAG_NAME, "h1").text == "Not found"
    status = browser.execute_script("return fetch(location.href).then(r => r.status)")
    assert status == 404
    assert "Globex" not in browser.page_source
    _shot(browser, "foreign-tenant-404")


def test_a_form_posted_without_its_csrf_token_fails(server, browser):
    from selenium.webdriver.common.by import By

    _harness, base = server
    _sign_in(browser, base, "admin@agency.example")
    browser.get(f"{base}/dashboard/clients/acme/preview")
    browser.execute_script(
        "document.querySelector('#preview-form input[name=csrf_token]').remove()"
    )
    browser.find_element(By.ID, "event").send_keys('{"kind": "checkout.abandoned"}')
    browser.find_element(By.CSS_SELECTOR, "#preview-form button[type=submit]").click()
    _wait_for_text(browser, "did not come from this site")
    _shot(browser, "csrf-refused")
    # a signed-in session is no help to a cross-site form either: sign-out needs the token
    browser.execute_script(
        "document.querySelector('form[action$=\"sign-out\"] input[name=csrf_token]').remove();"
        "document.querySelector('form[action$=\"sign-out\"]').submit()"
    )
    _wait_for_text(browser, "did not come from this site")
    browser.get(f"{base}/dashboard/")
    assert browser.find_element(By.TAG_NAME, "h1").text == "Clients"
