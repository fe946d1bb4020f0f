"""The operator's walk through the console in a real browser, against the real server: issue a key on /keys,
chat with it on /chat, find the request on /logs, see it on /dashboard, revoke the key. Every page is
watched (no console errors, no uncaught exceptions, nothing fetched from anywhere but the server)."""

from __future__ import annotations

import csv
import io
import re

import pytest

try:
    from playwright.sync_api import expect
except ImportError:  # the browser fixtures skip (or fail, under CI) and say why
    expect = None

from tests.browser.conftest import MASTER

pytestmark = pytest.mark.e2e

BAD_SHAPE = "sk-aip-12"
WELL_FORMED_UNKNOWN = "sk-aip-0123456789abcdef-" + "A" * 43


def test_issue_chat_find_see_revoke(open_page, site):
    page = open_page("1440", "light")
    requests: list = []
    page.on("request", lambda r: requests.append(r))

    # -- /keys: issue a key with the master key ------------------------------------------------------------
    page.goto("/keys")
    page.fill("#master", MASTER)
    page.click("#load")
    page.wait_for_selector("#status:has-text('keys')")
    page.click("#new")
    page.fill("#f-user", "walk-user")
    page.fill("#f-name", "browser walk")
    page.fill("#f-models", "sandbox*, gpt-4o*")
    page.fill("#f-rpm", "0")
    page.fill("#f-budget", "1.50")
    page.select_option("#f-period", "monthly")
    page.click("#edit-save")
    page.wait_for_selector("#newkey:not(.hidden)")
    key = page.inner_text("#newkey-value").strip()
    assert re.fullmatch(r"sk-aip-[0-9a-f]{16}-[A-Za-z0-9_-]{43}", key)
    page.click("#newkey-copy")
    assert page.evaluate("() => navigator.clipboard.readText()") == key
    row = page.locator("tr", has_text="browser walk")
    expect(row.locator(".pill", has_text="active")).to_have_count(1)
    expect(row).to_contain_text("$0.00 of $1.50 monthly")  # spend against the budget at a glance
    page.fill("#q", "no-such-key-anywhere")
    page.wait_for_selector("text=No key matches")
    page.fill("#q", "walk")
    expect(page.locator("tbody tr")).to_have_count(1)
    page.click("#newkey-use")

    # -- /chat: a partial key is never sent; a bad key keeps the message ------------------------------------
    page.goto("/chat")
    page.wait_for_selector("#model option[value=sandbox]", state="attached")
    labels = page.eval_on_selector_all("#model optgroup", "gs => gs.map(g => g.label)")
    assert labels == ["Provider configured", "No credentials: the sandbox answers"]  # no provider key: sandbox stands in
    assert "sandbox stands in" in page.inner_text("#model optgroup:nth-of-type(2)")
    page.fill("#key", "")
    seen = len([r for r in requests if "/v1/models" in r.url])
    page.type("#key", BAD_SHAPE, delay=15)
    page.wait_for_timeout(700)
    assert len([r for r in requests if "/v1/models" in r.url]) == seen  # no partial key reaches the server
    page.fill("#message", "keep this message")
    page.click("#send")
    assert page.input_value("#message") == "keep this message"
    assert "not a gateway key" in page.inner_text("#key-note")
    page.watch.expected_http.append(401)
    page.fill("#key", WELL_FORMED_UNKNOWN)
    page.wait_for_selector("#models-note:has-text('Incorrect API key')")
    page.click("#send")
    page.wait_for_timeout(300)
    assert page.input_value("#message") == "keep this message"  # the 401 did not eat it
    page.watch.expected_http.remove(401)

    # -- /chat: the real key, a streamed answer rendered as safe markdown ---------------------------------
    page.fill("#key", key)
    page.wait_for_selector("#models-note:has-text('answered by the sandbox')")
    page.select_option("#model", "sandbox")
    prompt = "Say **hi** <img src=x onerror=alert(1)>"
    page.fill("#message", prompt)
    page.press("#message", "Enter")
    answer = page.locator(".msg.assistant").last
    answer.locator(".meta .pill", has_text="total").wait_for()
    assert page.input_value("#message") == ""
    bubble = answer.locator(".bubble")
    assert bubble.locator("strong", has_text="hi").count() == 1  # markdown rendered
    assert bubble.locator("img").count() == 0 and "<img src=x" in bubble.inner_text()  # raw HTML shown as text
    meta = answer.locator(".meta").inner_text()
    assert "provider: sandbox" in meta and "cache: miss" in meta
    log_href = answer.locator(".meta a").get_attribute("href")
    proxy_id = log_href.split("id=")[1]
    chat_calls = [r for r in requests if r.url.endswith("/v1/chat/completions")]
    assert "cache-control" not in {h.lower() for h in chat_calls[-1].headers}  # no fetch cache option any more

    # The same request again hits the gateway cache (the playground no longer sends Cache-Control: no-cache).
    page.click("#clear")
    page.fill("#message", prompt)
    page.click("#send")
    page.locator(".msg.assistant .meta .pill", has_text="total").wait_for()
    assert "cache: hit-exact" in page.locator(".msg.assistant").last.locator(".meta").inner_text()
    # "Bypass the cache" sends no-cache (no lookup, the answer is stored), and only then.
    page.check("#nocache")
    page.click("#clear")
    page.fill("#message", prompt)
    page.click("#send")
    page.locator(".msg.assistant .meta .pill", has_text="total").wait_for()
    assert "cache: bypass" in page.locator(".msg.assistant").last.locator(".meta").inner_text()
    assert [r for r in requests if r.url.endswith("/v1/chat/completions")][-1].headers.get("cache-control") == "no-cache"
    page.uncheck("#nocache")

    # Tools and JSON mode (not streamed): the sandbox calls the tool, then answers a JSON object.
    page.click("#options > summary") if not page.is_visible("#tools-on") else None
    page.uncheck("#stream")
    page.check("#tools-on")
    page.fill("#message", "Weather in Paris?")
    page.click("#send")
    call = page.locator(".msg.assistant").last.locator(".tool-call")
    expect(call).to_contain_text("tool call: get_weather")
    assert '"city"' in call.inner_text()
    page.uncheck("#tools-on")
    page.check("#json-mode")
    page.fill("#message", "A colour as JSON")
    page.click("#send")
    expect(page.locator(".msg.assistant").last.locator(".meta")).to_contain_text("total")
    assert '"sandbox"' in page.locator(".msg.assistant").last.locator(".bubble").inner_text()
    page.uncheck("#json-mode")
    page.check("#stream")

    # View code: curl, Python and Node for the request, in ARIA tabs that arrow keys move between.
    page.fill("#message", "What is in the code view?")
    page.click("#view-code")
    assert "$AIPROXY_KEY" in page.inner_text("#code-curl") and "What is in the code view?" in page.inner_text("#code-curl")
    page.focus("#ct-curl")
    page.keyboard.press("ArrowRight")
    assert page.get_attribute("#ct-python", "aria-selected") == "true"
    assert "from openai import OpenAI" in page.inner_text("#code-python")
    page.keyboard.press("Escape")

    # -- /logs: the request is there, and its detail --------------------------------------------------------
    page.goto("/logs")
    page.click("#apply")
    expect(page.locator("tr.rec")).to_have_count(5)
    assert page.locator("tr.rec").nth(2).locator(".pill", has_text="bypass").count() == 1  # newest first
    page.goto(log_href)  # the playground's link: /logs?id=<proxy_id>
    page.wait_for_selector("#detail[open] .detail-grid")
    detail = page.inner_text("#detail-body")
    assert proxy_id in detail and "walk-user" in detail and "sandbox" in detail and "latency" in detail
    page.keyboard.press("Escape")
    page.select_option("#f-cache", "hit-exact")
    page.click("#apply")
    page.wait_for_selector("#page-note:has-text('1 requests')")
    page.locator("tr.rec button").first.click()
    page.wait_for_selector("#detail[open] .detail-grid")
    assert "hit-exact" in page.inner_text("#detail-body")
    page.keyboard.press("Escape")

    # -- /dashboard: the five requests, by the model asked for, as CSV ---------------------------------------
    page.goto("/dashboard")
    page.click("#load")
    page.wait_for_selector("#status:has-text('loaded in')")
    assert page.inner_text("#stat-requests .value") == "5"
    ticks = page.eval_on_selector_all("#chart text.axis", "ts => ts.map(t => t.textContent)")
    y = [t for t in ticks if not re.fullmatch(r"\d\d-\d\d", t)]
    assert y == sorted(set(y), key=y.index) and all(re.fullmatch(r"\d+", t) for t in y)  # 0 1 2 3, never "0 0 1 1"
    assert page.locator("#bd-panel th[scope=row]", has_text="sandbox").count() == 1
    assert "5 requests, all at $0" in page.text_content("#chart-cost")  # not "No usage" over free requests
    with page.expect_download() as dl:
        page.click("#csv")
    rows = list(csv.reader(io.StringIO(dl.value.path().read_text())))
    assert rows[0][:3] == ["Model asked for", "Requests", "Errors"] and rows[1][:2] == ["sandbox", "5"]
    page.click("#scope button[data-scope=master]")
    page.fill("#key", MASTER)
    page.click("#load")
    page.wait_for_selector("#status:has-text('All keys')")
    page.click("#bt-key")
    assert page.locator("#bd-panel th[scope=row]").count() >= 1

    # -- /keys: revoke it; the playground then gets 401 and keeps the message --------------------------------
    page.goto("/keys")
    page.wait_for_selector("tr:has-text('browser walk')")
    page.locator("tr", has_text="browser walk").locator("button", has_text="Revoke").click()
    page.click("#confirm-yes")
    page.wait_for_selector("#status:has-text('Revoked')")
    page.select_option("#state", "revoked")
    expect(page.locator("tr", has_text="browser walk").locator(".pill", has_text="revoked")).to_have_count(1)
    page.watch.expected_http.append(401)
    page.goto("/chat")
    page.wait_for_selector("#models-note:has-text('revoked')")
    page.fill("#message", "after revoking")
    page.click("#send")
    page.wait_for_timeout(300)
    assert page.input_value("#message") == "after revoking"
    page.watch.check()
