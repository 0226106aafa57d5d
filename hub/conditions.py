"""The small, safe condition language of ``when`` tables in tenant files.

A ``when`` table holds if every key holds; ``any = [...]`` holds if one of its tables does. A
plain value means equality; ``{op = value}`` takes ``eq ne in not_in lt lte gt gte``. There is
no ``eval``: a condition is compiled once, at config load, into a tree of :class:`Clause`
objects, and every mistake is reported with its key path.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from hub.durations import parse_duration

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

# field name -> the type its values are compared as
FIELDS: dict[str, str] = {
    "cart_total": "money",
    "item_count": "int",
    "stage": "str",
    "country": "str",
    "source": "str",
    "locale": "str",
    "consent_email": "str",
    "consent_whatsapp": "str",
}


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
    if actual is None:
        # An unknown fact matches only "ne"/"not_in": a cart without a total is not >= 200.
        return clause.op in ("ne", "not_in")
    try:
        return OPERATORS[clause.op](actual, clause.value)
    except TypeError:
        return False


def compile_condition(when: Any, currency: str, path: str = "when") -> Condition:
    """Compile a ``when`` table; raises :class:`ConditionError` naming the key path."""
    if not isinstance(when, Mapping):
        raise ConditionError(path, "must be a table")
    clauses: list[Clause] = []
    any_of: tuple[Condition, ...] = ()
    for key, spec in when.items():
        key_path = f"{path}.{key}"
        if key == "any":
            if not isinstance(spec, list) or not spec:
                raise ConditionError(key_path, "must be a non-empty list of tables")
            any_of = tuple(
                compile_condition(item, currency, f"{key_path}[{i}]") for i, item in enumerate(spec)
            )
        elif key == "abandons":
            clauses.append(_compile_abandons(spec, key_path))
        elif key in FIELDS:
            clauses.extend(_compile_field(key, spec, key_path))
        else:
            known = ", ".join(sorted([*FIELDS, "abandons", "any"]))
            raise ConditionError(key_path, f'unknown field "{key}" (known: {known})')
    return Condition(tuple(clauses), any_of)


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


def _compile_field(name: str, spec: Any, path: str) -> list[Clause]:
    ops = spec if isinstance(spec, Mapping) else {"eq": spec}
    if not ops:
        raise ConditionError(path, "an empty table tests nothing")
    clauses = []
    for op, raw in ops.items():
        op_path = f"{path}.{op}" if isinstance(spec, Mapping) else path
        if op not in OPERATORS:
            raise ConditionError(path, f'unknown operator "{op}" (use {", ".join(OPERATORS)})')
        kind = FIELDS[name]
        if op in ORDERED and kind == "str":
            raise ConditionError(op_path, f'"{op}" compares numbers; {name} is text')
        if op in SET_OPS:
            if not isinstance(raw, list):
                raise ConditionError(op_path, f'"{op}" needs a list')
            value: Any = tuple(_coerce(kind, item, op_path) for item in raw)
        else:
            value = _coerce(kind, raw, op_path)
        clauses.append(Clause(name, op, value))
    return clauses


def _coerce(kind: str, raw: Any, path: str) -> Any:
    if kind == "money":
        if not isinstance(raw, str):
            raise ConditionError(path, 'money is a decimal string such as "50.00", never a float')
        try:
            return Decimal(raw)
        except InvalidOperation:
            raise ConditionError(path, f"not a decimal amount: {raw!r}") from None
    if kind == "int":
        if not isinstance(raw, int) or isinstance(raw, bool):
            raise ConditionError(path, f"expected an integer, got {raw!r}")
        return raw
    if not isinstance(raw, str):
        raise ConditionError(path, f"expected text, got {raw!r}")
    return raw


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
        "consent_email": consent.get("email", "unknown"),
        "consent_whatsapp": consent.get("whatsapp", "unknown"),
    }
