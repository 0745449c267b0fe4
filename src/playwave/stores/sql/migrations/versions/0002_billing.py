"""Schedule usage reports: game_sessions.next_report_at and its index over ACTIVE sessions.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("game_sessions") as batch:
        batch.add_column(sa.Column("next_report_at", sa.BigInteger(), nullable=True))
    op.create_index(
        "ix_game_sessions_report_due",
        "game_sessions",
        ["next_report_at"],
        unique=False,
        sqlite_where=sa.text("state = 'ACTIVE'"),
        postgresql_where=sa.text("state = 'ACTIVE'"),
    )


def downgrade() -> None:
    op.drop_index("ix_game_sessions_report_due", table_name="game_sessions")
    with op.batch_alter_table("game_sessions") as batch:
        batch.drop_column("next_report_at")
