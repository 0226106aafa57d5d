"""Money at the edges: decimal strings and platform amounts in, integer minor units inside.

The number of minor digits comes from Babel's CLDR currency data (JPY 0, EUR 2, KWD 3), never
from dividing by 100 blindly. Formatting for people is Babel's too.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from babel.numbers import format_currency, get_currency_precision


def minor_digits(currency: str) -> int:
    """How many digits the currency's minor unit has: EUR 2, JPY 0, KWD 3 (CLDR data)."""
    return get_currency_precision(currency.upper())


MAX_MINOR = 2**63 - 1


def to_minor(amount: str | Decimal, currency: str) -> int:
    """``"49.99"`` EUR → 4999; raises ``ValueError`` for text that is not an exact amount."""
    try:
        value = Decimal(str(amount))
    except InvalidOperation:
        raise ValueError(f"not a decimal amount: {amount!r}") from None
    if not value.is_finite():  # NaN, Infinity: int() would raise OverflowError
        raise ValueError(f"not a decimal amount: {amount!r}")
    if value.adjusted() > 30:  # "1e999999" is a valid Decimal; scaling it overflows
        raise ValueError(f"{amount!r} is out of range")
    scaled = value.scaleb(minor_digits(currency))
    if abs(scaled) > MAX_MINOR:  # stored amounts are 64-bit
        raise ValueError(f"{amount!r} is out of range")
    if scaled != scaled.to_integral_value():
        raise ValueError(f"{amount!r} has more decimals than {currency.upper()} allows")
    return int(scaled)


def to_decimal(minor: int, currency: str) -> Decimal:
    """4999 EUR → Decimal("49.99")."""
    return Decimal(minor).scaleb(-minor_digits(currency))


def format_money(minor: int, currency: str, locale: str) -> str:
    """4999 EUR in ``de`` → ``49,99 €``; 5000 JPY in ``ja`` → ``￥5,000``."""
    return format_currency(to_decimal(minor, currency), currency.upper(), locale=locale)
