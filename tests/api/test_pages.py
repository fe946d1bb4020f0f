"""The browser pages: HTML, security headers, no external resources, the elements each page needs."""

from __future__ import annotations

import html
import json
import re
from html.parser import HTMLParser

import pytest

from tests.api.conftest import assert_error

PAGES = ["/", "/chat", "/docs", "/dashboard", "/keys", "/logs"]
ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]


class Scan(HTMLParser):
    """Collects tags with their attributes, and the text of <script>/<style>/<textarea> blocks."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.blocks: list[tuple[str, dict[str, str | None], str]] = []
        self._open: tuple[str, dict[str, str | None]] | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append((tag, a))
        if tag in ("script", "style", "textarea"):
            self._open, self._text = (tag, a), []

    def handle_data(self, data):
        if self._open:
            self._text.append(data)

    def handle_endtag(self, tag):
        if self._open and tag == self._open[0]:
            self.blocks.append((tag, self._open[1], "".join(self._text)))
            self._open = None


def scan(text: str) -> Scan:
    parser = Scan()
    parser.feed(text)
    return parser


@pytest.mark.parametrize("path", PAGES)
def test_page_is_html_with_security_headers(client, path):
    resp = client.get(path)
    assert resp.status_code == 200
    assert resp.mimetype == "text/html"
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["Referrer-Policy"] == "no-referrer"
    csp = resp.headers["Content-Security-Policy"]
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    nonce = re.search(r"'nonce-([A-Za-z0-9_-]+)'", directives["script-src"]).group(1)
    assert directives["script-src"] == f"'self' 'nonce-{nonce}'"
    assert directives["style-src"] == f"'self' 'nonce-{nonce}'"
    assert directives["connect-src"] == "'self'"
    assert directives["default-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'"
    # Every inline script and style carries this response's nonce, or the browser would refuse it.
    page = scan(resp.get_data(as_text=True))
    blocks = [b for b in page.blocks if b[0] in ("script", "style")]
    assert len([b for b in blocks if b[0] == "script"]) >= 2 and any(b[0] == "style" for b in blocks)
    for tag, attrs, _ in blocks:
        assert attrs.get("nonce") == nonce, tag
    # Nothing the CSP would block: no inline handlers, no style attributes, no javascript: links.
    for tag, attrs in page.tags:
        assert not any(name.startswith("on") for name in attrs), (tag, attrs)
        assert "style" not in attrs, (tag, attrs)
        assert not (attrs.get("href") or "").lower().startswith("javascript:")


def test_nonce_changes_per_response(client):
    first = client.get("/chat").headers["Content-Security-Policy"]
    second = client.get("/chat").headers["Content-Security-Policy"]
    assert first != second


@pytest.mark.parametrize("path", PAGES)
def test_page_loads_nothing_from_elsewhere(client, path):
    text = client.get(path).get_data(as_text=True)
    assert not re.search(r"https?://", text), re.findall(r".{30}https?://.{30}", text)
    assert not re.search(r"(src|href|action)\s*=\s*[\"']?//", text)  # protocol-relative URLs
    page = scan(text)
    for tag, attrs in page.tags:
        for name in ("src", "href", "action"):
            value = attrs.get(name)
            if value is not None:
                assert value.startswith(("/", "#")), (tag, name, value)
    # Scripts come inline or from the vendored libraries this server serves itself (src/static/vendor).
    for t, a in page.tags:
        if t == "script" and a.get("src"):
            src = a["src"].split("?")[0]
            assert src.startswith("/static/vendor/") and (ROOT / "src" / src.lstrip("/")).is_file(), src
    assert not [t for t, a in page.tags if t == "link" and a.get("rel") == "stylesheet"]


@pytest.mark.parametrize("path", PAGES)
def test_keys_stay_in_session_storage_and_go_as_bearer(client, path):
    text = client.get(path).get_data(as_text=True)
    assert "localStorage" not in text and "document.cookie" not in text
    assert 'h["Authorization"] = "Bearer " + key' in text  # the one request helper every page uses
    for fetch in re.findall(r"fetch\(([^,)]+)", text):  # no key is ever put in a URL
        assert "key" not in fetch.lower(), fetch


def test_nav_links_every_page(client):
    page = scan(client.get("/").get_data(as_text=True))
    hrefs = {a.get("href") for t, a in page.tags if t == "a"}
    assert set(PAGES) <= hrefs


def test_landing_shows_health_and_quick_start(client):
    text = client.get("/").get_data(as_text=True)
    assert "/api/v1/health" in text and 'id="health-status"' in text
    assert "/v1/chat/completions" in text and "/admin/keys" in text
    assert "from openai import OpenAI" in text and 'base_url="{ORIGIN}/v1"' in text
    assert "location.origin" in text
    assert "Authorization: Bearer $AIPROXY_KEY" in text


def test_chat_playground_elements(client):
    text = client.get("/chat").get_data(as_text=True)
    page = scan(text)
    ids = {a.get("id"): (t, a) for t, a in page.tags if a.get("id")}
    assert ids["key"][1]["type"] == "password"
    assert ids["model"][0] == "select" and ids["system"][0] == "textarea" and ids["message"][0] == "textarea"
    assert ids["stream"][1]["type"] == "checkbox" and "send" in ids and "stop" in ids
    for needle in ('"/v1/models"', '"/v1/chat/completions"', "getReader()", 'startsWith("data:")', '"[DONE]"',
                   "ev.error", "include_usage: true", "x-aiproxy-id", "x-aiproxy-cache", "x-aiproxy-provider",
                   "AbortController", "sessionStorage"):
        assert needle in text, needle


def test_docs_renders_every_operation_of_the_spec_with_a_try_it_form(client):
    spec = client.get("/openapi.json").get_json()
    text = client.get("/docs").get_data(as_text=True)
    page = scan(text)
    sections = {a["data-endpoint"]: a for t, a in page.tags if t == "section" and a.get("data-endpoint")}
    operations = {op["operationId"]: (path, method, op) for path, item in spec["paths"].items() for method, op in item.items()}
    assert set(sections) == set(operations)
    forms = len([1 for t, a in page.tags if t == "form" and "tryit" in (a.get("class") or "")])
    assert forms == len([1 for _, _, op in operations.values() if op["tags"][0] != "Browser pages"])
    names = {a.get("name") for t, a in page.tags if t == "input"}
    for op_id, (path, method, op) in operations.items():
        assert sections[op_id]["data-path"] == path and sections[op_id]["data-method"] == method
        for p in op.get("parameters", []):
            assert f"{p['in']}:{p['name']}" in names, (op_id, p["name"])
    # One Authorize for the whole page (a gateway key and a master key), not a key field per form.
    assert [a["id"] for t, a in page.tags if t == "input" and a.get("type") == "password"] == ["auth-key", "auth-master"]
    # Every prefilled body is the operation's first example, as valid JSON.
    bodies = {a["id"]: html.unescape(body) for tag, a, body in page.blocks if tag == "textarea"}
    chat = json.loads(bodies["createChatCompletion-body"])
    assert chat["model"] and chat["messages"][-1]["role"] == "user"
    assert json.loads(bodies["createKey-body"])["user_id"]
    assert sections["createKey"]["data-auth"] == "master" and sections["health"]["data-auth"] == "open"
    assert sections["createChatCompletion"]["data-auth"] == "key" and sections["getLog"]["data-auth"] == "either"
    for needle in ('"/openapi.json"', "Copy curl", "$AIPROXY_KEY", "$AIPROXY_MASTER_KEY", 'id="authorize"'):
        assert needle in text, needle


def test_docs_try_it_works_against_the_real_api(client, admin):
    """The prefilled example bodies are accepted by the endpoints they sit under."""
    page = scan(client.get("/docs").get_data(as_text=True))
    bodies = {a["id"]: json.loads(html.unescape(b)) for tag, a, b in page.blocks if tag == "textarea" and b.strip()}
    key = admin.create_key(**bodies["createKey-body"])["key"]
    auth = {"Authorization": f"Bearer {key}"}
    assert client.post("/v1/chat/completions", json=bodies["createChatCompletion-body"], headers=auth).status_code == 200
    assert client.post("/v1/embeddings", json=bodies["createEmbedding-body"], headers=auth).status_code == 200
    assert client.post("/api/v1/webhook", json=bodies["webhook-body"], headers=auth).status_code == 200
    for vendor in ("vendor-o", "vendor-b"):
        assert client.post(f"/{vendor}/messages", json=bodies[f"{vendor.replace('-', '_')}-body"]).status_code == 200


def test_docs_lists_vendors_only_where_they_are_served(make_settings):
    from src.app import create_app

    dev = create_app(make_settings()).test_client().get("/docs").get_data(as_text=True)
    prod_settings = make_settings(ENVIRONMENT="production")
    prod = create_app(prod_settings).test_client().get("/docs").get_data(as_text=True)
    assert "/vendor-a/messages" in dev and "/vendor-e/messages" in dev
    assert "/vendor-a/messages" not in prod and "/v1/chat/completions" in prod


def test_dashboard_elements(client):
    text = client.get("/dashboard").get_data(as_text=True)
    page = scan(text)
    ids = {a.get("id"): (t, a) for t, a in page.tags if a.get("id")}
    assert ids["start"][1]["type"] == "date" and ids["end"][1]["type"] == "date"
    assert ids["key"][1]["type"] == "password" and ids["chart"][0] == "svg"
    assert {a.get("data-scope") for t, a in page.tags if a.get("data-scope")} == {"key", "master"}
    for stat in ("requests", "errors", "tokens-in", "tokens-out", "cost", "hit-rate", "savings", "latency"):
        assert f"stat-{stat}" in ids, stat
    for needle in ('"/api/usage"', '"/admin/usage"', "by_day", "by_model", "cache_hit_rate", "saved_cost_usd", "p95"):
        assert needle in text, needle


def test_api_errors_stay_json_next_to_the_pages(client):
    assert_error(client.get("/no-such-page"), 404, "not_found")
    resp = client.post("/chat")
    assert resp.status_code == 405 and resp.mimetype == "application/json"


def test_keys_page_elements(client):
    text = client.get("/keys").get_data(as_text=True)
    page = scan(text)
    ids = {a.get("id"): (t, a) for t, a in page.tags if a.get("id")}
    assert ids["master"][1]["type"] == "password" and ids["q"][1]["type"] == "search"
    assert ids["edit"][0] == "dialog" and ids["confirm"][0] == "dialog"
    for field in ("f-user", "f-name", "f-models", "f-rpm", "f-tpm", "f-budget", "f-period", "f-expires", "f-cache", "f-scope",
                  "f-active", "newkey-copy"):
        assert field in ids, field
    labelled = {a.get("for") for t, a in page.tags if t == "label"}
    assert {"f-user", "f-models", "f-budget", "f-period", "f-expires"} <= labelled
    for needle in ('"/admin/keys"', '"/admin/usage"', '"PATCH"', '"DELETE"', "spend", "key_hint", "budget_usd"):
        assert needle in text, needle


def test_logs_page_elements(client):
    text = client.get("/logs").get_data(as_text=True)
    page = scan(text)
    ids = {a.get("id"): (t, a) for t, a in page.tags if a.get("id")}
    assert ids["key"][1]["type"] == "password" and ids["detail"][0] == "dialog"
    names = {a.get("name") for t, a in page.tags if t in ("input", "select")}
    assert {"key_id", "user_id", "model", "provider", "status", "cache", "since", "until", "limit"} <= names
    for needle in ('"/api/logs"', '"/admin/logs"', '"/api/logs/"', "next_cursor", "has_more", "cursor", "cache_similarity",
                   "upstream_error", "request_id", "ttfb_ms"):
        assert needle in text, needle


@pytest.mark.parametrize("path", PAGES)
def test_pages_let_the_gateway_cache_work_and_tabs_have_roles(client, path):
    text = client.get(path).get_data(as_text=True)
    # fetch(..., {cache: "no-store"}) makes browsers send Cache-Control: no-cache, bypassing the gateway cache.
    assert not re.search(r"cache\s*:\s*[\"']no-(store|cache)", text)
    page = scan(text)
    for t, a in page.tags:
        if a.get("role") == "tablist":
            assert a.get("aria-label") or a.get("aria-labelledby")
        if a.get("role") == "tab":
            assert a.get("aria-controls") and a.get("aria-selected") in ("true", "false"), a


def test_unknown_page_is_html_for_browsers_and_json_for_api_clients(client):
    browser = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
    resp = client.get("/no-such-page", headers=browser)
    assert resp.status_code == 404 and resp.mimetype == "text/html"
    assert "Page not found" in resp.get_data(as_text=True) and "Content-Security-Policy" in resp.headers
    assert_error(client.get("/no-such-page", headers={"Accept": "*/*"}), 404, "not_found")
    assert_error(client.get("/no-such-page", headers={"Accept": "application/json"}), 404, "not_found")
    assert_error(client.get("/v1/no-such-endpoint", headers=browser), 404, "not_found")  # API paths stay JSON
    assert_error(client.post("/no-such-page", headers=browser), 404, "not_found")


def test_vendored_assets_are_served_with_their_licences(client):
    for name in ("marked.umd.js", "purify.min.js"):
        resp = client.get(f"/static/vendor/{name}")
        assert resp.status_code == 200 and resp.mimetype in ("text/javascript", "application/javascript")
        assert resp.headers["X-Content-Type-Options"] == "nosniff" and "max-age" in resp.headers["Cache-Control"]
        resp.close()
    for licence in ("marked.LICENSE.md", "dompurify.LICENSE"):
        assert (ROOT / "src/static/vendor" / licence).is_file()
    assert client.get("/static/../views/pages.py").status_code == 404


def test_favicon_is_served_locally(client):
    resp = client.get("/favicon.svg")
    assert resp.status_code == 200 and resp.mimetype == "image/svg+xml"
    assert resp.get_data(as_text=True).startswith("<svg")
