"""Erasure records: ``kind`` holds ``retention`` (nine characters; 0003 made it eight).

Revision ID: 0005_erasure_kind
Revises: 0004_users
Create Date: 2026-12-01

PostgreSQL enforces ``VARCHAR(8)``, so the first retention run's record would fail there (SQLite
ignores lengths). Widening keeps every existing row.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_erasure_kind"
down_revision = "0004_users"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("erasures") as batch:
        batch.alter_column(
            "kind", existing_type=sa.String(8), type_=sa.String(16), existing_nullable=False
        )


def downgrade() -> None:
    with op.batch_alter_table("erasures") as batch:
        batch.alter_column(
            "kind", existing_type=sa.String(16), type_=sa.String(8), existing_nullable=False
        )
