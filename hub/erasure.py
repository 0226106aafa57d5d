"""Erasure and retention: a person's data goes, the counts stay, and the erasure is provable.

:func:`erase_person` removes one person (an e-mail address or a phone number) from one
tenant's data: the stored events (``raw`` included), journeys, deliveries, the delivery log's
reason texts (SMTP errors echo the address), tracking details, and, through the
``hub_erase_person`` hook, what plugins keep. Rows are anonymised, never deleted, so counts,
cart totals and statuses still add up in reports. Where an address is part of an identifier (a
Digistore24 checkout id is ``<email>:<order>``) it is replaced by ``erased-<12 hex>``, the
start of the keyed digest: unique per person, so unique keys hold, and meaningless without the
hub's secret key.

Proof: each erasure writes a row to ``erasures`` with a keyed digest of the address
(HMAC-SHA256 under ``HUB_SECRET_KEY``), who asked, when, and how many rows of each table went.
The digest is matched under the current key and every key in ``HUB_SECRET_KEY_FALLBACKS``, so a
key rotation keeps old proofs findable as long as the old key stays among the fallbacks.

Objections outlive the erasure: a suppression (unsubscribe, a provider's opt-out) is kept with
the digest in place of the address (``erased:<digest>``), which is what GDPR allows to keep to
honour an objection; the engine matches suppressions on the address and its digests (see
:func:`suppression_identities`). An erasure does not add a suppression unless asked
(``suppress=True``): a person who comes back later is a new journey like anyone else.

Retention (:func:`purge_expired`): a tenant's ``retention = "180d"`` anonymises, the same way,
closed journeys and processed events older than that; suppressions stay. Each run that purged
something is recorded as an erasure of kind ``retention``.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from hub import consent_evidence
from hub.phones import to_e164
from hub.store import (
    deliveries,
    delivery_log,
    erasures,
    events,
    journeys,
    plugin_data,
    steps,
    suppressions,
    tracking_events,
    utcnow,
)

log = logging.getLogger(__name__)

KINDS = ("email", "phone")
SUPPRESSION_PREFIX = "erased:"
# the customer fields of a normalized event that name a person (country and locale stay: they
# are coarse, and reports group by them)
PERSONAL_FIELDS = ("email", "phone", "first_name", "last_name", "external_id")
OPEN_STATUSES = ("open", "pending")
RETENTION_DIGEST = "*"  # a retention run erases no one in particular
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


@dataclass
class ErasureResult:
    """What an erasure (or a dry run of one, or a retention run) did or would do."""

    tenant: str
    kind: str  # email | phone | email+phone | retention
    rows: dict[str, Any]
    dry_run: bool
    erased_at: datetime
    digests: list[str] = field(default_factory=list)
    proof_ids: list[int] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """False when a plugin failed or still holds the address: run the erasure again."""
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, for ``--json`` and the REST API."""
        return {
            "tenant": self.tenant,
            "kind": self.kind,
            "dry_run": self.dry_run,
            "erased_at": self.erased_at.isoformat(),
            "digests": self.digests,
            "proof_ids": self.proof_ids,
            "rows": self.rows,
            "complete": self.complete,
            "problems": self.problems,
        }


# ----------------------------------------------------------------------------- identities


def normalize(kind: str, value: str) -> str:
    """The form the hub stores: a lower-cased e-mail address, an E.164 phone number.

    Raises ``ValueError`` with a message fit for the operator.
    """
    if kind == "email":
        address = (value or "").strip().lower()
        if not _EMAIL.match(address):
            raise ValueError(f"{value!r} is not an e-mail address")
        return address
    if kind == "phone":
        number = to_e164(value)
        if number is None:
            raise ValueError(f"{value!r} is not a phone number in international form (+49 151 …)")
        return number
    raise ValueError(f"unknown identity kind {kind!r}")


def identity_digest(key: str, tenant: str, kind: str, value: str) -> str:
    """HMAC-SHA256 (hex) of the normalized identity under ``key``.

    Keyed, so the ``erasures`` table alone cannot be tested against a list of addresses; the
    tenant is part of the message, so two tenants' proofs for one person do not link up.
    """
    message = f"{tenant}\x00{kind}\x00{value}".encode()
    return hmac.new(key.encode(), message, hashlib.sha256).hexdigest()


def _keys(settings: Any) -> list[str]:
    """The current secret key first, then the fallbacks (older keys, kept after a rotation)."""
    return [settings.secret_key, *settings.secret_key_fallbacks]


def digests(settings: Any, tenant: str, kind: str, value: str) -> list[str]:
    """The identity's digest under every key the hub still accepts, current key first."""
    return [identity_digest(key, tenant, kind, value) for key in _keys(settings)]


def suppression_identities(
    settings: Any, tenant: str, email: str | None, phone: str | None
) -> list[str]:
    """What a suppression may be keyed by for this person: the address itself, or, once the
    person was erased, ``erased:<digest>`` under any key still accepted."""
    found = []
    for kind, value in (("email", email), ("phone", phone)):
        if value:
            found.append(value)
            found.extend(SUPPRESSION_PREFIX + d for d in digests(settings, tenant, kind, value))
    return found


# ----------------------------------------------------------------------------- scrubbing


class Scrubber:
    """Replaces known addresses in texts and JSON (keys too) by their markers.

    One pattern finds every e-mail address and every run of 7-15 digits (optionally after a
    ``+``); a match is replaced only when it is one of the known addresses (e-mail compared
    lower-cased, digits as E.164, since WhatsApp's API echoes ``wa_id`` without the ``+``). So
    the cost is linear in the text whatever the number of addresses: retention scrubs a batch
    of hundreds of people with one scrubber.
    """

    _ADDRESS = re.compile(
        r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+|(?<![\d+])\+?\d{7,15}(?!\d)"
    )

    def __init__(self, markers: Mapping[str, str]) -> None:
        self.markers = {k.lower(): v for k, v in markers.items() if k}

    def _marker(self, match: re.Match) -> str:
        found = match.group(0).lower()
        if "@" not in found:
            found = "+" + found.lstrip("+")
        return self.markers.get(found, match.group(0))

    def text(self, value: str | None) -> str | None:
        if not value or not self.markers:
            return value
        return self._ADDRESS.sub(self._marker, value)

    def json(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.text(k): self.json(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.json(v) for v in value]
        return value

    def event(self, event: Any) -> Any:
        """A stored event (JSON) with the person taken out and everything else kept."""
        if not isinstance(event, dict):
            return event
        scrubbed = self.json(event)
        customer = scrubbed.get("customer")
        if isinstance(customer, dict):
            scrubbed["customer"] = {
                k: (None if k in PERSONAL_FIELDS else v) for k, v in customer.items()
            }
        # a recovery link opens the person's cart, often with their address filled in
        for key in ("recovery_url", "raw"):
            if key in scrubbed:
                scrubbed[key] = None
        return scrubbed


def _markers(settings: Any, tenant: str, addresses: Iterable[tuple[str, str]]) -> dict[str, str]:
    return {
        value: "erased-" + identity_digest(settings.secret_key, tenant, kind, value)[:12]
        for kind, value in addresses
    }


# ----------------------------------------------------------------------------- erasing


def erase_person(
    hub: Any,
    tenant: str,
    *,
    email: str | None = None,
    phone: str | None = None,
    actor: str | None = None,
    dry_run: bool = False,
    suppress: bool = False,
    now: datetime | None = None,
) -> ErasureResult:
    """Erase one person from ``tenant``'s data; the REST API and ``hub erase`` call this.

    ``email`` and/or ``phone`` name the person (normalized here; ``ValueError`` when neither
    is usable). The hub's tables change in one transaction, which also writes one proof row
    per identity; plugins are told afterwards (``hub_erase_person``), and their counts and
    failures are added to the proofs. ``dry_run`` changes nothing and reports what would go.
    ``suppress`` also suppresses the person on every channel (by digest), for a request that
    is an objection too. Open journeys of the person are closed as ``erased``. The other
    addresses on the person's rows (the phone of a journey found by e-mail) are theirs too:
    they are scrubbed from texts and their suppressions re-keyed the same way.
    """
    identities = {k: normalize(k, v) for k, v in (("email", email), ("phone", phone)) if v}
    if not identities:
        raise ValueError("give an e-mail address or a phone number to erase")
    settings = hub.settings
    now = now or utcnow()
    current = {k: identity_digest(settings.secret_key, tenant, k, v) for k, v in identities.items()}
    result = ErasureResult(
        tenant=tenant,
        kind="+".join(identities),
        rows={},
        dry_run=dry_run,
        erased_at=now,
        digests=list(current.values()),
    )
    with hub.store.engine.connect() as conn, conn.begin() as transaction:
        matched = _PersonRows.find(conn, tenant, identities)
        scrubber = Scrubber(_markers(settings, tenant, matched.addresses))
        result.rows = matched.erase(conn, now, scrubber)
        result.rows["suppressions"] = _suppressions(
            conn, settings, tenant, matched.addresses, scrubber, now
        )
        if suppress:
            _suppress_everywhere(conn, tenant, current.values(), now)
        if dry_run:
            transaction.rollback()
        else:
            result.proof_ids = [
                conn.execute(
                    sa.insert(erasures)
                    .values(
                        tenant=tenant,
                        identity_digest=current[kind],
                        kind=kind,
                        actor=actor,
                        erased_at=now,
                        rows=result.rows,
                    )
                    .returning(erasures.c.id)
                ).scalar_one()
                for kind in identities
            ]
    _tell_plugins(hub, tenant, matched.for_plugins(), matched.checkout_ids, dry_run, result)
    if dry_run:
        return result
    result.problems.extend(_left_in_plugin_data(hub.store, tenant, matched.addresses))
    stored = dict(result.rows, **({"problems": result.problems} if result.problems else {}))
    with hub.store.begin() as conn:
        conn.execute(
            sa.update(erasures).where(erasures.c.id.in_(result.proof_ids)).values(rows=stored)
        )
    log.info(
        "erasure tenant=%s kind=%s proofs=%s rows=%s complete=%s",
        tenant,
        result.kind,
        result.proof_ids,
        result.rows,
        result.complete,
    )
    return result


@dataclass
class _PersonRows:
    """The person's rows in one tenant: their events, and journeys with everything under them.

    A checkout is the person's when one of its events or its journey names them, so events of
    that checkout that carry no address (a conversion, an early update) go too.
    """

    tenant: str
    identities: Mapping[str, str]
    checkout_ids: list[str]
    event_rows: list[Any]
    journey_rows: list[Any]

    @property
    def addresses(self) -> list[tuple[str, str]]:
        """The requested identities, then the other addresses found on the person's rows."""
        found = list(self.identities.items())
        for row in [*self.event_rows, *self.journey_rows]:
            for kind in KINDS:
                value = row._mapping[kind]
                if value and (kind, value) not in found:
                    found.append((kind, value))
        return found

    def for_plugins(self) -> dict[str, str | None]:
        """The e-mail and phone a plugin is told: the requested one, else the one found."""
        told: dict[str, str | None] = {}
        for kind in KINDS:
            values = [v for k, v in self.addresses if k == kind]
            told[kind] = self.identities.get(kind) or (values[0] if len(values) == 1 else None)
        return told

    @classmethod
    def find(cls, conn: sa.Connection, tenant: str, identities: Mapping[str, str]) -> _PersonRows:
        def names(table: sa.Table) -> Any:
            return sa.or_(*(table.c[kind] == value for kind, value in identities.items()))

        checkouts = set(
            conn.execute(
                sa.select(events.c.checkout_id).where(events.c.tenant == tenant, names(events))
            ).scalars()
        )
        checkouts |= set(
            conn.execute(
                sa.select(journeys.c.checkout_id).where(
                    journeys.c.tenant == tenant, names(journeys)
                )
            ).scalars()
        )
        mine = sorted(checkouts)
        event_rows = conn.execute(
            sa.select(events).where(
                events.c.tenant == tenant,
                sa.or_(names(events), events.c.checkout_id.in_(mine)),
            )
        ).all()
        journey_rows = conn.execute(
            sa.select(journeys).where(
                journeys.c.tenant == tenant,
                sa.or_(names(journeys), journeys.c.checkout_id.in_(mine)),
            )
        ).all()
        return cls(tenant, identities, mine, event_rows, journey_rows)

    def erase(self, conn: sa.Connection, now: datetime, scrubber: Scrubber) -> dict[str, Any]:
        """Anonymise the rows (in ``conn``'s transaction); the count per table."""
        rows = {"events": _erase_events(conn, self.event_rows, scrubber)}
        rows.update(_erase_journeys(conn, self.journey_rows, scrubber, now))
        # deliveries of other journeys that went to the address (none, unless a sink's address
        # came from somewhere else than the event's customer) and log texts naming it
        addresses = [value.lower() for _kind, value in self.addresses]
        mine = [row.id for row in self.journey_rows]
        extra = conn.execute(
            sa.select(deliveries.c.id).where(
                deliveries.c.tenant == self.tenant,
                deliveries.c.identity.in_(addresses),
                deliveries.c.journey_id.not_in(mine),
            )
        ).scalars()
        rows["deliveries"] += _erase_deliveries(conn, deliveries.c.id.in_(list(extra)), scrubber)
        # digits without the +: providers echo numbers both ways
        needles = [a.lstrip("+") for a in addresses]
        mentions = sa.or_(
            *(sa.func.lower(delivery_log.c.reason).contains(n, autoescape=True) for n in needles)
        )
        rows["delivery_log"] += _scrub_column(
            conn,
            delivery_log,
            "reason",
            sa.and_(
                delivery_log.c.tenant == self.tenant,
                delivery_log.c.journey_id.not_in(mine),
                mentions,
            ),
            scrubber,
        )
        return rows


def _erase_events(conn: sa.Connection, rows: list[Any], scrubber: Scrubber) -> int:
    updates = [
        {
            "_id": row.id,
            "email": None,
            "phone": None,
            "raw": None,
            "payload": scrubber.event(row.payload),
            "note": scrubber.text(row.note),
            "checkout_id": scrubber.text(row.checkout_id),
            "event_key": scrubber.text(row.event_key),
        }
        for row in rows
    ]
    _update_many(conn, events, updates)
    return len(updates)


def _erase_journeys(
    conn: sa.Connection, rows: list[Any], scrubber: Scrubber, now: datetime
) -> dict[str, int]:
    """Journeys anonymised, open ones closed as ``erased`` (their steps cancelled), and what
    hangs under them: steps' reasons, deliveries, the delivery log, tracking details."""
    updates = []
    for row in rows:
        values = {
            "_id": row.id,
            "email": None,
            "phone": None,
            "event": scrubber.event(row.event),
            "checkout_id": scrubber.text(row.checkout_id),
            "closed_reason": scrubber.text(row.closed_reason),
        }
        if row.status in OPEN_STATUSES:
            values.update(status="erased", closed_at=now, closed_reason="erased")
        updates.append(values)
    _update_many(conn, journeys, updates)
    ids = [row.id for row in rows]
    closed = [row.id for row in rows if row.status in OPEN_STATUSES]
    if closed:
        conn.execute(
            sa.update(steps)
            .where(steps.c.journey_id.in_(closed), steps.c.status.in_(("scheduled", "retrying")))
            .values(status="cancelled", reason="erased", updated_at=now)
        )
    counts = {"journeys": len(updates)}
    counts["steps"] = _scrub_column(conn, steps, "reason", steps.c.journey_id.in_(ids), scrubber)
    counts["deliveries"] = _erase_deliveries(conn, deliveries.c.journey_id.in_(ids), scrubber)
    counts["delivery_log"] = _scrub_column(
        conn, delivery_log, "reason", delivery_log.c.journey_id.in_(ids), scrubber
    )
    counts["consent_evidence"] = consent_evidence.erase(conn, ids, scrubber)
    counts["tracking_events"] = conn.execute(
        sa.update(tracking_events).where(tracking_events.c.journey_id.in_(ids)).values(detail=None)
    ).rowcount
    return counts


def _erase_deliveries(conn: sa.Connection, where: Any, scrubber: Scrubber) -> int:
    rows = conn.execute(sa.select(deliveries.c.id, deliveries.c.reason).where(where)).all()
    _update_many(
        conn,
        deliveries,
        [{"_id": r.id, "identity": None, "reason": scrubber.text(r.reason)} for r in rows],
    )
    return len(rows)


def _scrub_column(
    conn: sa.Connection, table: sa.Table, column: str, where: Any, scrubber: Scrubber
) -> int:
    """Scrub one text column of the rows ``where`` selects; how many rows were selected."""
    rows = conn.execute(sa.select(table.c.id, table.c[column]).where(where)).all()
    changed = [
        {"_id": r.id, column: scrubber.text(r[1])}
        for r in rows
        if r[1] and scrubber.text(r[1]) != r[1]
    ]
    _update_many(conn, table, changed)
    return len(rows)


def _update_many(conn: sa.Connection, table: sa.Table, updates: list[dict[str, Any]]) -> None:
    """One executemany per set of columns (rows may change different columns)."""
    by_columns: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for values in updates:
        by_columns.setdefault(tuple(sorted(values)), []).append(values)
    for columns, batch in by_columns.items():
        statement = (
            sa.update(table)
            .where(table.c.id == sa.bindparam("_id"))
            .values({c: sa.bindparam(c) for c in columns if c != "_id"})
        )
        conn.execute(statement, batch)


def _suppressions(
    conn: sa.Connection,
    settings: Any,
    tenant: str,
    addresses: Iterable[tuple[str, str]],
    scrubber: Scrubber,
    now: datetime,
) -> int:
    """Re-key the person's suppressions from the address to its digest (``erased:<hex>``).

    A suppression already keyed by the digest for that channel (an earlier erasure) makes the
    address-keyed one redundant: it is deleted instead. Returns how many suppressions named
    the person.
    """
    count = 0
    for kind, value in addresses:
        digest_key = SUPPRESSION_PREFIX + identity_digest(settings.secret_key, tenant, kind, value)
        rows = conn.execute(
            sa.select(suppressions).where(
                suppressions.c.tenant == tenant, suppressions.c.identity == value
            )
        ).all()
        keyed = _suppressed_channels(conn, tenant, digest_key)
        for row in rows:
            count += 1
            if row.channel in keyed:
                conn.execute(sa.delete(suppressions).where(suppressions.c.id == row.id))
                continue
            conn.execute(
                sa.update(suppressions)
                .where(suppressions.c.id == row.id)
                .values(identity=digest_key, reason=scrubber.text(row.reason))
            )
            keyed.add(row.channel)
    return count


def _suppressed_channels(conn: sa.Connection, tenant: str, identity: str) -> set[str]:
    query = sa.select(suppressions.c.channel).where(
        suppressions.c.tenant == tenant, suppressions.c.identity == identity
    )
    return set(conn.execute(query).scalars())


def _suppress_everywhere(
    conn: sa.Connection, tenant: str, digests_: Iterable[str], now: datetime
) -> None:
    """An erasure that is also an objection: a ``*`` suppression by digest, once."""
    for digest in digests_:
        identity = SUPPRESSION_PREFIX + digest
        if "*" in _suppressed_channels(conn, tenant, identity):
            continue
        conn.execute(
            sa.insert(suppressions).values(
                tenant=tenant,
                identity=identity,
                channel="*",
                reason="erased, with an objection to any contact",
                created_at=now,
            )
        )


def _tell_plugins(
    hub: Any,
    tenant: str,
    identities: Mapping[str, str | None],
    checkout_ids: list[str],
    dry_run: bool,
    result: ErasureResult,
) -> None:
    """Call every plugin's ``hub_erase_person`` one by one; a failure names the plugin."""
    registry = hub.registry
    arguments = {
        "tenant": tenant,
        "email": identities.get("email"),
        "phone": identities.get("phone"),
        "checkout_ids": list(checkout_ids),
        "dry_run": dry_run,
    }
    for impl in registry.pm.hook.hub_erase_person.get_hookimpls():
        name = impl.plugin_name
        info = registry.plugins.get(name)
        if info is not None and info.error:
            continue
        kwargs = {"services": registry.services.get(name), **arguments}
        try:
            count = impl.function(**{a: kwargs[a] for a in impl.argnames})
        except Exception as exc:  # plugin code: report it by name, never take the erasure down
            log.exception("plugin %s failed to erase a person", name)
            result.problems.append(f'plugin "{name}": hub_erase_person raised {exc!r}')
            continue
        result.rows[f"plugin:{name}"] = int(count or 0)


def _left_in_plugin_data(
    store: Any, tenant: str, addresses: Iterable[tuple[str, str]]
) -> list[str]:
    """Plugins whose data still names the person after the hook: the erasure is incomplete."""
    mentions = []
    for _kind, value in addresses:
        needle = value.lower()
        mentions.append(sa.func.lower(plugin_data.c.key).contains(needle, autoescape=True))
        text = sa.func.lower(sa.cast(plugin_data.c.value, sa.Text))
        mentions.append(text.contains(needle, autoescape=True))
    with store.begin() as conn:
        found = conn.execute(
            sa.select(plugin_data.c.plugin, sa.func.count())
            .where(plugin_data.c.tenant == tenant, sa.or_(*mentions))
            .group_by(plugin_data.c.plugin)
        ).all()
    return [f'plugin "{plugin}" still holds the address in {n} entries' for plugin, n in found]


# ----------------------------------------------------------------------------- proofs


def find_erasures(
    hub: Any, tenant: str, *, email: str | None = None, phone: str | None = None
) -> list[Any]:
    """The tenant's erasure records, newest first; with ``email``/``phone`` only that person's
    (matched under the current key and every fallback key)."""
    query = sa.select(erasures).where(erasures.c.tenant == tenant)
    wanted = []
    for kind, value in (("email", email), ("phone", phone)):
        if value:
            wanted.extend(digests(hub.settings, tenant, kind, normalize(kind, value)))
    if wanted:
        query = query.where(erasures.c.identity_digest.in_(wanted))
    with hub.store.begin() as conn:
        return list(conn.execute(query.order_by(erasures.c.id.desc())).all())


# ----------------------------------------------------------------------------- retention


def purge_expired(
    hub: Any,
    tenant: Any,
    *,
    now: datetime | None = None,
    dry_run: bool = False,
    batch: int = 500,
) -> ErasureResult | None:
    """Anonymise ``tenant``'s closed journeys and processed events older than its
    ``retention``; ``None`` when the tenant sets none.

    Works in batches of ``batch`` rows, each its own short transaction, so a first run over a
    large history never holds the database's write lock for long. A run that purged something
    is recorded in ``erasures`` (kind ``retention``, ``rows.before`` = the cut-off).
    """
    if getattr(tenant, "retention", None) is None:
        return None
    now = now or utcnow()
    cutoff = now - tenant.retention
    result = ErasureResult(
        tenant=tenant.slug,
        kind="retention",
        rows={"journeys": 0, "events": 0},
        dry_run=dry_run,
        erased_at=now,
    )
    old_journeys = sa.select(journeys).where(
        journeys.c.tenant == tenant.slug,
        journeys.c.created_at < cutoff,
        journeys.c.status.not_in(OPEN_STATUSES),
        sa.or_(journeys.c.email.is_not(None), journeys.c.phone.is_not(None)),
    )
    old_events = sa.select(events).where(
        events.c.tenant == tenant.slug,
        events.c.received_at < cutoff,
        events.c.status.not_in(("stored", "queued")),
        sa.or_(events.c.raw.is_not(None), events.c.email.is_not(None), events.c.phone.is_not(None)),
    )
    if dry_run:
        with hub.store.begin() as conn:
            for table, query in (("journeys", old_journeys), ("events", old_events)):
                counted = sa.select(sa.func.count()).select_from(query.subquery())
                result.rows[table] = conn.execute(counted).scalar_one()
        return result
    for query, erase in ((old_journeys, _purge_journeys), (old_events, _purge_events)):
        while True:
            with hub.store.begin() as conn:
                rows = conn.execute(query.order_by(query.selected_columns.id).limit(batch)).all()
                done = erase(conn, hub.settings, tenant.slug, rows, now) if rows else {}
                for table, n in done.items():
                    result.rows[table] = result.rows.get(table, 0) + n
            if len(rows) < batch:
                break
    if not (result.rows["journeys"] or result.rows["events"]):
        return result
    result.rows["before"] = cutoff.isoformat()
    with hub.store.begin() as conn:
        result.proof_ids = [
            conn.execute(
                sa.insert(erasures)
                .values(
                    tenant=tenant.slug,
                    identity_digest=RETENTION_DIGEST,
                    kind="retention",
                    actor="retention",
                    erased_at=now,
                    rows=result.rows,
                )
                .returning(erasures.c.id)
            ).scalar_one()
        ]
    log.info("retention tenant=%s rows=%s", tenant.slug, result.rows)
    return result


def _batch_scrubber(settings: Any, tenant: str, rows: list[Any]) -> Scrubber:
    """One scrubber for the addresses of a batch of rows (each keeps its own marker)."""
    found = {(kind, row._mapping[kind]) for row in rows for kind in KINDS if row._mapping[kind]}
    return Scrubber(_markers(settings, tenant, found))


def _purge_journeys(
    conn: sa.Connection, settings: Any, tenant: str, rows: list[Any], now: datetime
) -> dict[str, int]:
    return _erase_journeys(conn, rows, _batch_scrubber(settings, tenant, rows), now)


def _purge_events(
    conn: sa.Connection, settings: Any, tenant: str, rows: list[Any], now: datetime
) -> dict[str, int]:
    return {"events": _erase_events(conn, rows, _batch_scrubber(settings, tenant, rows))}


def purge_all(hub: Any, *, now: datetime | None = None) -> dict[str, dict[str, Any]]:
    """Run retention for every tenant that sets it; ``{tenant: rows}`` of those that purged.

    One tenant's failure is logged and does not stop the others.
    """
    done = {}
    for tenant in hub.tenants.values():
        try:
            result = purge_expired(hub, tenant, now=now)
        except Exception:
            log.exception("retention failed for tenant %s", tenant.slug)
            continue
        if result is not None and result.proof_ids:
            done[tenant.slug] = result.rows
    return done


class RetentionSchedule:
    """Runs :func:`purge_all` from a periodic loop at most every ``every`` seconds.

    The worker's sweeper calls :meth:`tick` on each of its rounds (every few seconds); retention
    needs no such pace, and its queries scan old rows, so it runs hourly.
    """

    def __init__(self, hub: Any, every: float = 3600.0, clock: Any = None) -> None:
        import time

        self.hub = hub
        self.every = every
        self.clock = clock or time.monotonic
        self._next = 0.0

    def tick(self) -> dict[str, dict[str, Any]]:
        if self.clock() < self._next:
            return {}
        self._next = self.clock() + self.every
        return purge_all(self.hub)


def erase_counts(rows: Iterable[tuple[str, Any]]) -> str:
    """``events 3, journeys 1, …`` for the CLI: the tables that had rows, in the given order."""
    return ", ".join(f"{table} {n}" for table, n in rows if isinstance(n, int) and n) or "nothing"
