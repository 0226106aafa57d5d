"""``hub report`` and ``hub export``: a tenant's recovery results for people and machines.

Both only read (they are in ``hub.console.READ_ONLY``): run where the hub runs, or with its
``DATABASE_URL``. Days are the tenant's local days; ``--since`` and ``--until`` are inclusive
and default to the current month so far.
"""

from __future__ import annotations

import json
from datetime import date, datetime
from typing import Any

import click
from babel.numbers import format_decimal, format_percent

from hub.cliparams import known_tenant, require_database
from hub.current import current_hub
from hub.export import COLUMNS, export_csv
from hub.holdoutcli import holdout_table
from hub.incremental import holdout_report
from hub.money import format_money
from hub.reports import GROUPINGS, Figures, Report, ReportError, default_range, report

DAY = click.DateTime(formats=["%Y-%m-%d"])


def _range(tenant: Any, since: datetime | None, until: datetime | None) -> tuple[date, date]:
    return default_range(
        tenant.timezone, since.date() if since else None, until.date() if until else None
    )


def _tenant(slug: str) -> Any:
    hub = current_hub()
    tenant = known_tenant(hub, slug)
    require_database(hub)
    return hub, tenant


def _usage(exc: ReportError) -> click.UsageError:
    return click.UsageError(str(exc))


@click.command("report")
@click.argument("tenant_slug", metavar="TENANT")
@click.option("--since", type=DAY, default=None, help="First day (YYYY-MM-DD), local time.")
@click.option("--until", type=DAY, default=None, help="Last day, inclusive (default: today).")
@click.option("--by", type=click.Choice(GROUPINGS), default="day", show_default=True)
@click.option(
    "--format",
    "output",
    type=click.Choice(("table", "csv", "json")),
    default="table",
    show_default=True,
    help="table for people (money in the tenant's locale); csv and json in minor units.",
)
@click.option(
    "--holdout",
    is_flag=True,
    help="Only the holdout comparison per flow (messaged vs holdout, 95 % intervals).",
)
def report_command(
    tenant_slug: str,
    since: datetime | None,
    until: datetime | None,
    by: str,
    output: str,
    holdout: bool = False,
) -> None:
    """Abandoned, messaged, delivered, opened, clicked and recovered checkouts, recovery rate
    and recovered revenue per currency (net of refunds), grouped by day, flow, step, channel
    or source of abandonment."""
    hub, tenant = _tenant(tenant_slug)
    first, last = _range(tenant, since, until)
    if holdout:
        if output == "csv":
            raise click.UsageError("--holdout prints a table or JSON, not CSV")
        click.echo(_holdout(hub, tenant, first, last, output))
        return
    try:
        result = report(hub.store, tenant.slug, first, last, by=by, timezone=tenant.timezone)
    except ReportError as exc:
        raise _usage(exc) from exc
    if by == "flow" and output == "table":
        # the holdout section next to the attributed figures, once a flow holds some out
        table = report_table(result, tenant.locale)
        comparison = _holdout(hub, tenant, first, last, output, only_if_any=True)
        click.echo(table + ("\n\n" + comparison if comparison else ""))
    elif output == "json":
        click.echo(json.dumps(result.as_dict(), indent=2))
    elif output == "csv":
        click.echo(result.as_csv(), nl=False)
    else:
        click.echo(report_table(result, tenant.locale))


def _holdout(
    hub: Any, tenant: Any, first: date, last: date, output: str, only_if_any: bool = False
) -> str | None:
    """The holdout comparison (hub.incremental) as a table, or JSON for ``--format json``;
    with ``only_if_any``, ``None`` when no journey of the range was held out."""
    try:
        result = holdout_report(hub.store, tenant.slug, first, last, timezone=tenant.timezone)
    except ReportError as exc:
        raise _usage(exc) from exc
    if only_if_any and not any(f.holdout.journeys for f in result.flows):
        return None
    if output == "table":
        return holdout_table(result, tenant.locale)
    return json.dumps(result.as_dict(), indent=2)


@click.command("export", epilog="Columns: " + ", ".join(name for name, _doc in COLUMNS) + ".")
@click.argument("tenant_slug", metavar="TENANT")
@click.option("--since", type=DAY, default=None, help="First day (YYYY-MM-DD), local time.")
@click.option("--until", type=DAY, default=None, help="Last day, inclusive (default: today).")
@click.option("--email", "emails", multiple=True, help="Only this customer (repeatable).")
@click.option("--bom", is_flag=True, help="Start with a UTF-8 byte-order mark (for Excel).")
def export_command(
    tenant_slug: str,
    since: datetime | None,
    until: datetime | None,
    emails: tuple[str, ...],
    bom: bool,
) -> None:
    """Write the abandoned checkouts of the range as CSV to stdout, one row per checkout:
    contact, cart, stage, consent, status, each message's channel and outcome, recovered
    revenue. Streamed: any number of rows in little memory."""
    hub, tenant = _tenant(tenant_slug)
    first, last = _range(tenant, since, until)
    try:
        chunks = export_csv(hub.store, tenant.slug, first, last, emails, tenant.timezone, bom=bom)
    except ReportError as exc:
        raise _usage(exc) from exc
    for chunk in chunks:
        click.echo(chunk, nl=False)


# --------------------------------------------------------------------------- output


def report_table(result: Report, locale: str) -> str:
    """A table for a terminal: one line per group, a total, and the money not in it."""
    head = {"step": ["Flow", "Step"]}.get(result.by, [result.by.capitalize()])
    columns = [
        *head,
        "Abandoned",
        "Messaged",
        "Msgs",
        "Delivered",
        "Opened*",
        "Clicked",
        "Recovered",
        "Rate",
        "Revenue (net)",
        "Msgs/rec",
    ]
    lines = [[*_keys(result.by, row), *_cells(row.figures, locale)] for row in result.rows]
    total = ["Total", *[""] * (len(head) - 1), *_cells(result.total, locale)]
    widths = [max(len(str(x)) for x in col) for col in zip(columns, *lines, total, strict=True)]

    def line(cells: list[str]) -> str:
        left = len(head)
        return "  ".join(
            str(c).ljust(w) if i < left else str(c).rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    rule = "  ".join("-" * w for w in widths)
    out = [
        f"{result.tenant}: checkouts abandoned {result.since} to {result.until} "
        f"({result.timezone}), by {result.by}",
        "",
        line(columns),
        rule,
        *(line(cells) for cells in lines),
        rule,
        line(total),
        "",
    ]
    t = result.total
    out.append(
        f"Recovered without a message: {_number(t.recovered_without_message, locale)} "
        f"({_amounts(t.revenue_without_message, locale)}); not in the rate or revenue above."
    )
    if any(t.refunded.values()):
        out.append(f"Refunded after recovery: {_amounts(t.refunded, locale)} (taken off revenue).")
    out.append("* Opens are an estimate: some mail apps load every image on arrival.")
    return "\n".join(out)


def _keys(by: str, row: Any) -> list[str]:
    if by == "step":
        return [row.flow or "-", "no message" if row.step is None else str(row.step)]
    value = getattr(row, by)
    if value is None:
        return ["no message" if by == "channel" else "-"]
    return [value.isoformat() if isinstance(value, date) else str(value)]


def _cells(f: Figures, locale: str) -> list[str]:
    rate = f.recovery_rate
    per = f.messages_per_recovery
    return [
        *(
            _number(n, locale)
            for n in (f.abandoned, f.messaged, f.messages, f.delivered, f.opened, f.clicked)
        ),
        _number(f.recovered, locale),
        format_percent(rate, "#,##0.0%", locale=locale) if rate is not None else "-",
        _amounts(f.revenue, locale),
        format_decimal(per, "#,##0.0", locale=locale) if per is not None else "-",
    ]


def _number(n: int, locale: str) -> str:
    return format_decimal(n, locale=locale)


def _amounts(money: dict[str, int], locale: str) -> str:
    """One amount per currency, side by side: sums across currencies mean nothing."""
    if not money:
        return "-"
    return ", ".join(format_money(v, c, locale) for c, v in sorted(money.items()))
