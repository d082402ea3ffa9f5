"""The web page (README "The web page") as a person uses it, in headless
Chromium (Debian's chromium and chromium-driver, driven through Selenium)
against the served functions of `make test` (E2E_BASE_URL; dev-mode, so the
page shows each SMS code in its banner).

One person signs up, sees their invite code and share link, is refused
their own code; a second person opens the share link in another tab, signs
up, finds the code filled in and applies it; the first person's list of
referrals shows them; the page is switched to Russian; the first person
signs out. Screenshots (desktop and phone width, both languages) are saved
under <target>/web-screenshots/, and Chrome's console must hold no error but
the API refusals the test provokes on purpose.

A second person signs in in two tabs, signs out everywhere from one: the
other's next refresh is refused (401) and it goes back to sign-in; then they
delete their account, which the page asks about first.

Every wait is on a condition in the page (WebDriverWait), never a sleep."""

import base64
import os
import pathlib
import random
import re
import urllib.request

import pytest

# Selenium Manager (which looks for and downloads drivers, and reports usage)
# is never needed: the driver's path is given. Kept offline anyway.
os.environ.setdefault("SE_OFFLINE", "true")
os.environ.setdefault("SE_AVOID_STATS", "true")

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support import expected_conditions as EC  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

BASE = os.environ.get("E2E_BASE_URL")
pytestmark = pytest.mark.skipif(not BASE, reason="needs the served functions (make test)")

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCREENSHOTS = pathlib.Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target") / "web-screenshots"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")
# Debug builds under cargo lambda watch start on their first request.
TIMEOUT = 60

# Chrome logs every answer with an error status as a console error (source
# "network"), also the refusals the page expects and shows as messages. These
# are the ones this test provokes; any other console error fails it.
PROVOKED = {
    "get_code 429 (resend too soon)": re.compile(
        r"/users/auth/get_code/ - Failed to load resource: the server responded with a status of 429"
    ),
    "set_referrer 400 (own invite code)": re.compile(
        r"/users/set_referrer/ - Failed to load resource: the server responded with a status of 400"
    ),
}


def new_phone():
    """A Russian mobile number: (E.164, the spelling a person types)."""
    d = f"{random.randrange(10**9):09d}"
    return f"+79{d}", f"8 (9{d[:2]}) {d[2:5]}-{d[5:7]}-{d[7:]}"


@pytest.fixture
def browser():
    assert os.path.exists(CHROMEDRIVER), "chromium-driver is missing: run scripts/setup.sh"
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in [
        "--headless=new",
        "--no-sandbox",  # root in a container
        "--disable-dev-shm-usage",
        "--window-size=1280,900",
        "--lang=en-US",
        # Nothing but the service on loopback: every other host name fails to
        # resolve, and Chrome's own background requests are off.
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-domain-reliability",
        "--disable-sync",
        "--no-pings",
        "--no-first-run",
    ]:
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


class Console:
    """Chrome's console, read per tab before the tab is left or closed."""

    def __init__(self, driver):
        self.driver = driver
        self.entries = []

    def collect(self):
        self.entries += self.driver.get_log("browser")

    def errors(self):
        return [e for e in self.entries if e["level"] == "SEVERE"]


def wait(driver, condition, message, timeout=TIMEOUT, poll=0.1):
    return WebDriverWait(driver, timeout, poll_frequency=poll).until(condition, message)


def shown(driver, element_id):
    return wait(driver, EC.visibility_of_element_located((By.ID, element_id)), f"#{element_id} is not shown")


def text_is(driver, element_id, pattern):
    """Waits until the element's text matches; returns the text."""

    def matches(d):
        text = d.find_element(By.ID, element_id).text.strip()
        return text if re.fullmatch(pattern, text) else False

    return wait(driver, matches, f"#{element_id} never read {pattern!r}")


def sign_in(driver, typed_phone):
    """Through the form, as a person: the phone as they spell it, the code
    from the dev-mode banner, each form sent with the Enter key."""
    phone = shown(driver, "phone")
    phone.clear()
    phone.send_keys(typed_phone, Keys.ENTER)
    code = text_is(driver, "dev-code", r"\d{4,10}")
    field = shown(driver, "code")
    field.send_keys(code, Keys.ENTER)
    shown(driver, "account")


def screenshot(driver, name, width, height, scale=1, mobile=False):
    """The whole page at this viewport, as PNG under SCREENSHOTS."""
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": scale, "mobile": mobile},
    )
    wait(driver, lambda d: d.execute_script("return window.innerWidth") == width, f"the viewport is not {width} wide")
    size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    shot = driver.execute_cdp_cmd(
        "Page.captureScreenshot",
        {
            "format": "png",
            "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": width, "height": max(height, size["height"]), "scale": 1},
        },
    )
    driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / name
    path.write_bytes(base64.b64decode(shot["data"]))
    return path


def test_the_page_and_its_files_carry_the_security_headers():
    for path, content_type in [
        ("/", "text/html"),
        ("/app/", "text/html"),
        ("/app/app.js", "text/javascript"),
        ("/app/app.css", "text/css"),
        ("/app/icon.svg", "image/svg+xml"),
    ]:
        with urllib.request.urlopen(BASE + path, timeout=TIMEOUT) as response:
            headers = response.headers
            assert response.status == 200, path
            assert headers["Content-Type"].startswith(content_type), (path, headers["Content-Type"])
            policy = [d.strip() for d in headers["Content-Security-Policy"].split(";")]
            assert "script-src 'self'" in policy, (path, policy)
            assert "frame-ancestors 'none'" in policy, (path, policy)
            assert "unsafe" not in headers["Content-Security-Policy"], path
            assert headers["X-Content-Type-Options"] == "nosniff", path
            assert headers["Referrer-Policy"] == "no-referrer", path


def test_two_people_sign_up_through_an_invite_link_and_sign_out(browser):
    console = Console(browser)
    first, first_typed = new_phone()
    second, second_typed = new_phone()

    browser.get(BASE + "/")
    wait(browser, lambda d: d.execute_script("return document.documentElement.lang") == "en", "not in English")
    phone = shown(browser, "phone")
    assert (phone.get_attribute("type"), phone.get_attribute("autocomplete")) == ("tel", "tel")
    code = browser.find_element(By.ID, "code")
    assert (code.get_attribute("inputmode"), code.get_attribute("autocomplete")) == ("numeric", "one-time-code")

    # A code; asking again at once is refused with the API's Retry-After,
    # counted down on the button, and said next to the field.
    phone.send_keys(first_typed, Keys.ENTER)
    sms_code = text_is(browser, "dev-code", r"\d{4,10}")
    text_is(browser, "sent-to", re.escape(first))
    screenshot(browser, "code-step-phone-en.png", 390, 844, scale=2, mobile=True)
    shown(browser, "resend-code").click()
    text_is(browser, "code-error", r"a new code can be requested in \d+ s")
    wait(
        browser,
        lambda d: (b := d.find_element(By.ID, "resend-code")).get_attribute("disabled")
        and re.search(r"\(0:[0-5]\d\)$", b.text),
        "the resend button does not count down",
    )
    shown(browser, "code").send_keys(sms_code, Keys.ENTER)
    shown(browser, "account")
    text_is(browser, "my-phone", re.escape(first))

    invite_code = text_is(browser, "invite-code", r"[A-Za-z0-9]{6}")
    link = browser.find_element(By.ID, "share-link").get_attribute("value")
    assert link == f"{BASE}/?invite={invite_code}"
    text_is(browser, "invited-by", "Nobody yet")
    # Copying: to the clipboard, or (headless Chrome may refuse it) the link
    # selected for the person to copy; either way the page says which.
    browser.find_element(By.ID, "copy-link").click()
    text_is(browser, "copy-status", r"Invite link copied\.|Copying is not allowed here.*")

    # Their own code: refused, in words, next to the field.
    field = browser.find_element(By.ID, "invite-input")
    field.send_keys(invite_code, Keys.ENTER)
    text_is(browser, "invite-error", "You cannot enter your own invite code")
    assert field.get_attribute("aria-invalid") == "true"
    assert "invite-error" in field.get_attribute("aria-describedby").split()
    first_tab = browser.current_window_handle
    console.collect()

    # The second person opens the share link in a tab of their own (their
    # own sessionStorage): the code waits for them through sign-in.
    browser.switch_to.new_window("tab")
    browser.get(link)
    wait(browser, lambda d: "invite=" not in d.current_url, "the invite code stays in the address bar")
    sign_in(browser, second_typed)
    text_is(browser, "my-phone", re.escape(second))
    wait(
        browser,
        lambda d: d.find_element(By.ID, "invite-input").get_attribute("value") == invite_code,
        "the invite code from the link is not filled in",
    )
    browser.find_element(By.ID, "apply-invite").click()
    text_is(browser, "referrer-done", rf"You were invited by {re.escape(first)} \(code {invite_code}\)\.")
    assert not browser.find_element(By.ID, "referrer-form").is_displayed()

    # A reload keeps them signed in: the access token was in memory only, the
    # refresh token in this tab's sessionStorage brings a new one.
    browser.refresh()
    shown(browser, "account")
    text_is(browser, "my-phone", re.escape(second))
    text_is(browser, "invited-by", rf"{re.escape(first)} \(code {invite_code}\)")
    refresh, local = browser.execute_script(
        "return [sessionStorage.getItem('phone-auth.refresh'), JSON.stringify(localStorage)]"
    )
    assert refresh and refresh.split(".")[0] not in local, f"the refresh token in localStorage: {local}"
    console.collect()
    browser.close()
    browser.switch_to.window(first_tab)

    # The first person's list, read afresh until it shows them (the list is
    # read from an index: eventually consistent on DynamoDB).
    def listed(d):
        if second in d.find_element(By.ID, "referrals").text:
            return True
        reload = d.find_element(By.ID, "reload-referrals")
        if reload.is_enabled():
            reload.click()
        return False

    wait(browser, listed, f"{second} is not in the first person's referrals", poll=0.5)
    text_is(browser, "referrals-count", "1")
    shown(browser, "sessions")
    text_is(browser, "sessions", r"(?s).*This device.*")

    screenshot(browser, "desktop-en.png", 1280, 900)
    screenshot(browser, "phone-en.png", 390, 844, scale=2, mobile=True)

    # In Russian: every text, the refusal shown, and the dates.
    browser.find_element(By.CSS_SELECTOR, '.lang-button[data-lang="ru"]').click()
    wait(browser, lambda d: d.execute_script("return document.documentElement.lang") == "ru", "not in Russian")
    text_is(browser, "profile-title", "Ваш профиль")
    text_is(browser, "invite-error", "Нельзя ввести собственный код приглашения.")
    text_is(browser, "copy-status", r"Ссылка скопирована\.|Копирование здесь запрещено.*")
    screenshot(browser, "desktop-ru.png", 1280, 900)
    screenshot(browser, "phone-ru.png", 390, 844, scale=2, mobile=True)
    browser.find_element(By.CSS_SELECTOR, '.lang-button[data-lang="en"]').click()
    text_is(browser, "profile-title", "Your profile")

    # Sign out: back to the sign-in form, the refresh token gone.
    browser.find_element(By.ID, "sign-out").click()
    shown(browser, "phone-form")
    text_is(browser, "notice", "You have signed out.")
    assert not browser.find_element(By.ID, "account").is_displayed()
    assert browser.execute_script("return sessionStorage.getItem('phone-auth.refresh')") is None
    # Signing in ended the first phone's wait for a new code.
    assert browser.find_element(By.ID, "send-code").is_enabled()
    screenshot(browser, "signed-out-phone-en.png", 390, 844, scale=2, mobile=True)

    console.collect()
    errors = console.errors()
    unexpected = [e for e in errors if not any(p.search(e["message"]) for p in PROVOKED.values())]
    assert not unexpected, f"console errors: {unexpected}"
    # The console was read: the refusals provoked above are in it.
    for what, pattern in PROVOKED.items():
        assert any(pattern.search(e["message"]) for e in errors), f"{what} is not in the console log: {errors}"


def test_sign_out_everywhere_ends_the_other_tab_and_an_account_can_be_deleted(browser):
    console = Console(browser)
    phone, typed = new_phone()
    browser.get(BASE + "/")
    sign_in(browser, typed)
    first_tab = browser.current_window_handle
    console.collect()

    # The same person in a second tab: a second session, listed in the first.
    browser.switch_to.new_window("tab")
    browser.get(BASE + "/")
    sign_in(browser, typed)
    second_tab = browser.current_window_handle
    console.collect()
    browser.switch_to.window(first_tab)

    def two_sessions(d):
        if len(d.find_elements(By.CSS_SELECTOR, "#sessions li")) == 2:
            return True
        reload = d.find_element(By.ID, "reload-sessions")
        if reload.is_enabled():
            reload.click()
        return False

    wait(browser, two_sessions, "the second tab's session is not listed", poll=0.5)
    browser.find_element(By.ID, "sign-out-all").click()
    text_is(browser, "notice", "You have signed out on every device.")
    console.collect()

    # The second tab's session is revoked: at its next refresh (a reload
    # here) the API answers 401 and the page goes back to sign-in.
    browser.switch_to.window(second_tab)
    browser.refresh()
    shown(browser, "phone-form")
    text_is(browser, "notice", "Your session has ended. Please sign in again.")
    assert browser.execute_script("return sessionStorage.getItem('phone-auth.refresh')") is None

    # Deleting the account asks first; "Keep it" keeps it.
    sign_in(browser, typed)
    browser.find_element(By.ID, "delete-account").click()
    shown(browser, "delete-confirm")
    browser.find_element(By.ID, "delete-no").click()
    wait(browser, EC.invisibility_of_element_located((By.ID, "delete-confirm")), "the question stays")
    browser.find_element(By.ID, "delete-account").click()
    shown(browser, "delete-yes").click()
    text_is(browser, "notice", "Your account has been deleted.")
    shown(browser, "phone-form")

    # The phone signs up again as somebody new: another invite code, nobody's referral.
    sign_in(browser, typed)
    text_is(browser, "invited-by", "Nobody yet")
    console.collect()

    revoked = re.compile(r"/users/auth/refresh/ - Failed to load resource: the server responded with a status of 401")
    errors = console.errors()
    assert [e for e in errors if not revoked.search(e["message"])] == [], errors
    assert any(revoked.search(e["message"]) for e in errors), errors
