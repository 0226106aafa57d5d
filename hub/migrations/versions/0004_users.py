"""Dashboard users: agency admins (every tenant) and client viewers (one tenant, read-only).

Revision ID: 0004_users
Revises: 0003_results
Create Date: 2026-12-02

Only a password hash (werkzeug's scrypt) is stored. A check constraint keeps the two kinds of
account apart: an admin has no tenant, a viewer exactly one, so a half-made viewer can never
fall back to seeing every tenant.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_users"
down_revision = "0003_results"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("tenant", sa.String(64), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("last_sign_in_at", sa.DateTime(), nullable=True),
        sa.UniqueConstraint("email", name="uq_user_email"),
        sa.CheckConstraint(
            "(role = 'admin' AND tenant IS NULL) OR (role = 'viewer' AND tenant IS NOT NULL)",
            name="ck_user_role_tenant",
        ),
    )


def downgrade() -> None:
    op.drop_table("users")
