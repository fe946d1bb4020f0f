"""Rate limits, budgets, policy and the failed-auth throttle through the Flask client (real Redis)."""

from __future__ import annotations

from decimal import Decimal

from tests.api.conftest import MASTER, assert_error, chat_body

URL = "/v1/chat/completions"


def post(client, key, **kw):
    headers = {"Authorization": f"Bearer {key}", "Cache-Control": "no-store", **kw.pop("headers", {})}
    resp = client.post(URL, json=chat_body(**kw), headers=headers)
    resp.close()
    return resp


def test_rpm_limit_headers_and_retry_after(client, admin):
    key = admin.create_key(rpm=3)["key"]
    ok = [post(client, key) for _ in range(3)]
    assert all(r.status_code == 200 for r in ok)
    assert ok[0].headers["x-ratelimit-limit-requests"] == "3"
    assert [r.headers["x-ratelimit-remaining-requests"] for r in ok] == ["2", "1", "0"]
    assert ok[0].headers["x-ratelimit-reset-requests"].endswith("s")
    refused = post(client, key)
    err = assert_error(refused, 429, "rate_limit_exceeded", "rate_limit_error")
    assert int(refused.headers["Retry-After"]) >= 1
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    assert "3" in err["message"]


def test_default_rate_limit_applies_to_keys_without_rpm(make_settings):
    from src.app import create_app

    c = create_app(make_settings(RATE_LIMIT="2")).test_client()
    key = c.post("/admin/keys", json={"user_id": "u"}, headers={"Authorization": f"Bearer {MASTER}"}).get_json()["key"]
    codes = [post(c, key).status_code for _ in range(3)]
    assert codes == [200, 200, 429]
    unlimited = c.post("/admin/keys", json={"user_id": "u", "rpm": 0},
                       headers={"Authorization": f"Bearer {MASTER}"}).get_json()["key"]
    assert [post(c, unlimited).status_code for _ in range(4)] == [200] * 4
    off = create_app(make_settings(RATE_LIMIT="2", RATE_LIMIT_ENABLED="false")).test_client()
    key = off.post("/admin/keys", json={"user_id": "u"}, headers={"Authorization": f"Bearer {MASTER}"}).get_json()["key"]
    assert [post(off, key).status_code for _ in range(3)] == [200] * 3


def test_tpm_reservation_and_release(client, admin):
    key = admin.create_key(tpm=300)["key"]
    too_big = post(client, key, max_tokens=400)
    err = assert_error(too_big, 429, "rate_limit_exceeded")
    assert "Retry-After" not in too_big.headers  # waiting will never make it fit
    first = post(client, key, max_tokens=200)  # reserves ~prompt+200, settles to the real usage (~70)
    assert first.status_code == 200
    assert int(first.headers["x-ratelimit-limit-tokens"]) == 300
    second = post(client, key, max_tokens=150)  # fits only because the first released its unused tokens
    assert second.status_code == 200, second.get_data(as_text=True)
    assert "tokens" in err["message"].lower() or "token" in err["message"].lower()


def priced_sandbox_app(make_settings, tmp_path, **env):
    """An app where the sandbox costs $0.001 per token, so budgets can be tested without a provider."""
    from src.app import create_app

    prices = tmp_path / "pricing.json"
    prices.write_text('{"sandbox": {"input_per_1k": "1.0", "output_per_1k": "1.0", "source": "test", "as_of": "2026-11-22"}}')
    return create_app(make_settings(PRICING_FILE=str(prices), **env)).test_client()


def test_budget_holds_worst_case_and_settles_to_real_cost(make_settings, tmp_path):
    c = priced_sandbox_app(make_settings, tmp_path)
    h = {"Authorization": f"Bearer {MASTER}"}
    created = c.post("/admin/keys", json={"user_id": "u", "budget_usd": "0.5"}, headers=h).get_json()
    codes = []
    for _ in range(7):
        codes.append(post(c, created["key"], max_tokens=100).status_code)
    # each call reserves ~ (9 + 100) tokens = $0.109 but settles to its real ~79 tokens = $0.079
    assert codes[:5] == [200] * 5 and codes[5:] == [429, 429]
    refused = c.post(URL, json=chat_body(max_tokens=100), headers={"Authorization": f"Bearer {created['key']}"})
    refused.close()
    err = assert_error(refused, 429, "budget_exceeded", "insufficient_quota")
    assert "0.5" in err["message"]
    assert "Retry-After" not in refused.headers  # a total budget never resets
    usage = c.get("/api/usage", headers={"Authorization": f"Bearer {created['key']}"}).get_json()["totals"]
    assert Decimal(usage["cost_usd"]) <= Decimal("0.5") and usage["requests"] == 8
    assert Decimal(usage["cost_usd"]) == Decimal("0.001") * (usage["prompt_tokens"] + usage["completion_tokens"])


def test_daily_budget_has_retry_after(make_settings, tmp_path):
    c = priced_sandbox_app(make_settings, tmp_path)
    created = c.post("/admin/keys", json={"user_id": "u", "budget_usd": "0.01", "budget_period": "daily"},
                     headers={"Authorization": f"Bearer {MASTER}"}).get_json()
    refused = post(c, created["key"], max_tokens=100)
    assert_error(refused, 429, "budget_exceeded")
    assert 1 <= int(refused.headers["Retry-After"]) <= 86400


def test_budget_exceeded_before_any_provider_call(client, admin):
    key = admin.create_key(budget_usd="0.000001", models=["gpt-4o"])["key"]
    resp = post(client, key, model="gpt-4o", max_tokens=1000)
    # no OpenAI key in API tests: the sandbox stands in and is free, so a tiny budget still passes
    assert resp.status_code == 200 and resp.headers["x-aiproxy-provider"] == "sandbox"


def test_budget_blocks_unpriced_model(client, admin, tmp_path, make_settings):
    from src.app import create_app

    models = tmp_path / "models.yaml"
    models.write_text("models:\n  house-llm: {provider: sandbox, model: house-llm}\n")
    c = create_app(make_settings(MODELS_FILE=str(models))).test_client()
    h = {"Authorization": f"Bearer {MASTER}"}
    budgeted = c.post("/admin/keys", json={"user_id": "u", "budget_usd": "5"}, headers=h).get_json()["key"]
    err = assert_error(post(c, budgeted, model="house-llm"), 403, "model_unpriced", "permission_error")
    assert "price" in err["message"]
    free = c.post("/admin/keys", json={"user_id": "u"}, headers=h).get_json()["key"]
    resp = c.post(URL, json=chat_body(model="house-llm"), headers={"Authorization": f"Bearer {free}"})
    assert resp.status_code == 200 and resp.headers.get("x-aiproxy-unpriced") == "true"


def test_policy_violation_names_rule_not_prompt(make_settings, tmp_path):
    from src.app import create_app

    rules = tmp_path / "banned.txt"
    rules.write_text("# internal code names\nproject-falcon\nre:(?i)\\bssn\\s*\\d{3}-\\d{2}-\\d{4}\n")
    c = create_app(make_settings(BANNED_WORDS="confidential", BANNED_WORDS_FILE=str(rules))).test_client()
    key = c.post("/admin/keys", json={"user_id": "u"}, headers={"Authorization": f"Bearer {MASTER}"}).get_json()["key"]
    prompt = "Summarise the Project-Falcon roadmap for me"
    err = assert_error(post(c, key, messages=[{"role": "user", "content": prompt}]), 403, "policy_violation",
                       "permission_error")
    assert "project-falcon" in err["message"] and prompt not in err["message"]
    assert_error(post(c, key, messages=[{"role": "user", "content": "my SSN 123-45-6789"}]), 403, "policy_violation")
    assert_error(post(c, key, messages=[{"role": "user", "content": "CONFIDENTIAL memo"}]), 403, "policy_violation")
    assert post(c, key, messages=[{"role": "user", "content": "a harmless question"}]).status_code == 200


def test_failed_auth_throttle(make_settings):
    from src.app import create_app

    c = create_app(make_settings(AUTH_FAILURES_PER_MINUTE="3")).test_client()
    key = c.post("/admin/keys", json={"user_id": "u"}, headers={"Authorization": f"Bearer {MASTER}"}).get_json()["key"]
    bad = {"Authorization": "Bearer sk-aip-0123456789abcdef-guess"}
    codes = [c.post(URL, json=chat_body(), headers=bad).status_code for _ in range(3)]
    assert codes == [401, 401, 401]
    throttled = c.post(URL, json=chat_body(), headers=bad)
    assert_error(throttled, 429, "rate_limit_exceeded")
    assert int(throttled.headers["Retry-After"]) >= 1
    # a valid key from the same address (one office NAT) is never refused because of another key's failures
    assert c.post(URL, json=chat_body(), headers={"Authorization": f"Bearer {key}"}).status_code == 200
    assert c.get("/admin/keys", headers={"Authorization": f"Bearer {MASTER}"}).status_code == 200
    assert_error(c.get("/admin/keys", headers={"Authorization": "Bearer wrong-master"}), 429, "rate_limit_exceeded")


def test_redis_down_fail_closed_and_open(make_settings):
    """Redis unreachable: fail-closed answers 503 with the envelope; fail-open cannot authenticate unknown
    keys either (there is nothing to check them against), so it also answers 503 for a key it never saw."""
    from src.app import create_app

    closed = create_app(make_settings(REDIS_URL="redis://127.0.0.1:1/0", REDIS_FAILURE_MODE="fail-closed"))
    resp = closed.test_client().post(URL, json=chat_body(), headers={"Authorization": "Bearer sk-aip-0123456789abcdef-x"})
    assert_error(resp, 503, "service_unavailable", "server_error")
