"""Connected apps (issue #15), end to end: headless Chromium (selenium driving the system
chromedriver) plays the owner (login, 2FA, consent with narrowing), authlib plays the app (PKCE,
code exchange with an Ed25519 public key), and ccxt trades with the key it got. The Python block
of docs/apps.md is the app: it is read from the doc and run as it stands.

Then: Disconnect on the Connected apps page, and the next request gets -2015; a second app is
connected and suspended with `keygate apps suspend`, and its keys stop working; refusals
(no state, a redirect URI not registered, a reused code) issue nothing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.server
import os
import re
import shutil
import struct
import threading
import time
import urllib.parse
from pathlib import Path

import ccxt
import pytest
import requests
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from conftest import PASSWORD, REPO

os.environ["AUTHLIB_INSECURE_TRANSPORT"] = "1"  # keygate on plain http, on 127.0.0.1 only
# ccxt reports -2015 as AuthenticationError, or, once the key has worked before, as
# DDoSProtection (Binance answers -2015 during temporary bans); either carries the code.
REFUSED = (ccxt.AuthenticationError, ccxt.DDoSProtection)


def totp(secret_b32: str, at: float | None = None) -> str:
    """RFC 6238 (SHA-1, 6 digits, 30 s), as the console's authenticator expects."""
    key = base64.b32decode(secret_b32.replace(" ", "").upper() + "=" * (-len(secret_b32) % 8))
    counter = int((time.time() if at is None else at) // 30)
    digest = hmac.new(key, struct.pack(">Q", counter), hashlib.sha1).digest()
    off = digest[-1] & 0x0F
    return f"{(struct.unpack('>I', digest[off:off + 4])[0] & 0x7FFFFFFF) % 1_000_000:06d}"


def fresh_code(secret: str, used: set[int]) -> str:
    """A code of a time step later than any used before: keygate accepts each step once, and
    only a later one than the last it accepted, within one step either way of its clock. So the
    step before the current one, the current one and the next are three codes without waiting;
    the step before is taken only while the next five seconds (typing, submitting) stay within
    one step of it."""
    while True:
        now = time.time()
        current = int(now // 30)
        earlier_ok = now + 5 < (current + 1) * 30
        for step in (current - 1, current, current + 1):
            if step == current - 1 and not earlier_ok:
                continue
            if step > max(used, default=-1):
                used.add(step)
                return totp(secret, step * 30)
        time.sleep(1)


class Callback:
    """A loopback redirect URI (as a native app runs): records the URL it is called with."""

    def __init__(self):
        seen: list[str] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's name
                if self.path.startswith("/callback?"):  # not the browser's /favicon.ico
                    seen.append(self.path)
                self.send_response(200)
                self.send_header("content-type", "text/plain")
                self.end_headers()
                self.wfile.write(b"You can close this window.")

            def log_message(self, *args):
                pass

        self.server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        self.seen = seen
        self.uri = f"http://127.0.0.1:{self.server.server_address[1]}/callback"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def last(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{self.seen[-1]}"


@pytest.fixture(scope="module")
def browser():
    chromedriver = shutil.which("chromedriver")
    if chromedriver is None:
        if os.environ.get("KEYGATE_REQUIRE_BROWSER"):
            pytest.fail("chromedriver is not installed (KEYGATE_REQUIRE_BROWSER is set)")
        pytest.skip("chromedriver is not installed")
    opts = Options()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        opts.add_argument(arg)
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium:
        opts.binary_location = chromium
    driver = webdriver.Chrome(service=Service(chromedriver), options=opts)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def submit(driver, css: str) -> None:
    """Clicks a form's button and waits until the next page has replaced this one."""
    old = driver.find_element(By.TAG_NAME, "html")
    driver.find_element(By.CSS_SELECTOR, css).click()

    def replaced(_driver) -> bool:
        try:
            old.is_enabled()
            return False
        except StaleElementReferenceException:
            return True
        except WebDriverException as e:
            # Chromium at times answers for a node of the page being replaced with an inspector
            # error instead of a stale element (selenium's staleness_of then raises it).
            if "does not belong to the document" in str(e):
                return True
            raise

    WebDriverWait(driver, 15).until(replaced)


def owner_with_2fa(keygate, driver) -> tuple[str, str, set[int]]:
    """A funded account whose owner turned on 2FA in the console; the browser stays logged in."""
    name = keygate.account({"USDT": "10000"})
    driver.delete_all_cookies()
    driver.get(keygate.url + "/console/login")
    driver.find_element(By.ID, "name").send_keys(name)
    driver.find_element(By.ID, "password").send_keys(PASSWORD)
    submit(driver, "form[action='/console/login'] button[type=submit]")
    driver.get(keygate.url + "/console/2fa")
    submit(driver, "form[action='/console/2fa/enroll'] button[type=submit]")
    secret = driver.find_element(By.ID, "totp-secret").text
    used: set[int] = set()
    driver.find_element(By.ID, "code").send_keys(fresh_code(secret, used))
    submit(driver, "form[action='/console/2fa/confirm'] button[type=submit]")
    assert "recovery" in driver.page_source.lower()
    # Log out, so the app's request meets the login and 2FA prompts.
    submit(driver, "form[action='/console/logout'] button[type=submit]")
    return name, secret, used


def register(keygate, redirect_uri: str, name: str = "Grid Bot") -> dict:
    return keygate.cli(
        "apps", "register", "--name", name, "--homepage", "https://gridbot.example",
        "--publisher-domain", "gridbot.example", "--redirect-uri", redirect_uri,
        "--max-permissions", "read,trade", "--client-type", "confidential",
    )


def doc_example() -> str:
    text = (REPO / "docs" / "apps.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(blocks) == 1, "docs/apps.md holds one Python example"
    assert len(blocks[0].strip().splitlines()) <= 30, "the example is at most 30 lines"
    return blocks[0]


def consent_in_browser(driver, keygate, name, secret, used, callback, narrow):
    """The owner's side of `browser(url)`: login, 2FA, consent (narrowed by `narrow`)."""

    def browser(url: str) -> str:
        before = len(callback.seen)
        driver.get(url)
        if "/console/login" in driver.current_url and "totp" not in driver.current_url:
            driver.find_element(By.ID, "name").send_keys(name)
            driver.find_element(By.ID, "password").send_keys(PASSWORD)
            submit(driver, "form[action='/console/login'] button[type=submit]")
        if "/console/login/totp" in driver.current_url:
            driver.find_element(By.ID, "code").send_keys(fresh_code(secret, used))
            submit(driver, "form[action='/console/login/totp'] button[type=submit]")
        assert "/oauth/authorize" in driver.current_url, driver.current_url
        page = driver.page_source
        assert "Grid Bot" in page and "gridbot.example" in page
        assert driver.find_element(By.ID, "warn-unverified").is_displayed()
        assert driver.find_element(By.ID, "warn-trade").is_displayed()
        narrow(driver)
        driver.find_element(By.ID, "code").send_keys(fresh_code(secret, used))
        submit(driver, "#allow")
        deadline = time.monotonic() + 10
        while len(callback.seen) == before and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(callback.seen) > before, f"the redirect URI was not called: {driver.current_url}"
        return callback.last()

    return browser


def test_the_documented_app_connects_through_chromium_and_trades_until_disconnected(keygate, browser):
    callback = Callback()
    app = register(keygate, callback.uri)
    name, secret, used = owner_with_2fa(keygate, browser)

    def narrow(driver):
        driver.find_element(By.ID, "symbols").send_keys("BTCUSDT")
        driver.find_element(By.ID, "ip_allowlist").send_keys("127.0.0.1")

    env = {
        "BASE": keygate.url,
        "CLIENT_ID": app["client_id"],
        "CLIENT_SECRET": app["client_secret"],
        "REDIRECT_URI": callback.uri,
        "browser": consent_in_browser(browser, keygate, name, secret, used, callback, narrow),
    }
    exec(compile(doc_example(), "docs/apps.md", "exec"), env)  # noqa: S102 - the doc's own example
    token, ex = env["token"], env["ex"]
    assert token["key_type"] == "ed25519" and "secret_key" not in token
    assert token["scope"] == "read trade"
    assert token["authorization_details"][0]["symbols"] == ["BTCUSDT"]

    # ccxt trades with the issued key, within what the owner chose.
    order = ex.create_order("BTC/USDT", "limit", "buy", 0.001, 40000)
    assert order["status"] == "open"
    ex.cancel_order(order["id"], "BTC/USDT")
    with pytest.raises(ccxt.BaseError):
        ex.create_order("ETH/USDT", "limit", "buy", 0.01, 1000)  # not a symbol the owner allowed
    restrictions = ex.sapiGetAccountApiRestrictions()
    assert restrictions["keygateConnectedApp"] == app["client_id"]
    keys = keygate.cli("keys", "list", "--account", name)
    assert [k["app"] for k in keys] == [app["client_id"]]

    # Disconnect in the console: the next request is refused with -2015.
    browser.get(keygate.url + "/console/apps")
    assert "Grid Bot" in browser.page_source and token["api_key"] in browser.page_source
    submit(browser, f"#disconnect-{app['client_id']}")
    assert browser.find_element(By.ID, "no-apps").is_displayed()
    with pytest.raises(REFUSED, match="-2015"):
        ex.fetch_balance()


def test_suspending_an_app_stops_all_its_keys_and_refusals_issue_nothing(keygate, browser):
    from authlib.common.security import generate_token
    from authlib.integrations.base_client.errors import OAuthError
    from authlib.integrations.requests_client import OAuth2Session

    callback = Callback()
    app = register(keygate, callback.uri, name="Grid Bot")
    name, secret, used = owner_with_2fa(keygate, browser)
    browser_fn = consent_in_browser(browser, keygate, name, secret, used, callback, lambda d: None)
    meta = requests.get(keygate.url + "/.well-known/oauth-authorization-server").json()

    def connect() -> dict:
        oauth = OAuth2Session(app["client_id"], app["client_secret"], redirect_uri=callback.uri,
                              scope="read trade", code_challenge_method="S256")
        verifier = generate_token(64)
        url, _ = oauth.create_authorization_url(meta["authorization_endpoint"], code_verifier=verifier)
        redirected = browser_fn(url)
        token = oauth.fetch_token(meta["token_endpoint"], authorization_response=redirected, code_verifier=verifier)
        # The same code again: refused, and the key it issued is revoked.
        return token, oauth, redirected, verifier

    token, oauth, redirected, verifier = connect()
    assert token["key_type"] == "hmac" and token["secret_key"].startswith("kgs_")
    live = ccxt.binance({"apiKey": token["api_key"], "secret": token["secret_key"]})
    for n, u in live.urls["api"].items():
        if isinstance(u, str):
            live.urls["api"][n] = keygate.url + urllib.parse.urlsplit(u).path
    live.fetch_balance()
    with pytest.raises(OAuthError, match="invalid_grant"):
        oauth.fetch_token(meta["token_endpoint"], authorization_response=redirected, code_verifier=verifier)
    with pytest.raises(REFUSED, match="-2015"):
        live.fetch_balance()

    token2, *_ = connect()
    second = ccxt.binance({"apiKey": token2["api_key"], "secret": token2["secret_key"]})
    for n, u in second.urls["api"].items():
        if isinstance(u, str):
            second.urls["api"][n] = keygate.url + urllib.parse.urlsplit(u).path
    second.fetch_balance()
    done = keygate.cli("apps", "suspend", app["client_id"])
    assert done["keys_revoked"] == 1
    with pytest.raises(REFUSED, match="-2015"):
        second.fetch_balance()

    # Refusals: no state (back to the app with an error), an unregistered redirect URI (a page,
    # no redirect). Nothing was issued by either.
    app2 = register(keygate, callback.uri, name="Grid Bot")
    q = {"response_type": "code", "client_id": app2["client_id"], "redirect_uri": callback.uri,
         "scope": "read", "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
         "code_challenge_method": "S256"}
    r = requests.get(meta["authorization_endpoint"], params=q, allow_redirects=False)
    assert r.status_code == 303 and "error=invalid_request" in r.headers["location"]
    r = requests.get(meta["authorization_endpoint"], params={**q, "state": "s", "redirect_uri": "http://127.0.0.1:1/x"},
                     allow_redirects=False)
    assert r.status_code == 400 and "location" not in r.headers
    keys = keygate.cli("keys", "list", "--account", name)
    assert all(k["status"] == "revoked" for k in keys)
