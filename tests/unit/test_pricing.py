"""lib.accounting.pricing: exact Decimal costs from the price book, snapshot fallback, unpriced flagging, micros."""

from __future__ import annotations

import json
import logging
from decimal import ROUND_CEILING, Decimal
from pathlib import Path

import pytest

from lib.accounting import pricing
from lib.accounting.money import from_micros, to_micros
from lib.accounting.pricing import CostResult, PriceBook, estimate_cost

ROUTER_MODELS = [
    "gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini", "gpt-4.1-nano", "gpt-4-turbo", "gpt-4", "gpt-3.5-turbo",
    "o1", "o1-mini", "o3", "o3-mini", "o4-mini", "text-embedding-3-small", "text-embedding-3-large",
    "text-embedding-ada-002", "claude-3-5-sonnet-20241022", "claude-3-5-haiku-20241022",
    "claude-3-7-sonnet-20250219", "claude-sonnet-4-20250514", "claude-opus-4-20250514", "claude-3-opus-20240229",
    "claude-3-haiku-20240307", "gemini-pro", "gemini-1.5-pro", "gemini-1.5-flash", "gemini-2.0-flash",
    "gemini-2.5-pro", "gemini-2.5-flash", "sandbox",
]


@pytest.fixture(scope="module")
def book() -> PriceBook:
    return PriceBook.load(None)


def write(tmp_path: Path, data: object) -> str:
    path = tmp_path / "pricing.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return str(path)


# --------------------------------------------------------------------------------------------- built-in book
def test_builtin_book_prices_every_router_model_with_source_and_date(book: PriceBook) -> None:
    raw = json.loads(pricing.BUILTIN_PRICING_FILE.read_text())
    for model in ROUTER_MODELS:
        assert model in raw, model
        assert raw[model]["source"] and raw[model]["as_of"], model
        price = book.price_for(model)
        assert price is not None and price.model == model
        assert isinstance(price.input_per_1k, Decimal) and isinstance(price.output_per_1k, Decimal)


def test_sandbox_is_explicitly_free_not_unpriced(book: PriceBook) -> None:
    result = book.cost_of(1000, 1000, "sandbox")
    assert result == CostResult(Decimal(0), False, Decimal(0), Decimal(0), model="sandbox", priced_as="sandbox")
    assert book.price_for("sandbox").source == "built-in sandbox, no provider call"


def test_gemini_pro_uses_the_seed_service_rates(book: PriceBook) -> None:
    price = book.price_for("gemini-pro")
    assert (price.input_per_1k, price.output_per_1k) == (Decimal("0.00025"), Decimal("0.0005"))
    assert book.cost_of(2000, 1000, "gemini-pro").cost == Decimal("0.001")


def test_known_cost_is_exact(book: PriceBook) -> None:
    result = book.cost_of(1234, 567, "gpt-4o-mini")
    assert result.cost == Decimal("0.0005253")
    assert result.input_cost == Decimal("0.0001851") and result.output_cost == Decimal("0.0003402")
    assert not result.unpriced and result.priced_as == "gpt-4o-mini"
    assert result.micros == 525
    assert book.cost_of(1, 1, "claude-3-haiku-20240307").cost == Decimal("0.0000015")


def test_no_float_and_no_rounding_even_for_huge_counts(book: PriceBook) -> None:
    cost = book.estimate_cost(987_654_321_987, "gpt-4o-mini")
    assert isinstance(cost, Decimal)
    assert cost == Decimal("148148.14829805")
    assert book.estimate_cost(3, "text-embedding-3-small") == Decimal("0.00000006")


def test_estimate_cost_input_and_output(book: PriceBook) -> None:
    assert book.estimate_cost(1000, "gpt-4o") == Decimal("0.0025")
    assert book.estimate_cost(1000, "gpt-4o", is_output=True) == Decimal("0.01")
    assert book.estimate_cost(0, "gpt-4o") == 0


def test_module_level_estimate_cost_uses_builtin_or_given_book(tmp_path: Path) -> None:
    assert estimate_cost(1000, "claude-3-5-sonnet-20241022") == Decimal("0.003")
    assert estimate_cost(1000, "claude-3-5-sonnet-20241022", is_output=True) == Decimal("0.015")
    assert pricing.builtin_book() is pricing.builtin_book()
    custom = PriceBook.load(write(tmp_path, {"m": {"input_per_1k": "1", "output_per_1k": "2"}}))
    assert estimate_cost(500, "m", True, book=custom) == Decimal("1")
    assert estimate_cost(500, "gpt-4o", book=custom) is None


def test_bad_token_counts_are_refused(book: PriceBook) -> None:
    for bad in (-1, 1.5, True, "10"):
        with pytest.raises(ValueError):
            book.estimate_cost(bad, "gpt-4o")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        book.cost_of(10, -1, "gpt-4o")


# --------------------------------------------------------------------------------------------- lookup
@pytest.mark.parametrize("model,priced_as", [
    ("gpt-4o-2024-08-06", "gpt-4o"), ("gpt-4o-2024-11-20", "gpt-4o"), ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
    ("gpt-4o-2024-05-13", "gpt-4o-2024-05-13"), ("gpt-4-0613", "gpt-4"), ("gpt-3.5-turbo-0125", "gpt-3.5-turbo"),
    ("gpt-3.5-turbo-1106", "gpt-3.5-turbo-1106"), ("gpt-4-turbo-2024-04-09", "gpt-4-turbo"),
    ("o3-mini-2025-01-31", "o3-mini"), ("gpt-4.1-nano-2025-04-14", "gpt-4.1-nano"),
    ("claude-3-5-sonnet-latest", "claude-3-5-sonnet-20241022"), ("claude-3-7-sonnet-latest", "claude-3-7-sonnet-20250219"),
    ("claude-3-5-haiku-latest", "claude-3-5-haiku-20241022"), ("gemini-1.5-pro-002", "gemini-1.5-pro"),
    ("gemini-2.0-flash-001", "gemini-2.0-flash"), ("gemini-1.5-flash-latest", "gemini-1.5-flash"),
    ("GPT-4o-Mini", "gpt-4o-mini"),
])
def test_snapshot_fallback(book: PriceBook, model: str, priced_as: str) -> None:
    assert book.price_for(model).model == priced_as
    assert book.cost_of(10, 10, model).priced_as == priced_as


@pytest.mark.parametrize("model", [
    "gpt-4-32k", "gpt-4-32k-0613", "gpt-4o-mini-audio-preview", "gpt-4o-audio", "gpt-4.1-mini-fast",
    "ft:gpt-4o-mini-2024-07-18:acme::abc", "claude-3-5-sonnet", "claude-3-5-sonnet-20240101x",
    "gemini-1.5-flash-8b", "gemini-2.5-flash-preview-05-20", "o3-pro", "gpt", "", "-latest",
])
def test_never_priced_as_another_family(book: PriceBook, model: str) -> None:
    assert book.price_for(model) is None


def test_gpt4o_mini_is_not_priced_as_gpt4o(book: PriceBook) -> None:
    assert book.price_for("gpt-4o-mini").input_per_1k != book.price_for("gpt-4o").input_per_1k


# --------------------------------------------------------------------------------------------- unpriced
def test_unknown_model_is_unpriced_flagged_and_logged_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    seen: list[str] = []
    fresh = PriceBook.load(None, on_unpriced=seen.append)
    with caplog.at_level(logging.WARNING, logger="aiproxy.pricing"):
        result = fresh.cost_of(100, 50, "mystery-model-9000")
        again = fresh.estimate_cost(100, "mystery-model-9000")
        worst = fresh.worst_case_cost(100, 4096, "mystery-model-9000")
    assert result == CostResult(None, True, None, None, model="mystery-model-9000")
    assert result.micros is None and again is None and worst is None
    assert seen == ["mystery-model-9000"] * 3
    warnings = [r for r in caplog.records if "mystery-model-9000" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING
    assert "not $0" in warnings[0].getMessage()


def test_a_failing_hook_does_not_break_costing(caplog: pytest.LogCaptureFixture) -> None:
    def broken(model: str) -> None:
        raise RuntimeError("metrics down")

    fresh = PriceBook.load(None, on_unpriced=broken)
    with caplog.at_level(logging.ERROR, logger="aiproxy.pricing"):
        assert fresh.cost_of(1, 1, "nope").unpriced
    assert any("on_unpriced hook failed" in r.getMessage() for r in caplog.records)


# --------------------------------------------------------------------------------------------- loading
def test_json_numbers_and_strings_are_read_exactly(tmp_path: Path) -> None:
    path = write(tmp_path, '{"a": {"input_per_1k": 0.1, "output_per_1k": "0.3"},'
                           ' "b": {"input_per_1k": 1, "output_per_1k": " 2.50 "}, "_comment": "ignored"}')
    loaded = PriceBook.load(path)
    assert loaded.models == ("a", "b")
    assert loaded.price_for("a").input_per_1k == Decimal("0.1")  # not 0.1000000000000000055...
    assert loaded.cost_of(1000, 1000, "a").cost == Decimal("0.4")
    assert loaded.price_for("b").output_per_1k == Decimal("2.50")


@pytest.mark.parametrize("data,fragment", [
    ({"gpt-x": {"input_per_1k": "0.1"}}, "'gpt-x': missing output_per_1k"),
    ({"gpt-x": {"output_per_1k": "0.1"}}, "'gpt-x': missing input_per_1k"),
    ({"gpt-x": {"input_per_1k": "-0.1", "output_per_1k": "0.1"}}, "'gpt-x': input_per_1k must be a finite number >= 0"),
    ({"gpt-x": {"input_per_1k": "cheap", "output_per_1k": "0.1"}}, "'gpt-x': input_per_1k is not a decimal"),
    ({"gpt-x": {"input_per_1k": "NaN", "output_per_1k": "0.1"}}, "'gpt-x': input_per_1k must be a finite"),
    ({"gpt-x": {"input_per_1k": "0.1", "output_per_1k": True}}, "'gpt-x': output_per_1k must be a number"),
    ({"gpt-x": {"input_per_1k": "0.1", "output_per_1k": None}}, "'gpt-x': output_per_1k must be a number"),
    ({"gpt-x": {"input_per_1k": "0.1", "output_per_1k": "0.1", "as_of": "last week"}}, "'gpt-x': as_of"),
    ({"gpt-x": {"input_per_1k": "0.1", "output_per_1k": "0.1", "source": 7}}, "'gpt-x': source"),
    ({"gpt-x": {"input_per_1k": "0.1", "output_per_1k": "0.1", "long_context": {"input_per_1k": "1"}}},
     "'gpt-x': long_context"),
    ({"gpt-x": ["0.1", "0.2"]}, "'gpt-x': entry must be an object"),
    (["gpt-x"], "top level must be an object"),
    ('{"gpt-x": {"input_per_1k": NaN, "output_per_1k": 1}}', "invalid JSON"),
    ('{"gpt-x": {', "invalid JSON"),
])
def test_bad_pricing_file_is_a_clear_value_error(tmp_path: Path, data: object, fragment: str) -> None:
    with pytest.raises(ValueError) as caught:
        PriceBook.load(write(tmp_path, data))
    assert fragment in str(caught.value)
    assert "pricing.json" in str(caught.value)


def test_missing_pricing_file_is_a_value_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot read"):
        PriceBook.load(str(tmp_path / "absent.json"))


# --------------------------------------------------------------------------------------------- tiers, worst case
def test_long_context_rates_apply_above_the_threshold(book: PriceBook) -> None:
    assert book.cost_of(128_000, 1000, "gemini-1.5-pro").cost == Decimal("0.16") + Decimal("0.005")
    above = book.cost_of(128_001, 1000, "gemini-1.5-pro")
    assert above.input_cost == Decimal("0.3200025") and above.output_cost == Decimal("0.01")
    assert book.cost_of(300_000, 1000, "gemini-2.5-pro").cost == Decimal("0.765")


def test_worst_case_cost_for_budget_reservation(book: PriceBook) -> None:
    worst = book.worst_case_cost(1234, 4096, "gpt-4o-mini")
    assert worst == Decimal("0.0001851") + Decimal("0.0024576")
    assert worst >= book.cost_of(1234, 567, "gpt-4o-mini").cost
    assert to_micros(worst, ROUND_CEILING) == 2643


# --------------------------------------------------------------------------------------------- micros
def test_micros_round_half_up_and_round_trip() -> None:
    assert to_micros(Decimal("0.0005253")) == 525
    assert to_micros(Decimal("0.0000005")) == 1
    assert to_micros(Decimal("0.00000049")) == 0
    assert to_micros(Decimal("0.0000015")) == 2
    assert to_micros(Decimal("-0.0000005")) == -1
    assert to_micros(Decimal("0.0000001"), ROUND_CEILING) == 1
    assert to_micros(Decimal(3)) == 3_000_000
    for micros in (0, 1, 525, 123_456_789, 10**15):
        assert to_micros(from_micros(micros)) == micros
    assert from_micros(1234) == Decimal("0.001234")
    assert from_micros(to_micros(Decimal("12.345678"))) == Decimal("12.345678")


def test_micros_refuse_floats_and_nan() -> None:
    with pytest.raises(TypeError):
        to_micros(0.1)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        to_micros(Decimal("NaN"))
    with pytest.raises(TypeError):
        from_micros(1.0)  # type: ignore[arg-type]
