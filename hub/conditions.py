"""The small, safe condition language of ``when`` tables in tenant files.

A ``when`` table holds if every key holds; ``any = [...]`` holds if one of its tables does. A
plain value means equality; ``{op = value}`` takes ``eq ne in not_in lt lte gt gte``. There is
no ``eval``: a condition is compiled once, at config load, into a tree of :class:`Clause`
objects, and every mistake is reported with its key path.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from hub.durations import parse_duration
from hub.events import CONSENT_VALUES, STAGES
from hub.money import minor_digits, to_minor
from hub.spelling import did_you_mean

OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "eq": lambda a, b: a == b,
    "ne": lambda a, b: a != b,
    "in": lambda a, b: a in b,
    "not_in": lambda a, b: a not in b,
    "lt": lambda a, b: a < b,
    "lte": lambda a, b: a <= b,
    "gt": lambda a, b: a > b,
    "gte": lambda a, b: a >= b,
}
ORDERED = {"lt", "lte", "gt", "gte"}
SET_OPS = {"in", "not_in"}

# field name -> the type its values are compared as; plus consent_<channel> (text) for every
# channel kind an installed sink has: the core names no channel
FIELDS: dict[str, str] = {
    "cart_total": "money",
    "item_count": "int",
    "stage": "str",
    "country": "str",
    "source": "str",
    "locale": "str",
}
CONSENT_FIELD = "consent_"
# text fields whose values form a closed set: any other value could never match, so it is a
# mistake (`stage = "checkout"`) that config check reports rather than a flow that never runs
CHOICES: dict[str, tuple[str, ...]] = {"stage": STAGES}


def _kind(name: str) -> str:
    return FIELDS.get(name) or "str"  # only known names get here: consent_<channel> is text


def _choices(name: str, values: _Values) -> tuple[str, ...]:
    if name.startswith(CONSENT_FIELD):
        return CONSENT_VALUES
    if name == "source":
        return tuple(values.sources)
    return CHOICES.get(name, ())


COUNTRY = re.compile(r"^[A-Z]{2}$")


class ConditionError(ValueError):
    """A condition that cannot be compiled; ``key`` is the path below the ``when`` table."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key
        self.message = message


@dataclass(frozen=True)
class Clause:
    """One test: ``field op value``; for ``abandons``, value is ``(within, gte)``."""

    field: str
    op: str
    value: Any


@dataclass(frozen=True)
class Condition:
    """All of ``clauses`` hold and, when ``any_of`` is given, at least one of those holds."""

    clauses: tuple[Clause, ...] = ()
    any_of: tuple[Condition, ...] = ()

    def holds(self, facts: Mapping[str, Any], count_abandons: Callable[[timedelta], int]) -> bool:
        """Evaluate against ``facts`` (see :func:`facts_for`); abandons are counted lazily."""
        for clause in self.clauses:
            if not _clause_holds(clause, facts, count_abandons):
                return False
        if self.any_of:
            return any(c.holds(facts, count_abandons) for c in self.any_of)
        return True


def _clause_holds(clause: Clause, facts: Mapping[str, Any], count_abandons) -> bool:  # noqa: ANN001
    if clause.field == "abandons":
        within, gte = clause.value
        return count_abandons(within) >= gte
    actual = facts.get(clause.field)
    if actual is None and clause.field.startswith(CONSENT_FIELD):
        actual = "unknown"  # the platform said nothing about this channel
    if actual is None:
        # An unknown fact matches only "ne"/"not_in": a cart without a total is not >= 200.
        return clause.op in ("ne", "not_in")
    try:
        return OPERATORS[clause.op](actual, clause.value)
    except TypeError:
        return False


def compile_condition(
    when: Any,
    currency: str,
    path: str = "when",
    *,
    sources: Collection[str] = (),
    channels: Collection[str] = (),
) -> Condition:
    """Compile a ``when`` table; raises :class:`ConditionError` naming the key path.

    Values are checked as far as the tenant file allows: money against ``currency``'s minor
    digits, ``stage`` and consent against their closed sets, ``source`` against ``sources``
    (the installed source plugins; not checked when empty). ``consent_<channel>`` is a field for
    each of ``channels`` (the installed sinks' channel kinds). A value that can never match is a
    mistake, not a condition that is silently always false.
    """
    if not isinstance(when, Mapping):
        raise ConditionError(path, "must be a table")
    clauses: list[Clause] = []
    any_of: tuple[Condition, ...] = ()
    consent_fields = {CONSENT_FIELD + channel for channel in channels}
    for key, spec in when.items():
        key_path = f"{path}.{key}"
        if key == "any":
            if not isinstance(spec, list) or not spec:
                raise ConditionError(key_path, "must be a non-empty list of tables")
            any_of = tuple(
                compile_condition(
                    item, currency, f"{key_path}[{i}]", sources=sources, channels=channels
                )
                for i, item in enumerate(spec)
            )
        elif key == "abandons":
            clauses.append(_compile_abandons(spec, key_path))
        elif key in FIELDS or key in consent_fields:
            clauses.extend(_compile_field(key, spec, key_path, _Values(currency, sources)))
        else:
            names = [*FIELDS, *consent_fields, "abandons", "any"]
            raise ConditionError(
                key_path,
                f'unknown field "{key}"{did_you_mean(key, names)} '
                f"(known: {', '.join(sorted(names))})",
            )
    return Condition(tuple(clauses), any_of)


@dataclass(frozen=True)
class _Values:
    """What a compared value is checked against: the tenant's currency, installed sources."""

    currency: str
    sources: Collection[str]


def _compile_abandons(spec: Any, path: str) -> Clause:
    if not isinstance(spec, Mapping) or set(spec) != {"within", "gte"}:
        raise ConditionError(path, 'must be a table {within = "30d", gte = 3}')
    try:
        within = parse_duration(spec["within"])
    except ValueError as exc:
        raise ConditionError(f"{path}.within", str(exc)) from None
    if not isinstance(spec["gte"], int) or isinstance(spec["gte"], bool) or spec["gte"] < 1:
        raise ConditionError(f"{path}.gte", "must be a positive integer")
    return Clause("abandons", "gte", (within, spec["gte"]))


def _compile_field(name: str, spec: Any, path: str, values: _Values) -> list[Clause]:
    ops = spec if isinstance(spec, Mapping) else {"eq": spec}
    if not ops:
        raise ConditionError(path, "an empty table tests nothing")
    clauses = []
    for op, raw in ops.items():
        op_path = f"{path}.{op}" if isinstance(spec, Mapping) else path
        if op not in OPERATORS:
            raise ConditionError(
                path,
                f'unknown operator "{op}"{did_you_mean(op, OPERATORS)} '
                f"(use {', '.join(OPERATORS)})",
            )
        kind = _kind(name)
        if op in ORDERED and kind == "str":
            raise ConditionError(op_path, f'"{op}" compares numbers; {name} is text')
        if op in SET_OPS:
            if not isinstance(raw, list):
                raise ConditionError(op_path, f'"{op}" needs a list')
            value: Any = tuple(
                _coerce(name, item, f"{op_path}[{i}]", values) for i, item in enumerate(raw)
            )
        else:
            value = _coerce(name, raw, op_path, values)
        clauses.append(Clause(name, op, value))
    return clauses


def _coerce(name: str, raw: Any, path: str, values: _Values) -> Any:
    kind = _kind(name)
    if kind == "money":
        return _money(raw, path, values.currency)
    if kind == "int":
        if not isinstance(raw, int) or isinstance(raw, bool):
            raise ConditionError(path, f"expected an integer, got {raw!r}")
        return raw
    if not isinstance(raw, str):
        raise ConditionError(path, f"expected text, got {raw!r}")
    choices = _choices(name, values)
    if choices and raw not in choices:
        raise ConditionError(
            path,
            f"{name} is never {raw!r}{did_you_mean(raw, choices)} "
            f"(one of: {', '.join(sorted(choices))})",
        )
    if name == "country" and not COUNTRY.match(raw):
        raise ConditionError(path, f'expected an ISO country code such as "DE", got {raw!r}')
    return raw


def _money(raw: Any, path: str, currency: str) -> Decimal:
    """A decimal string exact in ``currency`` (Babel's minor digits: ``"30.001"`` is no EUR
    amount, as no cart total can ever equal it)."""
    if not isinstance(raw, str):
        raise ConditionError(path, 'money is a decimal string such as "50.00", never a float')
    try:
        amount = Decimal(raw)
    except InvalidOperation:
        amount = None
    if amount is None or not amount.is_finite():
        raise ConditionError(path, f"not a decimal amount: {raw!r}")
    try:
        to_minor(amount, currency)
    except ValueError:
        raise ConditionError(
            path, f"{raw!r} is no amount in {currency}, which has {minor_digits(currency)} decimals"
        ) from None
    return amount


def facts_for(event: Mapping[str, Any], tenant_currency: str) -> dict[str, Any]:
    """The values conditions test, taken from a loaded normalized event.

    ``cart_total`` is a ``Decimal`` in the tenant's currency; a cart in another currency has no
    total as far as conditions go (it never matches a money test).
    """
    from hub.money import to_decimal

    cart = event.get("cart") or {}
    customer = event.get("customer") or {}
    consent = event.get("consent") or {}
    total = None
    if cart and cart.get("currency") == tenant_currency:
        total = to_decimal(cart["total"], cart["currency"])
    locale = customer.get("locale")
    return {
        "cart_total": total,
        "item_count": sum(i.get("quantity", 1) for i in cart.get("items", [])) if cart else None,
        "stage": event.get("stage"),
        "country": customer.get("country"),
        "source": event.get("source"),
        "locale": locale,
        **{CONSENT_FIELD + channel: value for channel, value in consent.items()},
    }
