"""The holdout section of ``hub report``: messaged against holdout per flow, for people.

The figures come from :func:`hub.incremental.holdout_report`; this module only lays them out
(money in the tenant's locale, intervals as ``estimate [low, high]``).
"""

from __future__ import annotations

from babel.numbers import format_decimal, format_percent

from hub.incremental import FlowHoldout, HoldoutReport, Interval
from hub.money import format_money


def holdout_table(result: HoldoutReport, locale: str) -> str:
    """One block per flow: both groups, the attributed figures, the increments with 95 % CIs."""
    out = [
        f"{result.tenant}: holdout comparison, checkouts abandoned {result.since} to "
        f"{result.until} ({result.timezone}); intervals are 95 %",
    ]
    if not any(f.holdout.journeys for f in result.flows):
        out.append("no journey of the range was in a holdout group")
        return "\n".join(out)
    for flow in result.flows:
        out.extend(["", *_flow_lines(flow, locale)])
    out.extend(
        [
            "",
            "Rates: Newcombe's hybrid score interval (small groups, low rates);"
            " revenue: normal approximation of the per-journey difference.",
        ]
    )
    return "\n".join(out)


def _flow_lines(flow: FlowHoldout, locale: str) -> list[str]:
    m, h = flow.messaged, flow.holdout
    lines = [f"Flow {flow.flow}"]
    for name, group in (("messaged", m), ("holdout", h)):
        rate = group.recovery_rate
        lines.append(
            f"  {name:<9} {_n(group.journeys, locale)} journeys, {_n(group.recovered, locale)}"
            f" recovered ({_pct(rate, locale)}), {_money(group.revenue, locale)}"
        )
    lines.append(
        f"  attributed to messages: {_n(flow.attributed_recovered, locale)} recovered,"
        f" {_money(flow.attributed_revenue, locale)}"
    )
    if flow.incremental_rate is None:
        lines.append("  incremental: - (a group is empty)")
        return lines
    rate = flow.incremental_rate
    lines.append(
        f"  incremental rate: {_pct(rate.estimate, locale)} "
        f"[{_pct(rate.low, locale)}, {_pct(rate.high, locale)}]"
    )
    lines.append(f"  incremental recoveries: {_count(flow.incremental_recovered, locale)}")
    for currency, interval in sorted(flow.incremental_revenue.items()):
        lines.append(f"  incremental revenue: {_amount(interval, currency, locale)}")
    return lines


def _n(value: int, locale: str) -> str:
    return format_decimal(value, locale=locale)


def _pct(value: float | None, locale: str) -> str:
    return "-" if value is None else format_percent(value, "#,##0.0%", locale=locale)


def _count(interval: Interval | None, locale: str) -> str:
    if interval is None:
        return "-"
    parts = (interval.estimate, interval.low, interval.high)
    est, low, high = (format_decimal(v, "#,##0.0", locale=locale) for v in parts)
    return f"{est} [{low}, {high}]"


def _amount(interval: Interval, currency: str, locale: str) -> str:
    est, low, high = (
        format_money(round(v), currency, locale)
        for v in (interval.estimate, interval.low, interval.high)
    )
    return f"{est} [{low}, {high}]"


def _money(money: dict[str, int], locale: str) -> str:
    if not money:
        return "no revenue"
    return ", ".join(format_money(v, c, locale) for c, v in sorted(money.items()))
