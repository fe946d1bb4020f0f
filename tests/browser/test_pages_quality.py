"""Every console page in Chromium at 390 px and 1440 px, light and dark: axe-core finds no serious or critical
violation, nothing sticks out sideways at 390 px, no console error, nothing fetched from elsewhere; a
full-page screenshot of each goes to ``<basetemp>/screenshots``. Keyboard: every stop of the tab order shows
its focus, the skip link leads to the content, dialogs and tabs work without a mouse."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.browser.conftest import MASTER, horizontal_overflow, issue_key, run_axe

pytestmark = pytest.mark.e2e

MARKDOWN_ANSWER = ("Here is **bold**, `code`, a [link](/docs) and a list:\n\n- one\n- two\n\n```python\nprint('hi')\n```\n\n"
                   "| model | cost |\n| --- | --- |\n| sandbox | $0 |")


@pytest.fixture(scope="module")
def data(site):
    """A key with some traffic (plain, streamed, cached, refused), so every page has something to show."""
    key = issue_key(site, user_id="screens", name="screenshots", budget_usd="2.50", budget_period="monthly")
    issue_key(site, user_id="other-team", name="batch jobs", models=["gpt-4o*"], rpm=120, tpm=50000)
    auth = {"Authorization": f"Bearer {key['key']}"}
    with httpx.Client(base_url=site.url, headers=auth, timeout=20) as c:
        for text in ("Hello there", "Summarise the gateway", "Hello there"):
            assert c.post("/v1/chat/completions", json={"model": "sandbox", "messages": [{"role": "user", "content": text}]}).status_code == 200
        assert c.post("/v1/chat/completions", json={"model": "gpt-4o-mini", "stream": True,
                                                    "messages": [{"role": "user", "content": "Stream it"}]}).status_code == 200
        assert c.post("/v1/chat/completions", json={"model": "sandbox"}).status_code == 400
    conversation = [{"role": "user", "content": "Show me some markdown"}, {"role": "assistant", "content": MARKDOWN_ANSWER}]
    return {"aiproxy.gatewayKey": key["key"], "aiproxy.masterKey": MASTER, "aiproxy.chat": json.dumps(conversation),
            "aiproxy.logs.scope": "key"}


def ready(page, path: str, interact: bool = True) -> None:
    """Wait until the page has drawn what it loads (on /docs, also send a try-it and open an example)."""
    if path == "/":
        page.wait_for_selector("#health-redis:text-is('ok')")
    elif path == "/chat":
        page.wait_for_selector("#models-note:has-text('sandbox')")
    elif path == "/keys":
        page.wait_for_selector("#list table")
    elif path == "/logs":
        page.wait_for_selector("tr.rec")
    elif path == "/dashboard":
        page.wait_for_selector("#status:has-text('loaded in')")
    elif path == "/docs" and not interact:
        page.wait_for_selector("#op-createChatCompletion")
    elif path == "/docs":
        page.wait_for_selector("#op-createChatCompletion")
        page.click("#op-createChatCompletion details.try > summary") if not page.is_visible("#createChatCompletion-body") else None
        page.click("#op-createChatCompletion form.tryit button[type=submit]")
        page.wait_for_selector("#op-createChatCompletion .result pre")
        page.click("#op-createChatCompletion details:has(> summary:text-is('Responses')) > summary")
        page.click("#op-createChatCompletion details.example > summary")
        page.wait_for_selector("#op-createChatCompletion details.example pre")


PAGES = ["/", "/chat", "/keys", "/logs", "/dashboard", "/docs", "/no-such-page"]


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("width", ["390", "1440"])
def test_pages_are_accessible_and_fit(open_page, data, screenshots, width, scheme):
    problems = {}
    for path in PAGES:
        page = open_page(width, scheme, storage=data)
        if path == "/no-such-page":
            page.watch.expected_http.append(404)  # the HTML 404 page itself
        response = page.goto(path)
        assert response.status == (404 if path == "/no-such-page" else 200)
        ready(page, path)
        name = (path.strip("/") or "home").replace("/", "-")
        page.screenshot(path=str(screenshots / f"{name}-{width}-{scheme}.png"), full_page=True)
        found = run_axe(page)
        if found:
            problems[path] = found
        if width == "390":
            overflow = horizontal_overflow(page)
            assert not overflow, (path, overflow)
        page.watch.check()
        page.context.close()
    assert not problems, json.dumps(problems, indent=1)


def test_dialogs_and_details_are_accessible_too(open_page, data, screenshots):
    """The states the page tests above do not open: the key form, a log's detail, the playground's code view,
    the docs' Authorize dialog and an opened schema; at 390 px (where dialogs are tightest), dark."""
    problems = {}
    for path, action, shot in (
        ("/keys", lambda p: (p.click("#new"), p.wait_for_selector("#edit[open]")), "keys-new-dialog"),
        ("/logs", lambda p: (p.locator("tr.rec button").first.click(), p.wait_for_selector("#detail[open] .detail-grid")), "logs-detail"),
        ("/chat", lambda p: (p.click("#view-code"), p.wait_for_selector("#code-dialog[open]")), "chat-code"),
        ("/docs", lambda p: (p.click("#op-createKey details:has(> summary:has-text('Request body')) > summary"),
                             p.click("#op-createKey details.schema > summary"), p.wait_for_selector("#op-createKey .tree"),
                             p.click("#authorize-open"), p.wait_for_selector("#authorize[open]")), "docs-authorize"),
    ):
        for width in ("390",):
            page = open_page(width, "dark", storage=data)
            page.goto(path)
            ready(page, path)
            action(page)
            page.screenshot(path=str(screenshots / f"{shot}-{width}-dark.png"), full_page=False)
            found = run_axe(page)
            if found:
                problems[f"{path} {shot} {width}"] = found
            page.watch.check()
            page.context.close()
    assert not problems, json.dumps(problems, indent=1)


FOCUS_STYLE = """() => {
  const el = document.activeElement;
  if (!el || el === document.body) return null;
  const cs = getComputedStyle(el), r = el.getBoundingClientRect();
  return {tag: el.tagName.toLowerCase(), id: el.id, text: (el.textContent || "").trim().slice(0, 30),
          outline: cs.outlineStyle !== "none" && parseFloat(cs.outlineWidth) >= 2, visible: r.width > 0 && r.height > 0};
}"""


@pytest.mark.parametrize("path", ["/", "/chat", "/keys", "/logs", "/dashboard", "/docs"])
def test_keyboard_only(open_page, data, path):
    page = open_page("1440", "light", storage=data)
    page.goto(path)
    ready(page, path, interact=False)
    page.keyboard.press("Tab")
    first = page.evaluate(FOCUS_STYLE)
    assert first["text"] == "Skip to content" and first["outline"], first
    page.keyboard.press("Enter")
    assert page.evaluate("() => document.activeElement.id") == "main"
    seen = []
    for _ in range(14):
        page.keyboard.press("Tab")
        state = page.evaluate(FOCUS_STYLE)
        if state is None:
            break
        seen.append(state)
        assert state["visible"] and state["outline"], (path, state)
    assert len(seen) >= 3, (path, seen)
    page.watch.check()


def test_tabs_and_dialogs_by_keyboard(open_page, data):
    page = open_page("1440", "light", storage=data)
    page.goto("/dashboard")
    ready(page, "/dashboard")
    page.focus("#bt-requested")
    page.keyboard.press("ArrowRight")
    assert page.evaluate("() => document.activeElement.id") == "bt-model"
    assert page.get_attribute("#bt-model", "aria-selected") == "true" and page.get_attribute("#bt-model", "tabindex") == "0"
    assert "Model that answered" in page.text_content("#bd-panel thead")
    page.keyboard.press("End")
    assert page.get_attribute("#bt-provider", "aria-selected") == "true"  # the Key tab is hidden for a gateway key
    page.goto("/keys")
    ready(page, "/keys")
    page.focus("#new")
    page.keyboard.press("Enter")
    page.wait_for_selector("#edit[open]")
    assert page.evaluate("() => document.activeElement.id") == "f-user"
    page.keyboard.press("Escape")
    assert not page.is_visible("#edit")
    page.watch.check()


def test_dashboard_empty_state_and_no_stale_numbers(open_page, site, data):
    """A key with no traffic gets an empty state that says what to do; after an error the numbers go, rather
    than the previous key's staying on screen."""
    fresh = issue_key(site, user_id="nobody-yet")["key"]
    page = open_page("390", "light", storage={"aiproxy.gatewayKey": data["aiproxy.gatewayKey"]})
    page.goto("/dashboard")
    page.wait_for_selector("#status:has-text('loaded in')")
    assert page.inner_text("#stat-requests .value") not in ("0", "–")
    page.watch.expected_http.append(401)
    page.fill("#key", "sk-aip-0123456789abcdef-" + "B" * 43)
    page.click("#load")
    page.wait_for_selector("#status.error-box")
    assert page.inner_text("#stat-requests .value") == "–" and "No data loaded" in page.inner_text("#bd-panel")
    assert "Load usage to see this chart" in page.text_content("#chart")
    page.fill("#key", fresh)
    page.click("#load")
    page.wait_for_selector("#status:has-text('loaded in')")
    assert page.is_visible("#empty") and "Chat playground" in page.inner_text("#empty")
    assert "No requests in this range" in page.text_content("#chart")
    page.watch.check()
