"""What the hub offers plugins at run time, through ``hub.current_hub()``.

Plugins never touch the database or Redis directly: a blueprint (status callbacks, a push
subscription endpoint) or a sink calls these methods. They are part of the plugin contract:
keep their signatures stable.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from hub.store import deliveries, delivery_log, journeys, plugin_data, suppressions

# provider statuses only move forward: a late "sent" never overwrites "read"
STATUS_RANK = {"sending": 0, "sent": 1, "delivered": 2, "read": 3, "failed": 4}


class PluginData:
    """A small per-plugin, per-tenant key → JSON store (e.g. push subscriptions)."""

    def __init__(self, store: Any, plugin: str) -> None:
        self.store = store
        self.plugin = plugin

    def put(self, tenant: str, key: str, value: dict) -> None:
        now = datetime.now(UTC)
        where = (
            plugin_data.c.plugin == self.plugin,
            plugin_data.c.tenant == tenant,
            plugin_data.c.key == key,
        )
        with self.store.begin() as conn:
            updated = conn.execute(
                sa.update(plugin_data).where(*where).values(value=value, updated_at=now)
            ).rowcount
            if not updated:
                conn.execute(
                    sa.insert(plugin_data).values(
                        plugin=self.plugin, tenant=tenant, key=key, value=value, updated_at=now
                    )
                )

    def get(self, tenant: str, key: str) -> dict | None:
        with self.store.begin() as conn:
            row = conn.execute(
                sa.select(plugin_data.c.value).where(
                    plugin_data.c.plugin == self.plugin,
                    plugin_data.c.tenant == tenant,
                    plugin_data.c.key == key,
                )
            ).first()
        return row.value if row else None

    def delete(self, tenant: str, key: str) -> bool:
        with self.store.begin() as conn:
            return bool(
                conn.execute(
                    sa.delete(plugin_data).where(
                        plugin_data.c.plugin == self.plugin,
                        plugin_data.c.tenant == tenant,
                        plugin_data.c.key == key,
                    )
                ).rowcount
            )

    def find(self, tenant: str, prefix: str = "") -> dict[str, dict]:
        with self.store.begin() as conn:
            rows = conn.execute(
                sa.select(plugin_data.c.key, plugin_data.c.value).where(
                    plugin_data.c.plugin == self.plugin,
                    plugin_data.c.tenant == tenant,
                    plugin_data.c.key.startswith(prefix, autoescape=True),
                )
            ).all()
        return {r.key: r.value for r in rows}


def record_provider_status(
    store: Any, sink: str, provider_id: str, status: str, reason: str | None = None
) -> bool:
    """A provider's status callback (delivered, read, failed) for a message we sent.

    Looks the delivery up by the id ``Sink.send`` returned. Statuses only move forward
    (sent → delivered → read; failed is final); every callback is kept in the delivery log.
    Returns False when no delivery has that id (within ``tenant`` when given).
    """
    now = datetime.now(UTC)
    with store.begin() as conn:
        row = conn.execute(
            sa.select(deliveries).where(
                deliveries.c.sink == sink, deliveries.c.provider_id == provider_id
            )
        ).first()
        if row is None:
            return False
        journey = conn.execute(
            sa.select(journeys.c.tenant).where(journeys.c.id == row.journey_id)
        ).first()
        conn.execute(
            sa.insert(delivery_log).values(
                tenant=journey.tenant,
                journey_id=row.journey_id,
                step_index=row.step_index,
                sink=sink,
                channel=row.channel,
                delivery_id=row.id,
                attempt=row.attempts,
                status=status,
                reason=reason,
                at=now,
            )
        )
        if STATUS_RANK.get(status, -1) > STATUS_RANK.get(row.status, -1):
            conn.execute(
                sa.update(deliveries)
                .where(deliveries.c.id == row.id)
                .values(status=status, reason=reason, updated_at=now)
            )
    return True


def suppress(store: Any, tenant: str, identity: str, channel: str, reason: str) -> bool:
    """Stop messaging ``identity`` (e-mail or E.164 phone) on ``channel`` (``"*"`` = all).

    For providers that report an opt-out (WhatsApp's "user stopped marketing messages");
    every later step checks suppressions before sending. Returns False if already suppressed.
    """
    identity = identity.strip().lower()
    with store.begin() as conn:
        exists = conn.execute(
            sa.select(suppressions.c.id).where(
                suppressions.c.tenant == tenant,
                suppressions.c.identity == identity,
                suppressions.c.channel == channel,
            )
        ).first()
        if exists:
            return False
        conn.execute(
            sa.insert(suppressions).values(
                tenant=tenant,
                identity=identity,
                channel=channel,
                reason=reason,
                created_at=datetime.now(UTC),
            )
        )
    return True
