"""The tables exactly as release 0.1.0 created them (``metadata.create_all``, no Alembic).

A frozen copy of that release's ``hub/store.py`` (its ``UTCDateTime`` is a ``DateTime`` in the
database): ``test_migrations`` builds "a database of the previous release" from it and checks
that the hub adopts it. Never change it; the model moves on in ``hub/store.py``.
"""

import sqlalchemy as sa

metadata = sa.MetaData()

events = sa.Table(
    "events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("tenant", sa.String(64), nullable=False),
    sa.Column("source", sa.String(64), nullable=False),
    sa.Column("event_key", sa.String(255), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("checkout_id", sa.String(255), nullable=False),
    sa.Column("occurred_at", sa.DateTime, nullable=False),
    sa.Column("received_at", sa.DateTime, nullable=False),
    sa.Column("email", sa.String(320)),
    sa.Column("phone", sa.String(20)),
    sa.Column("payload", sa.JSON, nullable=False),
    sa.Column("raw", sa.Text),
    sa.Column("status", sa.String(16), nullable=False, default="stored"),
    sa.Column("note", sa.Text),
    sa.UniqueConstraint("tenant", "source", "event_key", name="uq_event_key"),
)
sa.Index("ix_events_status", events.c.status, events.c.received_at)
sa.Index("ix_events_identity", events.c.tenant, events.c.email)
sa.Index("ix_events_phone", events.c.tenant, events.c.phone)
sa.Index("ix_events_checkout", events.c.tenant, events.c.checkout_id)

journeys = sa.Table(
    "journeys",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("tenant", sa.String(64), nullable=False),
    sa.Column("checkout_id", sa.String(255), nullable=False),
    sa.Column("source", sa.String(64), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("flow", sa.String(128)),
    sa.Column("email", sa.String(320)),
    sa.Column("phone", sa.String(20)),
    sa.Column("event_id", sa.Integer),
    sa.Column("event", sa.JSON),
    sa.Column("abandoned_at", sa.DateTime),
    sa.Column("last_update_at", sa.DateTime),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("closed_at", sa.DateTime),
    sa.Column("closed_reason", sa.Text),
    sa.Column("recovered", sa.Boolean, nullable=False, default=False),
    sa.Column("recovered_amount", sa.BigInteger),
    sa.Column("recovered_currency", sa.String(3)),
    sa.UniqueConstraint("tenant", "checkout_id", name="uq_journey_checkout"),
)
sa.Index("ix_journeys_email", journeys.c.tenant, journeys.c.email)
sa.Index("ix_journeys_phone", journeys.c.tenant, journeys.c.phone)

steps = sa.Table(
    "steps",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("journey_id", sa.Integer, sa.ForeignKey("journeys.id"), nullable=False),
    sa.Column("step_index", sa.Integer, nullable=False),
    sa.Column("due_at", sa.DateTime, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("reason", sa.Text),
    sa.Column("updated_at", sa.DateTime, nullable=False),
    sa.UniqueConstraint("journey_id", "step_index", name="uq_step"),
)
sa.Index("ix_steps_due", steps.c.status, steps.c.due_at)

deliveries = sa.Table(
    "deliveries",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("tenant", sa.String(64), nullable=False),
    sa.Column("journey_id", sa.Integer, sa.ForeignKey("journeys.id"), nullable=False),
    sa.Column("step_index", sa.Integer, nullable=False),
    sa.Column("sink", sa.String(64), nullable=False),
    sa.Column("channel", sa.String(32), nullable=False),
    sa.Column("identity", sa.String(320)),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("reason", sa.Text),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("provider_id", sa.String(255)),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("updated_at", sa.DateTime, nullable=False),
    sa.Column("sent_at", sa.DateTime),
    sa.UniqueConstraint("journey_id", "step_index", "sink", name="uq_delivery"),
)
sa.Index(
    "ix_deliveries_identity",
    deliveries.c.tenant,
    deliveries.c.identity,
    deliveries.c.channel,
    deliveries.c.sent_at,
)
sa.Index("ix_deliveries_provider", deliveries.c.provider_id)

delivery_log = sa.Table(
    "delivery_log",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("tenant", sa.String(64), nullable=False),
    sa.Column("journey_id", sa.Integer, nullable=False),
    sa.Column("step_index", sa.Integer, nullable=False),
    sa.Column("sink", sa.String(64)),
    sa.Column("channel", sa.String(32)),
    sa.Column("delivery_id", sa.Integer),
    sa.Column("attempt", sa.Integer, nullable=False, default=0),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("reason", sa.Text),
    sa.Column("at", sa.DateTime, nullable=False),
)
sa.Index("ix_delivery_log_journey", delivery_log.c.journey_id)

suppressions = sa.Table(
    "suppressions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("tenant", sa.String(64), nullable=False),
    sa.Column("identity", sa.String(320), nullable=False),
    sa.Column("channel", sa.String(32), nullable=False),  # "*" = every channel
    sa.Column("reason", sa.Text),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.UniqueConstraint("tenant", "identity", "channel", name="uq_suppression"),
)

plugin_data = sa.Table(
    "plugin_data",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("plugin", sa.String(64), nullable=False),
    sa.Column("tenant", sa.String(64), nullable=False),
    sa.Column("key", sa.String(512), nullable=False),
    sa.Column("value", sa.JSON, nullable=False),
    sa.Column("updated_at", sa.DateTime, nullable=False),
    sa.UniqueConstraint("plugin", "tenant", "key", name="uq_plugin_data"),
)
