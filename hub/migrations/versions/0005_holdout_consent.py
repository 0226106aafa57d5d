"""Holdout groups and consent evidence.

Revision ID: 0005_holdout_consent
Revises: 0004_users
Create Date: 2026-12-03

``journeys.holdout`` marks a journey of its flow's holdout group (hub.holdout); journeys from
before are not held out (server default false). ``consent_evidence`` records, per channel
decision, the consent fact and the tenant policy behind it (hub.consent_evidence).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_holdout_consent"
down_revision = "0004_users"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("journeys") as batch:
        batch.add_column(
            sa.Column("holdout", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    op.create_table(
        "consent_evidence",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("journey_id", sa.Integer(), sa.ForeignKey("journeys.id"), nullable=False),
        sa.Column("delivery_id", sa.Integer(), sa.ForeignKey("deliveries.id"), nullable=True),
        sa.Column("step_index", sa.Integer(), nullable=False),
        sa.Column("sink", sa.String(64), nullable=False),
        sa.Column("channel", sa.String(32), nullable=False),
        sa.Column("email", sa.String(320), nullable=True),
        sa.Column("phone", sa.String(20), nullable=True),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("policy", sa.Text(), nullable=False),
        sa.Column("fact", sa.JSON(), nullable=False),
        sa.Column("decided_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_consent_evidence_email", "consent_evidence", ["tenant", "email"])
    op.create_index("ix_consent_evidence_phone", "consent_evidence", ["tenant", "phone"])
    op.create_index("ix_consent_evidence_journey", "consent_evidence", ["journey_id"])


def downgrade() -> None:
    op.drop_table("consent_evidence")
    with op.batch_alter_table("journeys") as batch:
        batch.drop_column("holdout")
