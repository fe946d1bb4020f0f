"""Browser fixtures: the real server (``bin/start.sh``) and Debian's Chromium driven by Playwright for Python.

Chromium is ``/usr/bin/chromium`` (``CHROMIUM`` overrides it), installed by ``bin/ensure-chromium.sh`` from
``make install-dev``; never ``playwright install``, which downloads a build. Without Chromium or Playwright the
tests skip with the reason, except under CI (``CI`` set), where they fail.

Every page a test opens is watched: a console error (CSP violations included), an uncaught exception or a
request to anywhere but this server fails the test; requests elsewhere are intercepted and failed, never sent.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlsplit

import httpx
import pytest

from tests.e2e.server import ServerProcess

MASTER = "browser-master-key-0123456789-abcdefghijkl"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
AXE = Path(__file__).with_name("vendor") / "axe.min.js"
WIDTHS = {"390": {"width": 390, "height": 844}, "1440": {"width": 1440, "height": 900}}


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI must run the browser tests (make install-dev installs Chromium with apt)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def playwright_api():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("Playwright for Python is not installed (pip install -r requirements-dev.txt)")
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        _unavailable(f"{CHROMIUM} is missing (bin/ensure-chromium.sh installs it with apt-get)")
    with sync_playwright() as pw:
        yield pw


@pytest.fixture(scope="session")
def browser(playwright_api):
    b = playwright_api.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
    yield b
    b.close()


@pytest.fixture(scope="session")
def site(redis_url):
    """The real server on a free port of 127.0.0.1: sandbox provider only (no upstream), one gevent worker."""
    proc = ServerProcess({"REDIS_URL": redis_url, "REDIS_PREFIX": "browser:", "AIPROXY_MASTER_KEY": MASTER,
                          "SEMANTIC_CACHE": "false", "RATE_LIMIT": "600"}, workers=1)
    yield proc
    proc.stop()


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory) -> Path:
    """Where page screenshots go (``<pytest basetemp>/screenshots``), for a person to look at."""
    path = tmp_path_factory.getbasetemp() / "screenshots"
    path.mkdir(exist_ok=True)
    return path


def issue_key(site: ServerProcess, **body: Any) -> dict[str, Any]:
    body.setdefault("user_id", "browser-user")
    resp = httpx.post(site.url + "/admin/keys", json=body, headers={"Authorization": f"Bearer {MASTER}"})
    assert resp.status_code == 201, resp.text
    return resp.json()


class Watch:
    """What went wrong on a page: console errors, uncaught exceptions, requests that left the server."""

    def __init__(self, origin: str) -> None:
        self.origin = origin
        self.console: list[str] = []
        self.exceptions: list[str] = []
        self.blocked: list[str] = []
        self.expected_http: list[int] = []  # statuses a test provokes on purpose (e.g. a bad key's 401)

    def intercept(self, cdp: Any) -> None:
        """Pause every request of the page (DevTools ``Fetch`` domain) and let through only those to this server;
        any other is failed before it is sent, and recorded. (Playwright's ``route`` would do the same but also
        switches the browser's HTTP cache off, which makes Chromium send ``Cache-Control: no-cache`` on every
        request, and the gateway cache would never hit: exactly what these tests must be able to see.)"""
        def paused(event: dict[str, Any]) -> None:
            url = event["request"]["url"]
            parts = urlsplit(url)
            if f"{parts.scheme}://{parts.netloc}" == self.origin:
                cdp.send("Fetch.continueRequest", {"requestId": event["requestId"]})
            else:
                self.blocked.append(url)
                cdp.send("Fetch.failRequest", {"requestId": event["requestId"], "errorReason": "BlockedByClient"})

        cdp.on("Fetch.requestPaused", paused)
        cdp.send("Fetch.enable", {"patterns": [{"urlPattern": "*", "requestStage": "Request"}]})

    def on_console(self, msg: Any) -> None:
        if msg.type != "error":
            return
        m = re.search(r"status of (\d{3})", msg.text)
        if m and int(m.group(1)) in self.expected_http:
            return
        self.console.append(f"{msg.text} @ {msg.location.get('url', '')}")

    def check(self) -> None:
        assert not self.blocked, f"requests left {self.origin}: {self.blocked}"
        assert not self.exceptions, f"uncaught exceptions: {self.exceptions}"
        assert not self.console, f"console errors: {self.console}"


@pytest.fixture
def open_page(browser, site) -> Iterator[Any]:
    """``open_page(width="1440", scheme="light", storage={...})`` → a fresh page (own context, so its own
    sessionStorage) watched by ``Watch``; every watch is checked when the test ends."""
    contexts, watches = [], []

    def make(width: str = "1440", scheme: str = "light", storage: dict[str, str] | None = None):
        ctx = browser.new_context(viewport=WIDTHS[width], color_scheme=scheme, base_url=site.url,
                                  accept_downloads=True, reduced_motion="reduce")
        ctx.grant_permissions(["clipboard-read", "clipboard-write"], origin=site.url)
        watch = Watch(site.url)
        if storage:
            pairs = ";".join(f"sessionStorage.setItem({k!r}, {v!r})" for k, v in storage.items())
            ctx.add_init_script(f"if (location.origin === {site.url!r}) {{ {pairs}; }}")
        page = ctx.new_page()
        ctx.on("page", lambda p: watch.blocked.append(f"a new page was opened: {p.url}"))
        watch.intercept(ctx.new_cdp_session(page))
        page.on("console", watch.on_console)
        page.on("pageerror", lambda exc: watch.exceptions.append(str(exc)))
        page.set_default_timeout(15000)
        page.watch = watch
        contexts.append(ctx)
        watches.append(watch)
        return page

    yield make
    for ctx in contexts:
        ctx.close()
    for watch in watches:
        watch.check()


def run_axe(page: Any) -> list[dict[str, Any]]:
    """axe-core (vendored from npm, tests/browser/vendor) on the page as it is; the serious and critical
    violations. Evaluated through the DevTools protocol, so the page's CSP stays as strict as served."""
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.evaluate(AXE.read_text(encoding="utf-8") + "\n;undefined")
    result = page.evaluate("""async () => {
        const r = await axe.run(document, {resultTypes: ["violations"]});
        return r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
            nodes: v.nodes.slice(0, 5).map(n => n.target.join(" ") + " :: " + (n.failureSummary || "").split("\\n").slice(0, 3).join(" "))}));
    }""")
    return [v for v in result if v["impact"] in ("serious", "critical")]


def horizontal_overflow(page: Any) -> list[str]:
    """Elements that stick out of the viewport to the right (empty when the page fits)."""
    return page.evaluate("""() => {
        const vw = document.documentElement.clientWidth, out = [];
        if (document.documentElement.scrollWidth <= vw) return out;
        for (const el of document.querySelectorAll("body *")) {
            const r = el.getBoundingClientRect();
            if (r.right > vw + 1 && r.width > 0 && getComputedStyle(el).position !== "fixed") {
                out.push(el.tagName.toLowerCase() + (el.id ? "#" + el.id : "") + (el.className && typeof el.className === "string" ? "." + el.className.split(" ").join(".") : "") + " right=" + Math.round(r.right));
                if (out.length > 8) break;
            }
        }
        return out.length ? out : ["document scrollWidth " + document.documentElement.scrollWidth + " > " + vw];
    }""")
