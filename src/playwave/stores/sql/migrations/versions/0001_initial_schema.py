"""Create the initial schema: games, keys, sessions, partner call queue, live state.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "games",
        sa.Column("game_id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("rate_per_hour", sa.BigInteger(), nullable=False),
        sa.Column("roblox_place_id", sa.BigInteger(), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("rate_per_hour >= 0", name=op.f("ck_games_rate_not_negative")),
        sa.PrimaryKeyConstraint("game_id", name=op.f("pk_games")),
    )
    op.create_table(
        "launcher_keys",
        sa.Column("key_id", sa.String(length=40), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("revoked_at", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("key_id", name=op.f("pk_launcher_keys")),
    )
    op.create_table(
        "launcher_sessions",
        sa.Column("launcher_session_id", sa.String(length=40), nullable=False),
        sa.Column("pc_id", sa.String(length=128), nullable=False),
        sa.Column("cafe_id", sa.String(length=64), nullable=False),
        sa.Column("cafe_name", sa.String(length=200), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("external_ip", sa.String(length=64), nullable=False),
        sa.Column("internal_ip", sa.String(length=64), nullable=False),
        sa.Column("launcher_version", sa.String(length=64), nullable=False),
        sa.Column("hardware", sa.JSON(), nullable=False),
        sa.Column("started_at", sa.BigInteger(), nullable=False),
        sa.Column("last_heartbeat_at", sa.BigInteger(), nullable=False),
        sa.Column("ended_at", sa.BigInteger(), nullable=True),
        sa.Column("end_reason", sa.String(length=32), nullable=True),
        sa.PrimaryKeyConstraint("launcher_session_id", name=op.f("pk_launcher_sessions")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_launcher_sessions_token_hash")),
    )
    with op.batch_alter_table("launcher_sessions", schema=None) as batch_op:
        batch_op.create_index(
            "ix_launcher_sessions_open_seen",
            ["last_heartbeat_at"],
            unique=False,
            sqlite_where=sa.text("ended_at IS NULL"),
            postgresql_where=sa.text("ended_at IS NULL"),
        )
        batch_op.create_index(
            "ux_launcher_sessions_open_pc",
            ["pc_id"],
            unique=True,
            sqlite_where=sa.text("ended_at IS NULL"),
            postgresql_where=sa.text("ended_at IS NULL"),
        )

    op.create_table(
        "live_launchers",
        sa.Column("launcher_session_id", sa.String(length=40), nullable=False),
        sa.Column("last_seen_at", sa.BigInteger(), nullable=False),
        sa.Column("deadline", sa.BigInteger(), nullable=False),
        sa.Column("lease_until", sa.BigInteger(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("launcher_session_id", name=op.f("pk_live_launchers")),
    )
    with op.batch_alter_table("live_launchers", schema=None) as batch_op:
        batch_op.create_index("ix_live_launchers_deadline", ["deadline"], unique=False)

    op.create_table(
        "live_nonces",
        sa.Column("key_id", sa.String(length=40), nullable=False),
        sa.Column("nonce", sa.String(length=128), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("key_id", "nonce", name=op.f("pk_live_nonces")),
    )
    with op.batch_alter_table("live_nonces", schema=None) as batch_op:
        batch_op.create_index("ix_live_nonces_expires", ["expires_at"], unique=False)

    op.create_table(
        "live_otts",
        sa.Column("ott", sa.String(length=36), nullable=False),
        sa.Column("game_id", sa.String(length=32), nullable=False),
        sa.Column("pc_id", sa.String(length=128), nullable=False),
        sa.Column("cafe_id", sa.String(length=64), nullable=False),
        sa.Column("launcher_session_id", sa.String(length=40), nullable=True),
        sa.Column("issued_at", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("ott", name=op.f("pk_live_otts")),
    )
    op.create_table(
        "live_sessions",
        sa.Column("game_session_id", sa.String(length=40), nullable=False),
        sa.Column("game_id", sa.String(length=32), nullable=False),
        sa.Column("provider_user_id", sa.String(length=20), nullable=False),
        sa.Column("pc_id", sa.String(length=128), nullable=False),
        sa.Column("started_at", sa.BigInteger(), nullable=False),
        sa.Column("last_heartbeat_at", sa.BigInteger(), nullable=False),
        sa.Column("exhausted_at", sa.BigInteger(), nullable=True),
        sa.Column("state", sa.String(length=8), nullable=False),
        sa.Column("end_reason", sa.String(length=24), nullable=True),
        sa.Column("deadline", sa.BigInteger(), nullable=False),
        sa.Column("lease_until", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("keep_until", sa.BigInteger(), nullable=True),
        sa.Column(
            "heartbeat_dirty", sa.Boolean(), server_default=sa.text("(false)"), nullable=False
        ),
        sa.PrimaryKeyConstraint("game_session_id", name=op.f("pk_live_sessions")),
    )
    with op.batch_alter_table("live_sessions", schema=None) as batch_op:
        batch_op.create_index("ix_live_sessions_deadline", ["deadline"], unique=False)
        batch_op.create_index("ix_live_sessions_dirty", ["heartbeat_dirty"], unique=False)

    op.create_table(
        "partner_calls",
        sa.Column(
            "call_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("idempotency_key", sa.String(length=120), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("game_session_id", sa.String(length=40), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("next_attempt_at", sa.BigInteger(), nullable=False),
        sa.Column("lease_until", sa.BigInteger(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("completed_at", sa.BigInteger(), nullable=True),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("call_id", name=op.f("pk_partner_calls")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_partner_calls_idempotency_key")),
    )
    with op.batch_alter_table("partner_calls", schema=None) as batch_op:
        batch_op.create_index(
            "ix_partner_calls_due",
            ["next_attempt_at"],
            unique=False,
            sqlite_where=sa.text("completed_at IS NULL"),
            postgresql_where=sa.text("completed_at IS NULL"),
        )

    op.create_table(
        "sandbox_applied",
        sa.Column("idempotency_key", sa.String(length=120), nullable=False),
        sa.Column("billing_id", sa.String(length=80), nullable=True),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("answer", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("idempotency_key", name=op.f("pk_sandbox_applied")),
    )
    op.create_table(
        "sandbox_billings",
        sa.Column("billing_id", sa.String(length=80), nullable=False),
        sa.Column("cafe_id", sa.String(length=64), nullable=False),
        sa.Column("game_id", sa.String(length=32), nullable=False),
        sa.Column("game_session_id", sa.String(length=40), nullable=False),
        sa.Column("price_per_hour", sa.BigInteger(), nullable=False),
        sa.Column("charged_seconds", sa.BigInteger(), nullable=False),
        sa.Column("charged_amount", sa.BigInteger(), nullable=False),
        sa.Column("exhausted", sa.Boolean(), nullable=False),
        sa.Column("stopped", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("billing_id", name=op.f("pk_sandbox_billings")),
    )
    op.create_table(
        "sandbox_cafes",
        sa.Column("cafe_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("ip", sa.String(length=64), nullable=True),
        sa.Column("balance", sa.BigInteger(), nullable=False),
        sa.Column("suspended", sa.Boolean(), nullable=False),
        sa.CheckConstraint("balance >= 0", name=op.f("ck_sandbox_cafes_balance_not_negative")),
        sa.PrimaryKeyConstraint("cafe_id", name=op.f("pk_sandbox_cafes")),
        sa.UniqueConstraint("ip", name=op.f("uq_sandbox_cafes_ip")),
    )
    op.create_table(
        "api_keys",
        sa.Column("key_id", sa.String(length=40), nullable=False),
        sa.Column("game_id", sa.String(length=32), nullable=False),
        sa.Column("environment", sa.String(length=8), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("revoked_at", sa.BigInteger(), nullable=True),
        sa.CheckConstraint(
            "environment IN ('dev', 'qa', 'live')", name=op.f("ck_api_keys_environment_known")
        ),
        sa.ForeignKeyConstraint(
            ["game_id"], ["games.game_id"], name=op.f("fk_api_keys_game_id_games")
        ),
        sa.PrimaryKeyConstraint("key_id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_api_keys_key_hash")),
    )
    op.create_table(
        "game_sessions",
        sa.Column("game_session_id", sa.String(length=40), nullable=False),
        sa.Column("ott", sa.String(length=36), nullable=False),
        sa.Column("game_id", sa.String(length=32), nullable=False),
        sa.Column("api_key_id", sa.String(length=40), nullable=False),
        sa.Column("environment", sa.String(length=8), nullable=False),
        sa.Column("provider_user_id", sa.String(length=20), nullable=False),
        sa.Column("cafe_id", sa.String(length=64), nullable=False),
        sa.Column("pc_id", sa.String(length=128), nullable=False),
        sa.Column("launcher_session_id", sa.String(length=40), nullable=True),
        sa.Column("rate_per_hour", sa.BigInteger(), nullable=False),
        sa.Column("billing_id", sa.String(length=80), nullable=True),
        sa.Column("state", sa.String(length=8), nullable=False),
        sa.Column("started_at", sa.BigInteger(), nullable=False),
        sa.Column("last_heartbeat_at", sa.BigInteger(), nullable=False),
        sa.Column("exhausted_at", sa.BigInteger(), nullable=True),
        sa.Column("ended_at", sa.BigInteger(), nullable=True),
        sa.Column("end_reason", sa.String(length=24), nullable=True),
        sa.Column("play_duration_sec", sa.BigInteger(), nullable=True),
        sa.Column("billable_sec", sa.BigInteger(), nullable=True),
        sa.Column("client_play_duration_sec", sa.BigInteger(), nullable=True),
        sa.Column("reported_sec", sa.BigInteger(), server_default="0", nullable=False),
        sa.CheckConstraint(
            "(state = 'ENDED') = (ended_at IS NOT NULL AND end_reason IS NOT NULL AND play_duration_sec IS NOT NULL AND billable_sec IS NOT NULL)",
            name=op.f("ck_game_sessions_ended_is_complete"),
        ),
        sa.CheckConstraint(
            "state IN ('ACTIVE', 'GRACE', 'ENDING', 'ENDED')",
            name=op.f("ck_game_sessions_state_known"),
        ),
        sa.CheckConstraint(
            "billable_sec IS NULL OR billable_sec <= play_duration_sec",
            name=op.f("ck_game_sessions_billable_within_play"),
        ),
        sa.ForeignKeyConstraint(
            ["game_id"], ["games.game_id"], name=op.f("fk_game_sessions_game_id_games")
        ),
        sa.PrimaryKeyConstraint("game_session_id", name=op.f("pk_game_sessions")),
        sa.UniqueConstraint("ott", name=op.f("uq_game_sessions_ott")),
    )
    with op.batch_alter_table("game_sessions", schema=None) as batch_op:
        batch_op.create_index("ix_game_sessions_ended", ["ended_at"], unique=False)
        batch_op.create_index("ix_game_sessions_launcher", ["launcher_session_id"], unique=False)
        batch_op.create_index(
            "ix_game_sessions_live_heartbeat",
            ["last_heartbeat_at"],
            unique=False,
            sqlite_where=sa.text("state IN ('ACTIVE', 'GRACE', 'ENDING')"),
            postgresql_where=sa.text("state IN ('ACTIVE', 'GRACE', 'ENDING')"),
        )
        batch_op.create_index(
            "ux_game_sessions_live_pc",
            ["pc_id"],
            unique=True,
            sqlite_where=sa.text("state IN ('ACTIVE', 'GRACE', 'ENDING')"),
            postgresql_where=sa.text("state IN ('ACTIVE', 'GRACE', 'ENDING')"),
        )


def downgrade() -> None:
    with op.batch_alter_table("game_sessions", schema=None) as batch_op:
        batch_op.drop_index(
            "ux_game_sessions_live_pc",
            sqlite_where=sa.text("state IN ('ACTIVE', 'GRACE', 'ENDING')"),
            postgresql_where=sa.text("state IN ('ACTIVE', 'GRACE', 'ENDING')"),
        )
        batch_op.drop_index(
            "ix_game_sessions_live_heartbeat",
            sqlite_where=sa.text("state IN ('ACTIVE', 'GRACE', 'ENDING')"),
            postgresql_where=sa.text("state IN ('ACTIVE', 'GRACE', 'ENDING')"),
        )
        batch_op.drop_index("ix_game_sessions_launcher")
        batch_op.drop_index("ix_game_sessions_ended")

    op.drop_table("game_sessions")
    op.drop_table("api_keys")
    op.drop_table("sandbox_cafes")
    op.drop_table("sandbox_billings")
    op.drop_table("sandbox_applied")
    with op.batch_alter_table("partner_calls", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_partner_calls_due",
            sqlite_where=sa.text("completed_at IS NULL"),
            postgresql_where=sa.text("completed_at IS NULL"),
        )

    op.drop_table("partner_calls")
    with op.batch_alter_table("live_sessions", schema=None) as batch_op:
        batch_op.drop_index("ix_live_sessions_dirty")
        batch_op.drop_index("ix_live_sessions_deadline")

    op.drop_table("live_sessions")
    op.drop_table("live_otts")
    with op.batch_alter_table("live_nonces", schema=None) as batch_op:
        batch_op.drop_index("ix_live_nonces_expires")

    op.drop_table("live_nonces")
    with op.batch_alter_table("live_launchers", schema=None) as batch_op:
        batch_op.drop_index("ix_live_launchers_deadline")

    op.drop_table("live_launchers")
    with op.batch_alter_table("launcher_sessions", schema=None) as batch_op:
        batch_op.drop_index(
            "ux_launcher_sessions_open_pc",
            sqlite_where=sa.text("ended_at IS NULL"),
            postgresql_where=sa.text("ended_at IS NULL"),
        )
        batch_op.drop_index(
            "ix_launcher_sessions_open_seen",
            sqlite_where=sa.text("ended_at IS NULL"),
            postgresql_where=sa.text("ended_at IS NULL"),
        )

    op.drop_table("launcher_sessions")
    op.drop_table("launcher_keys")
    op.drop_table("games")
