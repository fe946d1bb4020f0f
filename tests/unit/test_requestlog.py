"""RequestRecord serialization, body truncation, the micro-dollar conversion and the stdout billing line."""

from __future__ import annotations

import json
import uuid
from decimal import Decimal

import pytest

from lib.accounting.money import from_micros as micros_to_usd
from lib.accounting.money import quantize_usd
from lib.accounting.money import to_micros as usd_to_micros
from lib.records.requestlog import RequestRecord, billing_line, truncate_body


def full_record(**over) -> RequestRecord:
    base = dict(
        proxy_id=str(uuid.uuid4()), created_at=1_767_225_600.123, endpoint="/v1/chat/completions",
        key_id="key_abc", user_id="alice", requested_model="gpt-4", model="gemini-1.5-pro", provider="gemini",
        status=200, error_code=None, latency_ms=812.5, ttfb_ms=120.25, stream=True, prompt_tokens=1234,
        completion_tokens=56, cost_usd=Decimal("0.000123456789"), unpriced=False, usage_source="counted",
        cache="miss", cache_similarity=0.72, cache_entry="ce_1", saved_tokens=0, saved_cost_usd=Decimal("0"),
        client_disconnected=True, request_body='{"messages":[{"role":"user","content":"SECRET PROMPT"}]}',
        response_body="SECRET ANSWER", error_message=None,
    )
    base.update(over)
    return RequestRecord(**base)


def test_json_round_trip_is_exact_for_every_field():
    rec = full_record()
    text = rec.to_json()
    data = json.loads(text)
    assert data["cost_usd"] == "0.000123456789"  # Decimal as an exact string, not a float
    back = RequestRecord.from_json(text)
    assert back == rec
    assert isinstance(back.cost_usd, Decimal) and back.cost_usd == Decimal("0.000123456789")


def test_round_trip_of_none_amounts_and_defaults():
    rec = RequestRecord(proxy_id=str(uuid.uuid4()), created_at=1.0, endpoint="/v1/models")
    back = RequestRecord.from_json(rec.to_json().encode())
    assert back == rec and back.cost_usd is None and back.saved_cost_usd is None


def test_from_json_ignores_unknown_fields_and_rejects_broken_records():
    data = full_record().to_dict()
    data["added_in_a_later_version"] = 1
    assert RequestRecord.from_dict(data).proxy_id == data["proxy_id"]
    with pytest.raises(ValueError):
        RequestRecord.from_json('{"created_at": 1, "endpoint": "/x"}')  # no proxy_id
    with pytest.raises(ValueError):
        RequestRecord.from_json("[1, 2]")
    with pytest.raises(ValueError):
        RequestRecord.from_json("not json")
    bad = full_record().to_dict()
    bad["cost_usd"] = "twelve"
    with pytest.raises(ValueError):
        RequestRecord.from_dict(bad)


@pytest.mark.parametrize(
    "amount, micros",
    [
        (None, 0), (Decimal("0"), 0), (Decimal("0.0000005"), 1), (Decimal("0.0000004999"), 0),
        (Decimal("0.0000015"), 2), (Decimal("1.2345675"), 1234568), (Decimal("12.5"), 12_500_000),
    ],
)
def test_usd_to_micros_rounds_half_up(amount, micros):
    assert usd_to_micros(amount) == micros


def test_micro_conversion_round_trips_and_rejects_nan():
    assert micros_to_usd(1234568) == Decimal("1.234568")
    assert str(micros_to_usd(0)) == "0.000000"
    assert quantize_usd(Decimal("0.0000015")) == Decimal("0.000002")
    assert quantize_usd(None) is None
    with pytest.raises(ValueError):
        usd_to_micros(Decimal("NaN"))


def test_truncate_body_marks_truncation():
    assert truncate_body("short", 10) == "short"
    assert truncate_body(None, 10) is None
    assert truncate_body("x" * 10, 10) == "x" * 10
    cut = truncate_body("abcdefghij" * 3, 10)
    assert cut.startswith("abcdefghij") and "truncated 20 of 30 chars" in cut
    assert not cut.startswith("abcdefghija")
    assert truncate_body("abc", 0).startswith("…[truncated 3")


def test_billing_line_carries_billing_facts_only():
    rec = full_record(request_body="the SECRET PROMPT", response_body="the SECRET ANSWER",
                      error_message="SECRET upstream detail")
    line = billing_line(rec)
    assert "\n" not in line
    facts = json.loads(line)
    assert set(facts) == {
        "event", "ts", "proxy_id", "key_id", "user_id", "model", "provider", "status", "prompt_tokens",
        "completion_tokens", "total_tokens", "cost_usd", "unpriced", "cache",
    }
    assert "SECRET" not in line
    assert facts["total_tokens"] == 1234 + 56 == facts["prompt_tokens"] + facts["completion_tokens"]
    assert facts["cost_usd"] == "0.000123"  # the micro-dollar amount the counters add up
    assert facts["ts"] == "2026-01-01T00:00:00.123Z"
    assert facts["model"] == "gemini-1.5-pro" and facts["cache"] == "miss" and facts["status"] == 200


def test_billing_line_of_an_unpriced_failure():
    rec = full_record(status=401, key_id=None, user_id=None, model=None, provider=None, prompt_tokens=0,
                      completion_tokens=0, cost_usd=None, unpriced=True, cache=None)
    facts = json.loads(billing_line(rec))
    assert facts["cost_usd"] is None and facts["unpriced"] is True and facts["total_tokens"] == 0
    assert facts["key_id"] is None and facts["status"] == 401
