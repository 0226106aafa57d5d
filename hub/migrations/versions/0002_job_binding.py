"""Job binding: the installation id, a random token on journeys and steps, and the time of a
step's next retry.

Revision ID: 0002_job_binding
Revises: 0001_baseline
Create Date: 2026-12-01

Jobs and links name the installation, the tenant and the token of the row they act on, so a job
made for another database, or for a row whose id a restored backup handed out again, is
dropped instead of run (hub.binding). Rows that exist get a random token here; the installation
row gets a random UUID. ``steps.next_attempt_at`` lets the sweep and the workers wait for a
retry's back-off instead of its first attempt's time.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0002_job_binding"
down_revision = "0001_baseline"
branch_labels = None
depends_on = None

# 16 random hex digits per existing row, made by the database (one statement per table)
_RANDOM_TOKEN = {
    "sqlite": "lower(hex(randomblob(8)))",
    "postgresql": "substr(md5(random()::text || clock_timestamp()::text || id::text), 1, 16)",
}


def upgrade() -> None:
    installation = op.create_table(
        "installation",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("uuid", sa.String(36), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.CheckConstraint("id = 1", name="ck_installation_one_row"),
        sa.UniqueConstraint("uuid", name="uq_installation_uuid"),
    )
    op.bulk_insert(
        installation,
        [
            {
                "id": 1,
                "uuid": str(uuid.uuid4()),
                "created_at": datetime.now(UTC).replace(tzinfo=None),
            }
        ],
    )
    random_token = _RANDOM_TOKEN[op.get_bind().dialect.name]
    for table in ("journeys", "steps"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("token", sa.String(32), nullable=True))
            if table == "steps":
                batch.add_column(sa.Column("next_attempt_at", sa.DateTime(), nullable=True))
        op.execute(f"UPDATE {table} SET token = {random_token}")
        with op.batch_alter_table(table) as batch:
            batch.alter_column("token", existing_type=sa.String(32), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("steps") as batch:
        batch.drop_column("next_attempt_at")
        batch.drop_column("token")
    with op.batch_alter_table("journeys") as batch:
        batch.drop_column("token")
    op.drop_table("installation")
