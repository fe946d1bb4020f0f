"""Prices as data, costs as exact ``Decimal``: the ``PRICING_FILE`` book and what a request costs.

The file (``lib/data/pricing.json`` built in, or ``PRICING_FILE``) maps an upstream model to USD per
1,000 tokens; values are JSON numbers or decimal strings, read straight into ``Decimal`` (no float ever
holds a price)::

    {"gpt-4o-mini": {"input_per_1k": "0.00015", "output_per_1k": "0.0006",
                     "source": "openai.com/api/pricing", "as_of": "2026-11-01"}}

Optional per entry: ``long_context: {above_prompt_tokens, input_per_1k, output_per_1k}`` (rates for the
whole request when the prompt is longer, as Gemini 1.5/2.5 Pro and Claude Sonnet 4 bill), ``note``.
Top-level keys starting with ``_`` are comments. Loading validates everything and raises ``ValueError``
naming the model and field at fault.

Model lookup (``price_for``), in order, never crossing into another family:

1. the exact name;
2. a pinned snapshot falls back to its undated name: a trailing ``-YYYY-MM-DD`` (OpenAI), ``-YYYYMMDD``
   (Anthropic), ``-MMDD`` (old OpenAI), ``-NNN`` (Gemini ``-001``) or ``-latest`` is removed and the rest
   looked up exactly (``gpt-4o-2024-08-06`` → ``gpt-4o``, ``gemini-1.5-pro-002`` → ``gemini-1.5-pro``);
3. ``<base>-latest`` with no ``<base>`` entry takes the newest dated entry ``<base>-YYYYMMDD`` /
   ``<base>-YYYY-MM-DD`` (``claude-3-5-sonnet-latest`` → ``claude-3-5-sonnet-20241022``).

Only a trailing date/version is ever removed, so ``gpt-4o-mini`` can never be priced as ``gpt-4o`` and
``gpt-4-1106-preview`` never as ``gpt-4``. Snapshots whose price differs from their alias
(``gpt-4o-2024-05-13``, ``gpt-3.5-turbo-1106``) have their own entries, which win by rule 1. Anything else
is *unpriced*: its cost is ``None`` and flagged, never $0 (``sandbox`` is an explicit ``"0"``).

Redis counters hold integer micro-dollars (``lib.accounting.money``); costs stay exact ``Decimal``
until that conversion.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation, localcontext
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Mapping

from lib import DATA_DIR
from lib.accounting.money import to_micros

log = logging.getLogger("aiproxy.pricing")

BUILTIN_PRICING_FILE = DATA_DIR / "pricing.json"
_PER = Decimal(1000)
_SNAPSHOT = re.compile(r"^(?P<base>.+?)-(?:\d{4}-\d{2}-\d{2}|\d{8}|\d{4}|\d{3}|latest)$")


@dataclass(frozen=True)
class LongContextRates:
    """Rates for the whole request when its prompt exceeds ``above_prompt_tokens``."""

    above_prompt_tokens: int
    input_per_1k: Decimal
    output_per_1k: Decimal


@dataclass(frozen=True)
class Price:
    """One model's prices, USD per 1,000 tokens, and where they came from."""

    model: str
    input_per_1k: Decimal
    output_per_1k: Decimal
    source: str | None = None
    as_of: str | None = None
    long_context: LongContextRates | None = None

    def rates(self, prompt_tokens: int | None = None) -> tuple[Decimal, Decimal]:
        """``(input_per_1k, output_per_1k)`` for a request with this prompt size (long-context aware)."""
        lc = self.long_context
        if lc is not None and prompt_tokens is not None and prompt_tokens > lc.above_prompt_tokens:
            return lc.input_per_1k, lc.output_per_1k
        return self.input_per_1k, self.output_per_1k


@dataclass(frozen=True)
class CostResult:
    """What one request cost. Unpriced models: every cost is ``None`` and ``unpriced`` is True."""

    cost: Decimal | None
    unpriced: bool
    input_cost: Decimal | None
    output_cost: Decimal | None
    model: str = ""
    priced_as: str | None = None  # the pricing entry used (differs from model after a snapshot fallback)

    @property
    def micros(self) -> int | None:
        """``cost`` in integer micro-dollars (``to_micros``), or ``None`` when unpriced."""
        return None if self.cost is None else to_micros(self.cost)


def _tokens(value: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{what} must be a non-negative int, got {value!r}")
    return value


def _exact(tokens: int, per_1k: Decimal) -> Decimal:
    """``tokens × per_1k / 1000`` computed exactly (the precision is raised so nothing is rounded)."""
    with localcontext(prec=60):
        return Decimal(tokens) * per_1k / _PER


# --------------------------------------------------------------------------------------------- loading
def _decimal(value: Any, model: str, field: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (int, Decimal, str)):
        raise ValueError(f"pricing: model {model!r}: {field} must be a number or decimal string, got {value!r}")
    try:
        number = Decimal(value.strip()) if isinstance(value, str) else Decimal(value)
    except InvalidOperation:
        raise ValueError(f"pricing: model {model!r}: {field} is not a decimal: {value!r}") from None
    if not number.is_finite() or number < 0:
        raise ValueError(f"pricing: model {model!r}: {field} must be a finite number >= 0, got {value!r}")
    return number


def _price(model: str, entry: Any) -> Price:
    if not isinstance(model, str) or not model.strip():
        raise ValueError(f"pricing: model names must be non-empty strings, got {model!r}")
    if not isinstance(entry, dict):
        raise ValueError(f"pricing: model {model!r}: entry must be an object, got {type(entry).__name__}")
    for field in ("input_per_1k", "output_per_1k"):
        if field not in entry:
            raise ValueError(f"pricing: model {model!r}: missing {field}")
    source, as_of = entry.get("source"), entry.get("as_of")
    if source is not None and not isinstance(source, str):
        raise ValueError(f"pricing: model {model!r}: source must be a string")
    if as_of is not None:
        try:
            date.fromisoformat(as_of)
        except (TypeError, ValueError):
            raise ValueError(f"pricing: model {model!r}: as_of must be a YYYY-MM-DD date, got {as_of!r}") from None
    long_context = None
    if entry.get("long_context") is not None:
        lc = entry["long_context"]
        above = lc.get("above_prompt_tokens") if isinstance(lc, dict) else None
        if isinstance(above, bool) or not isinstance(above, int) or above < 0:
            raise ValueError(f"pricing: model {model!r}: long_context needs above_prompt_tokens (int >= 0)")
        long_context = LongContextRates(
            above, _decimal(lc.get("input_per_1k"), model, "long_context.input_per_1k"),
            _decimal(lc.get("output_per_1k"), model, "long_context.output_per_1k"))
    return Price(model=model, input_per_1k=_decimal(entry["input_per_1k"], model, "input_per_1k"),
                 output_per_1k=_decimal(entry["output_per_1k"], model, "output_per_1k"),
                 source=source, as_of=as_of, long_context=long_context)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"pricing: {name} is not a price")


class PriceBook:
    """Prices by model, with the snapshot fallback of the module docstring and unpriced-model flagging.

    ``on_unpriced(model)`` is called every time a cost is asked for a model with no price (hook a metric
    counter to it); a warning is also logged, once per model per book.
    """

    def __init__(self, prices: Mapping[str, Price], *, on_unpriced: Callable[[str], None] | None = None) -> None:
        self._prices: dict[str, Price] = dict(prices)
        self.on_unpriced = on_unpriced
        self._warned: set[str] = set()

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None, *,
             on_unpriced: Callable[[str], None] | None = None) -> PriceBook:
        """The book in the JSON file at ``path`` (``None``: the built-in ``lib/data/pricing.json``).

        Raises ``ValueError`` (message names the file and the model/field at fault) for unreadable or
        invalid JSON, a non-object top level, a missing or negative/non-decimal price, or a bad date.
        """
        file = Path(path) if path is not None else BUILTIN_PRICING_FILE
        try:
            text = file.read_text(encoding="utf-8")
        except OSError as exc:
            raise ValueError(f"pricing file {file}: cannot read: {exc.strerror or exc}") from exc
        try:
            data = json.loads(text, parse_float=Decimal, parse_constant=_reject_constant)
        except ValueError as exc:  # JSONDecodeError, or NaN/Infinity refused by _reject_constant
            raise ValueError(f"pricing file {file}: invalid JSON: {exc}") from exc
        try:
            return cls.from_dict(data, on_unpriced=on_unpriced)
        except ValueError as exc:
            raise ValueError(f"pricing file {file}: {exc}") from None

    @classmethod
    def from_dict(cls, data: Any, *, on_unpriced: Callable[[str], None] | None = None) -> PriceBook:
        """A book from already-parsed data (floats are refused: parse JSON with ``parse_float=Decimal``).
        Raises ``ValueError`` as ``load`` does."""
        if not isinstance(data, dict):
            raise ValueError("pricing: top level must be an object of model -> prices")
        prices = {model: _price(model, entry) for model, entry in data.items()
                  if not (isinstance(model, str) and model.startswith("_"))}
        return cls(prices, on_unpriced=on_unpriced)

    @property
    def models(self) -> tuple[str, ...]:
        """Every model with an entry, sorted."""
        return tuple(sorted(self._prices))

    def __contains__(self, model: object) -> bool:
        return isinstance(model, str) and self.price_for(model) is not None

    def __len__(self) -> int:
        return len(self._prices)

    def price_for(self, model: str) -> Price | None:
        """The ``Price`` for ``model`` by the lookup rules of the module docstring, or ``None``. Pure lookup:
        no warning, no hook (the cost methods do that)."""
        if not isinstance(model, str):
            return None
        for name in dict.fromkeys((model, model.strip().lower())):
            found = self._prices.get(name)
            if found is not None:
                return found
            match = _SNAPSHOT.match(name)
            if match is None:
                continue
            base = match.group("base")
            if base in self._prices:
                return self._prices[base]
            if name.endswith("-latest"):
                newest = self._newest_snapshot(base)
                if newest is not None:
                    return newest
        return None

    def _newest_snapshot(self, base: str) -> Price | None:
        dated = re.compile(re.escape(base) + r"-(\d{8}|\d{4}-\d{2}-\d{2})")
        best: tuple[str, Price] | None = None
        for key, price in self._prices.items():
            found = dated.fullmatch(key)
            if found is not None:
                stamp = found.group(1).replace("-", "")
                if best is None or stamp > best[0]:
                    best = (stamp, price)
        return best[1] if best else None

    def _flag_unpriced(self, model: str) -> None:
        if model not in self._warned:
            self._warned.add(model)
            log.warning("no price for model %r: its cost is recorded as unknown (unpriced), not $0; "
                        "add it to the pricing file", model)
        if self.on_unpriced is not None:
            try:
                self.on_unpriced(model)
            except Exception:  # a metrics hook must never break billing
                log.exception("on_unpriced hook failed for model %r", model)

    def estimate_cost(self, tokens: int, model: str, is_output: bool = False) -> Decimal | None:
        """Exact USD cost of ``tokens`` input (or output, ``is_output=True``) tokens of ``model`` at its base
        rates (the long-context tier needs the prompt size: use ``cost_of``). ``None`` and flagged when
        unpriced. Raises ``ValueError`` for a negative or non-int ``tokens``."""
        _tokens(tokens, "tokens")
        price = self.price_for(model)
        if price is None:
            self._flag_unpriced(model)
            return None
        return _exact(tokens, price.output_per_1k if is_output else price.input_per_1k)

    def cost_of(self, prompt_tokens: int, completion_tokens: int, model: str) -> CostResult:
        """The cost of one request: input + output, exact, with long-context rates when the prompt exceeds
        the entry's threshold. Unpriced models give ``CostResult(None, True, None, None)`` and are flagged.
        Raises ``ValueError`` for negative or non-int token counts."""
        _tokens(prompt_tokens, "prompt_tokens")
        _tokens(completion_tokens, "completion_tokens")
        price = self.price_for(model)
        if price is None:
            self._flag_unpriced(model)
            return CostResult(None, True, None, None, model=model)
        rate_in, rate_out = price.rates(prompt_tokens)
        input_cost, output_cost = _exact(prompt_tokens, rate_in), _exact(completion_tokens, rate_out)
        return CostResult(input_cost + output_cost, False, input_cost, output_cost,
                          model=model, priced_as=price.model)

    def worst_case_cost(self, prompt_tokens: int, max_output_tokens: int, model: str) -> Decimal | None:
        """The most a request can cost if it produces ``max_output_tokens`` (for budget reservation; convert
        with ``to_micros(..., ROUND_CEILING)``). ``None`` and flagged when unpriced. Raises ``ValueError``
        for negative or non-int token counts."""
        return self.cost_of(prompt_tokens, max_output_tokens, model).cost


@lru_cache(maxsize=1)
def builtin_book() -> PriceBook:
    """The built-in price book, loaded once per process. Raises ``ValueError`` if the shipped file is bad."""
    return PriceBook.load(None)


def estimate_cost(tokens: int, model: str, is_output: bool = False, book: PriceBook | None = None) -> Decimal | None:
    """``book.estimate_cost(tokens, model, is_output)`` with the built-in book when ``book`` is None: exact
    USD, or ``None`` (flagged) for an unpriced model. Raises ``ValueError`` for bad ``tokens``."""
    return (book if book is not None else builtin_book()).estimate_cost(tokens, model, is_output)
