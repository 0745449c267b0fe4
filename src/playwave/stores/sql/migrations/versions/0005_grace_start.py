"""Start the exhaustion grace when the server learns of it, apart from the exhaustion itself.

`game_sessions.grace_started_at` is new. Sessions that ran out before this revision get their
`exhausted_at`, because their grace ran from that moment. The live copy only ever needed the
grace start, so its column is renamed.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("game_sessions") as batch:
        batch.add_column(sa.Column("grace_started_at", sa.BigInteger(), nullable=True))
    op.execute(
        "UPDATE game_sessions SET grace_started_at = exhausted_at WHERE exhausted_at IS NOT NULL"
    )

    with op.batch_alter_table("live_sessions") as batch:
        batch.alter_column("exhausted_at", new_column_name="grace_started_at")


def downgrade() -> None:
    with op.batch_alter_table("live_sessions") as batch:
        batch.alter_column("grace_started_at", new_column_name="exhausted_at")

    with op.batch_alter_table("game_sessions") as batch:
        batch.drop_column("grace_started_at")
