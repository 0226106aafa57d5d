"""Baseline: the schema of release 0.1.0, which created its tables without Alembic.

Revision ID: 0001_baseline
Revises:
Create Date: 2026-11-20

A database that release created is stamped at this revision, not upgraded to it (see
hub.migrations.upgrade), so this script only ever runs on an empty database.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_baseline"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("event_key", sa.String(255), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("checkout_id", sa.String(255), nullable=False),
        sa.Column("occurred_at", sa.DateTime(), nullable=False),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.Column("email", sa.String(320)),
        sa.Column("phone", sa.String(20)),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("raw", sa.Text()),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("note", sa.Text()),
        sa.UniqueConstraint("tenant", "source", "event_key", name="uq_event_key"),
    )
    op.create_index("ix_events_status", "events", ["status", "received_at"])
    op.create_index("ix_events_identity", "events", ["tenant", "email"])
    op.create_index("ix_events_phone", "events", ["tenant", "phone"])
    op.create_index("ix_events_checkout", "events", ["tenant", "checkout_id"])

    op.create_table(
        "journeys",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("checkout_id", sa.String(255), nullable=False),
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("flow", sa.String(128)),
        sa.Column("email", sa.String(320)),
        sa.Column("phone", sa.String(20)),
        sa.Column("event_id", sa.Integer()),
        sa.Column("event", sa.JSON()),
        sa.Column("abandoned_at", sa.DateTime()),
        sa.Column("last_update_at", sa.DateTime()),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("closed_at", sa.DateTime()),
        sa.Column("closed_reason", sa.Text()),
        sa.Column("recovered", sa.Boolean(), nullable=False),
        sa.Column("recovered_amount", sa.BigInteger()),
        sa.Column("recovered_currency", sa.String(3)),
        sa.UniqueConstraint("tenant", "checkout_id", name="uq_journey_checkout"),
    )
    op.create_index("ix_journeys_email", "journeys", ["tenant", "email"])
    op.create_index("ix_journeys_phone", "journeys", ["tenant", "phone"])

    op.create_table(
        "steps",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("journey_id", sa.Integer(), sa.ForeignKey("journeys.id"), nullable=False),
        sa.Column("step_index", sa.Integer(), nullable=False),
        sa.Column("due_at", sa.DateTime(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text()),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("journey_id", "step_index", name="uq_step"),
    )
    op.create_index("ix_steps_due", "steps", ["status", "due_at"])

    op.create_table(
        "deliveries",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("journey_id", sa.Integer(), sa.ForeignKey("journeys.id"), nullable=False),
        sa.Column("step_index", sa.Integer(), nullable=False),
        sa.Column("sink", sa.String(64), nullable=False),
        sa.Column("channel", sa.String(32), nullable=False),
        sa.Column("identity", sa.String(320)),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text()),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("provider_id", sa.String(255)),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("sent_at", sa.DateTime()),
        sa.UniqueConstraint("journey_id", "step_index", "sink", name="uq_delivery"),
    )
    op.create_index(
        "ix_deliveries_identity", "deliveries", ["tenant", "identity", "channel", "sent_at"]
    )
    op.create_index("ix_deliveries_provider", "deliveries", ["provider_id"])

    op.create_table(
        "delivery_log",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("journey_id", sa.Integer(), nullable=False),
        sa.Column("step_index", sa.Integer(), nullable=False),
        sa.Column("sink", sa.String(64)),
        sa.Column("channel", sa.String(32)),
        sa.Column("delivery_id", sa.Integer()),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text()),
        sa.Column("at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_delivery_log_journey", "delivery_log", ["journey_id"])

    op.create_table(
        "suppressions",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("identity", sa.String(320), nullable=False),
        sa.Column("channel", sa.String(32), nullable=False),
        sa.Column("reason", sa.Text()),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("tenant", "identity", "channel", name="uq_suppression"),
    )

    op.create_table(
        "plugin_data",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("plugin", sa.String(64), nullable=False),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("key", sa.String(512), nullable=False),
        sa.Column("value", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("plugin", "tenant", "key", name="uq_plugin_data"),
    )


def downgrade() -> None:
    for table in (
        "plugin_data",
        "suppressions",
        "delivery_log",
        "deliveries",
        "steps",
        "journeys",
        "events",
    ):
        op.drop_table(table)  # drops its indexes too
