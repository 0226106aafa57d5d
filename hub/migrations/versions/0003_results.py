"""Results: attribution on journeys, tracking events, API keys and erasure records.

Revision ID: 0003_results
Revises: 0002_job_binding
Create Date: 2026-12-01

A conversion now records when it came, which event it was, the message credited with it (last
clicked, else delivered, else sent) and refunds taken back later. Opens, clicks, provider
statuses and bounces land once per delivery in ``tracking_events``. ``api_keys`` holds hashed
keys for the REST API; ``erasures`` proves an erasure without keeping the erased address.
Existing recovered journeys keep ``recovered``; their ``recovered_at`` is their ``closed_at``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_results"
down_revision = "0002_job_binding"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("journeys") as batch:
        batch.add_column(sa.Column("recovered_at", sa.DateTime(), nullable=True))
        batch.add_column(sa.Column("conversion_event_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("credited_delivery_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("credit", sa.String(16), nullable=True))
        batch.add_column(sa.Column("refunded_amount", sa.BigInteger(), nullable=True))
    op.execute("UPDATE journeys SET recovered_at = closed_at WHERE recovered")
    op.create_index("ix_journeys_abandoned", "journeys", ["tenant", "abandoned_at"])
    op.create_index("ix_deliveries_journey", "deliveries", ["journey_id"])
    op.create_table(
        "tracking_events",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("journey_id", sa.Integer(), sa.ForeignKey("journeys.id"), nullable=False),
        sa.Column("delivery_id", sa.Integer(), sa.ForeignKey("deliveries.id"), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.UniqueConstraint("delivery_id", "kind", name="uq_tracking_event"),
    )
    op.create_index("ix_tracking_events_tenant", "tracking_events", ["tenant", "at"])
    op.create_index("ix_tracking_events_journey", "tracking_events", ["journey_id"])
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("tenant", sa.String(64), nullable=True),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("secret_hash", sa.String(255), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("last_used_at", sa.DateTime(), nullable=True),
        sa.Column("revoked_at", sa.DateTime(), nullable=True),
        sa.UniqueConstraint("prefix", name="uq_api_key_prefix"),
    )
    op.create_table(
        "erasures",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("identity_digest", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("actor", sa.String(128), nullable=True),
        sa.Column("erased_at", sa.DateTime(), nullable=False),
        sa.Column("rows", sa.JSON(), nullable=False),
    )
    op.create_index("ix_erasures_identity", "erasures", ["tenant", "identity_digest"])


def downgrade() -> None:
    op.drop_index("ix_erasures_identity", table_name="erasures")
    op.drop_table("erasures")
    op.drop_table("api_keys")
    op.drop_index("ix_tracking_events_journey", table_name="tracking_events")
    op.drop_index("ix_tracking_events_tenant", table_name="tracking_events")
    op.drop_table("tracking_events")
    op.drop_index("ix_deliveries_journey", table_name="deliveries")
    op.drop_index("ix_journeys_abandoned", table_name="journeys")
    with op.batch_alter_table("journeys") as batch:
        batch.drop_column("refunded_amount")
        batch.drop_column("credit")
        batch.drop_column("credited_delivery_id")
        batch.drop_column("conversion_event_id")
        batch.drop_column("recovered_at")
