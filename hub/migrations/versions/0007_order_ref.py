"""The purchase a journey's conversion made, so refunds that name only it find the journey.

Revision ID: 0007_order_ref
Revises: 0006_report_indexes
Create Date: 2026-12-03

Stripe's ``charge.refunded`` names the payment intent and Shopify's ``refunds/create`` the
order, never the checkout: the conversion now records that reference on the journey it
recovered (``order_ref``), and a refund looks the journey up by (tenant, order_ref). Journeys
recovered before this revision have none; their refunds still match by checkout id.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_order_ref"
down_revision = "0006_report_indexes"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("journeys") as batch:
        batch.add_column(sa.Column("order_ref", sa.String(255), nullable=True))
    op.create_index("ix_journeys_order_ref", "journeys", ["tenant", "order_ref"])


def downgrade() -> None:
    op.drop_index("ix_journeys_order_ref", table_name="journeys")
    with op.batch_alter_table("journeys") as batch:
        batch.drop_column("order_ref")
