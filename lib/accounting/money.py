"""Money: exact ``Decimal`` dollars, and the one conversion to the integer micro-dollars Redis counts.

Costs stay exact ``Decimal`` until they are charged or counted; then ``to_micros`` turns them into whole
micro-dollars (1 = $0.000001). Every place that charges or counts — the budget, the request log, the billing
line, the usage counters — goes through it, so usage totals equal the sum of the logs to the last digit.
Floats are refused everywhere: a float cannot hold a price exactly.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

MICRO_USD = Decimal("0.000001")


def to_micros(amount: Decimal | int | str | None, rounding: str = ROUND_HALF_UP) -> int:
    """``amount`` USD as whole micro-dollars; ``None`` is 0.

    Rounds half up by default (half away from zero: $0.0000005 → 1, −$0.0000005 → −1), so each conversion is
    off by at most half a micro-dollar; pass ``decimal.ROUND_CEILING`` when reserving budget so a
    reservation never undershoots. Raises ``TypeError`` for a float and ``ValueError`` for NaN/infinity or a
    string that is not a number.
    """
    if amount is None:
        return 0
    if isinstance(amount, float):
        raise TypeError("to_micros takes Decimal, int or a decimal string, not float")
    value = amount if isinstance(amount, Decimal) else Decimal(amount)
    if not value.is_finite():
        raise ValueError(f"cannot convert {value} to micro-dollars")
    return int((value / MICRO_USD).quantize(Decimal(1), rounding=rounding))


def from_micros(micros: int) -> Decimal:
    """``micros`` micro-dollars as an exact ``Decimal`` with six decimal places (``0`` → ``0.000000``).

    Raises ``TypeError`` for anything but an int."""
    if isinstance(micros, bool) or not isinstance(micros, int):
        raise TypeError(f"from_micros takes int, got {type(micros).__name__}")
    return (Decimal(micros) * MICRO_USD).quantize(MICRO_USD)


def quantize_usd(amount: Decimal | None) -> Decimal | None:
    """``amount`` rounded to whole micro-dollars exactly as ``to_micros`` does; ``None`` stays ``None``."""
    return None if amount is None else from_micros(to_micros(amount))


def usd_text(micros: int) -> str:
    """``$1.50``, ``$0.000125``: micro-dollars as dollars for messages, at least two decimals."""
    text = f"{Decimal(micros).scaleb(-6):.6f}".rstrip("0")
    whole, frac = text.split(".")
    return f"${whole}.{frac.ljust(2, '0')}"
