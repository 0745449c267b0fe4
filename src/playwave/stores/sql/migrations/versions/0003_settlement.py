"""Add monthly settlement: closed statements, their lines, and operator adjustments.

Triggers make the four tables append-only and keep a closed month closed: UPDATE and DELETE are
rejected on every row, and so is INSERT of lines or adjustments into a month that has a statement.

Revision ID: 0003
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0001"
branch_labels = None
depends_on = None

APPEND_ONLY_TABLES = (
    "settlement_statements",
    "settlement_statement_games",
    "settlement_lines",
    "settlement_adjustments",
)
# Tables whose rows belong to a statement month, checked against closed months on insert.
MONTH_TABLES = ("settlement_statement_games", "settlement_lines", "settlement_adjustments")


def upgrade() -> None:
    op.create_table(
        "settlement_statements",
        sa.Column("month", sa.String(length=7), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("period_start", sa.BigInteger(), nullable=False),
        sa.Column("period_end", sa.BigInteger(), nullable=False),
        sa.Column("closed_at", sa.BigInteger(), nullable=False),
        sa.Column("sessions", sa.BigInteger(), nullable=False),
        sa.Column("open_sessions", sa.BigInteger(), nullable=False),
        sa.Column("total_billable_sec", sa.BigInteger(), nullable=False),
        sa.Column("total_amount", sa.BigInteger(), nullable=False),
        sa.Column("summary_json", sa.Text(), nullable=False),
        sa.Column("summary_csv", sa.Text(), nullable=False),
        sa.Column("checksum", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("month", name=op.f("pk_settlement_statements")),
    )
    op.create_table(
        "settlement_statement_games",
        sa.Column("month", sa.String(length=7), nullable=False),
        sa.Column("game_id", sa.String(length=32), nullable=False),
        sa.Column("game_name", sa.String(length=200), nullable=False),
        sa.Column("sessions", sa.BigInteger(), nullable=False),
        sa.Column("unique_users", sa.BigInteger(), nullable=False),
        sa.Column("open_sessions", sa.BigInteger(), nullable=False),
        sa.Column("play_sec", sa.BigInteger(), nullable=False),
        sa.Column("billable_sec", sa.BigInteger(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("late_end_sessions", sa.BigInteger(), nullable=False),
        sa.Column("late_end_play_sec", sa.BigInteger(), nullable=False),
        sa.Column("late_end_billable_sec", sa.BigInteger(), nullable=False),
        sa.Column("late_end_amount", sa.BigInteger(), nullable=False),
        sa.Column("correction_count", sa.BigInteger(), nullable=False),
        sa.Column("correction_sec", sa.BigInteger(), nullable=False),
        sa.Column("correction_amount", sa.BigInteger(), nullable=False),
        sa.Column("total_billable_sec", sa.BigInteger(), nullable=False),
        sa.Column("total_amount", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("month", "game_id", name=op.f("pk_settlement_statement_games")),
    )
    op.create_table(
        "settlement_lines",
        sa.Column("game_session_id", sa.String(length=40), nullable=False),
        sa.Column("service_month", sa.String(length=7), nullable=False),
        sa.Column("month", sa.String(length=7), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("game_id", sa.String(length=32), nullable=False),
        sa.Column("provider_user_id", sa.String(length=20), nullable=False),
        sa.Column("started_at", sa.BigInteger(), nullable=False),
        sa.Column("ended_at", sa.BigInteger(), nullable=False),
        sa.Column("rate_per_hour", sa.BigInteger(), nullable=False),
        sa.Column("play_sec", sa.BigInteger(), nullable=False),
        sa.Column("billable_sec", sa.BigInteger(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(
            "kind IN ('play', 'late_end')", name=op.f("ck_settlement_lines_kind_known")
        ),
        sa.CheckConstraint(
            "billable_sec <= play_sec", name=op.f("ck_settlement_lines_billable_within_play")
        ),
        sa.PrimaryKeyConstraint(
            "game_session_id", "service_month", name=op.f("pk_settlement_lines")
        ),
    )
    op.create_index(
        "ix_settlement_lines_month", "settlement_lines", ["month", "kind", "game_id"], unique=False
    )
    op.create_table(
        "settlement_adjustments",
        sa.Column(
            "adjustment_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("month", sa.String(length=7), nullable=False),
        sa.Column("game_id", sa.String(length=32), nullable=False),
        sa.Column("game_session_id", sa.String(length=40), nullable=True),
        sa.Column("seconds", sa.BigInteger(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(length=120), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(
            "length(reason) > 0", name=op.f("ck_settlement_adjustments_reason_present")
        ),
        sa.CheckConstraint(
            "length(created_by) > 0", name=op.f("ck_settlement_adjustments_author_present")
        ),
        sa.PrimaryKeyConstraint("adjustment_id", name=op.f("pk_settlement_adjustments")),
    )
    op.create_index(
        "ix_settlement_adjustments_month",
        "settlement_adjustments",
        ["month", "game_id"],
        unique=False,
    )

    if op.get_bind().dialect.name == "postgresql":
        _create_postgresql_triggers()
    else:
        _create_sqlite_triggers()


def _create_postgresql_triggers() -> None:
    op.execute(
        """
        CREATE FUNCTION settlement_reject_change() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION '% rows are append-only; record a correction as an adjustment',
                TG_TABLE_NAME USING ERRCODE = 'integrity_constraint_violation';
        END
        $$
        """
    )
    op.execute(
        """
        CREATE FUNCTION settlement_reject_closed_month() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF EXISTS (SELECT 1 FROM settlement_statements WHERE month = NEW.month) THEN
                RAISE EXCEPTION 'month % is closed; add the entry to an open month', NEW.month
                    USING ERRCODE = 'integrity_constraint_violation';
            END IF;
            RETURN NEW;
        END
        $$
        """
    )
    for table in APPEND_ONLY_TABLES:
        op.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION settlement_reject_change()"
        )
    for table in MONTH_TABLES:
        op.execute(
            f"CREATE TRIGGER {table}_open_month BEFORE INSERT ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION settlement_reject_closed_month()"
        )


def _create_sqlite_triggers() -> None:
    for table in APPEND_ONLY_TABLES:
        for event in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {table}_no_{event.lower()} BEFORE {event} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, '{table} rows are append-only; record a correction "
                "as an adjustment'); END"
            )
    for table in MONTH_TABLES:
        op.execute(
            f"CREATE TRIGGER {table}_open_month BEFORE INSERT ON {table} "
            "WHEN EXISTS (SELECT 1 FROM settlement_statements WHERE month = NEW.month) "
            "BEGIN SELECT RAISE(ABORT, 'month is closed; add the entry to an open month'); END"
        )


def downgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    if not postgresql:
        for table in APPEND_ONLY_TABLES:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_update")
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_delete")
        for table in MONTH_TABLES:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_open_month")

    op.drop_index("ix_settlement_adjustments_month", table_name="settlement_adjustments")
    op.drop_table("settlement_adjustments")
    op.drop_index("ix_settlement_lines_month", table_name="settlement_lines")
    op.drop_table("settlement_lines")
    op.drop_table("settlement_statement_games")
    op.drop_table("settlement_statements")

    if postgresql:
        # Dropping the tables dropped their triggers; the functions remain until dropped here.
        op.execute("DROP FUNCTION IF EXISTS settlement_reject_closed_month()")
        op.execute("DROP FUNCTION IF EXISTS settlement_reject_change()")
