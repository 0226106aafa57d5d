"""Indexes for the dashboard's aggregate pages: one tenant's deliveries by creation time, one
tenant's webhooks per source by arrival time.

Revision ID: 0008_dashboard_indexes
Revises: 0007_order_ref
Create Date: 2026-12-02

Without them the first page and the client page read every delivery of the installation (a
sequential scan) for the messages of the last 30 days, and every event of a tenant for its
sources' last call and usual gap. ``created_at`` and not ``updated_at``: a delivery's
``created_at`` never changes, so the index costs one entry per message and does not stop
PostgreSQL's in-place (HOT) updates of its status.
"""

from __future__ import annotations

from alembic import op

revision = "0008_dashboard_indexes"
down_revision = "0007_order_ref"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_deliveries_created", "deliveries", ["tenant", "created_at"])
    op.create_index("ix_events_received", "events", ["tenant", "source", "received_at"])


def downgrade() -> None:
    op.drop_index("ix_events_received", table_name="events")
    op.drop_index("ix_deliveries_created", table_name="deliveries")
