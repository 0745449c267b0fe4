"""Table definitions shared by the SQL stores and the Alembic migrations.

Times are epoch milliseconds in BIGINT columns, so both dialects compare and subtract them
exactly. The constraints here make a double end or a double charge impossible in the database
itself: one session per OTT, one live session per PC, one queued call per idempotency key.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    text,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

LIVE_STATE_SQL = "state IN ('ACTIVE', 'GRACE', 'ENDING')"

games = Table(
    "games",
    metadata,
    Column("game_id", String(32), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("rate_per_hour", BigInteger, nullable=False),
    Column("roblox_place_id", BigInteger, nullable=True),
    Column("active", Boolean, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    CheckConstraint("rate_per_hour >= 0", name="rate_not_negative"),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("key_id", String(40), primary_key=True),
    Column("game_id", String(32), ForeignKey("games.game_id"), nullable=False),
    Column("environment", String(8), nullable=False),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("created_at", BigInteger, nullable=False),
    Column("revoked_at", BigInteger, nullable=True),
    CheckConstraint("environment IN ('dev', 'qa', 'live')", name="environment_known"),
)

launcher_keys = Table(
    "launcher_keys",
    metadata,
    Column("key_id", String(40), primary_key=True),
    Column("created_at", BigInteger, nullable=False),
    Column("revoked_at", BigInteger, nullable=True),
)

launcher_sessions = Table(
    "launcher_sessions",
    metadata,
    Column("launcher_session_id", String(40), primary_key=True),
    Column("pc_id", String(128), nullable=False),
    Column("cafe_id", String(64), nullable=False),
    Column("cafe_name", String(200), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("external_ip", String(64), nullable=False),
    Column("internal_ip", String(64), nullable=False),
    Column("launcher_version", String(64), nullable=False),
    Column("hardware", JSON, nullable=False),
    Column("started_at", BigInteger, nullable=False),
    Column("last_heartbeat_at", BigInteger, nullable=False),
    Column("ended_at", BigInteger, nullable=True),
    Column("end_reason", String(32), nullable=True),
    Index(
        "ux_launcher_sessions_open_pc",
        "pc_id",
        unique=True,
        sqlite_where=text("ended_at IS NULL"),
        postgresql_where=text("ended_at IS NULL"),
    ),
    Index(
        "ix_launcher_sessions_open_seen",
        "last_heartbeat_at",
        sqlite_where=text("ended_at IS NULL"),
        postgresql_where=text("ended_at IS NULL"),
    ),
)

game_sessions = Table(
    "game_sessions",
    metadata,
    Column("game_session_id", String(40), primary_key=True),
    Column("ott", String(36), nullable=False, unique=True),
    Column("game_id", String(32), ForeignKey("games.game_id"), nullable=False),
    Column("api_key_id", String(40), nullable=False),
    Column("environment", String(8), nullable=False),
    Column("provider_user_id", String(20), nullable=False),
    Column("cafe_id", String(64), nullable=False),
    Column("pc_id", String(128), nullable=False),
    Column("launcher_session_id", String(40), nullable=True),
    Column("rate_per_hour", BigInteger, nullable=False),
    Column("billing_id", String(80), nullable=True),
    Column("state", String(8), nullable=False),
    Column("started_at", BigInteger, nullable=False),
    Column("last_heartbeat_at", BigInteger, nullable=False),
    # Billable time stops at exhausted_at, and the grace runs from when the server learned of it.
    Column("exhausted_at", BigInteger, nullable=True),
    Column("grace_started_at", BigInteger, nullable=True),
    Column("ended_at", BigInteger, nullable=True),
    Column("end_reason", String(24), nullable=True),
    Column("play_duration_sec", BigInteger, nullable=True),
    Column("billable_sec", BigInteger, nullable=True),
    Column("client_play_duration_sec", BigInteger, nullable=True),
    Column("reported_sec", BigInteger, nullable=False, server_default="0"),
    # When the next usage report of an ACTIVE session is due; NULL means started_at plus the
    # report interval.
    Column("next_report_at", BigInteger, nullable=True),
    CheckConstraint("state IN ('ACTIVE', 'GRACE', 'ENDING', 'ENDED')", name="state_known"),
    CheckConstraint(
        "(state = 'ENDED') = (ended_at IS NOT NULL AND end_reason IS NOT NULL "
        "AND play_duration_sec IS NOT NULL AND billable_sec IS NOT NULL)",
        name="ended_is_complete",
    ),
    CheckConstraint(
        "billable_sec IS NULL OR billable_sec <= play_duration_sec", name="billable_within_play"
    ),
    Index(
        "ux_game_sessions_live_pc",
        "pc_id",
        unique=True,
        sqlite_where=text(LIVE_STATE_SQL),
        postgresql_where=text(LIVE_STATE_SQL),
    ),
    Index(
        "ix_game_sessions_live_heartbeat",
        "last_heartbeat_at",
        sqlite_where=text(LIVE_STATE_SQL),
        postgresql_where=text(LIVE_STATE_SQL),
    ),
    Index("ix_game_sessions_launcher", "launcher_session_id"),
    Index(
        "ix_game_sessions_report_due",
        "next_report_at",
        sqlite_where=text("state = 'ACTIVE'"),
        postgresql_where=text("state = 'ACTIVE'"),
    ),
    Index("ix_game_sessions_ended", "ended_at"),
)

partner_calls = Table(
    "partner_calls",
    metadata,
    Column(
        "call_id",
        BigInteger().with_variant(Integer, "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    Column("idempotency_key", String(120), nullable=False, unique=True),
    Column("kind", String(16), nullable=False),
    Column("game_session_id", String(40), nullable=True),
    Column("payload", JSON, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", BigInteger, nullable=False),
    Column("lease_until", BigInteger, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("completed_at", BigInteger, nullable=True),
    Column("result", JSON, nullable=True),
    Index(
        "ix_partner_calls_due",
        "next_attempt_at",
        sqlite_where=text("completed_at IS NULL"),
        postgresql_where=text("completed_at IS NULL"),
    ),
)

# Live state for deployments without Redis: the embedded default and small PostgreSQL setups.
live_otts = Table(
    "live_otts",
    metadata,
    Column("ott", String(36), primary_key=True),
    Column("game_id", String(32), nullable=False),
    Column("pc_id", String(128), nullable=False),
    Column("cafe_id", String(64), nullable=False),
    Column("launcher_session_id", String(40), nullable=True),
    Column("issued_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=False),
)

live_sessions = Table(
    "live_sessions",
    metadata,
    Column("game_session_id", String(40), primary_key=True),
    Column("game_id", String(32), nullable=False),
    Column("provider_user_id", String(20), nullable=False),
    Column("pc_id", String(128), nullable=False),
    Column("started_at", BigInteger, nullable=False),
    Column("last_heartbeat_at", BigInteger, nullable=False),
    Column("grace_started_at", BigInteger, nullable=True),
    Column("state", String(8), nullable=False),
    Column("end_reason", String(24), nullable=True),
    Column("deadline", BigInteger, nullable=False),
    Column("lease_until", BigInteger, nullable=False, server_default="0"),
    Column("keep_until", BigInteger, nullable=True),
    Column("heartbeat_dirty", Boolean, nullable=False, server_default=text("false")),
    Index("ix_live_sessions_deadline", "deadline"),
    Index("ix_live_sessions_dirty", "heartbeat_dirty"),
)

live_nonces = Table(
    "live_nonces",
    metadata,
    Column("key_id", String(40), primary_key=True),
    Column("nonce", String(128), primary_key=True),
    Column("expires_at", BigInteger, nullable=False),
    Index("ix_live_nonces_expires", "expires_at"),
)

live_launchers = Table(
    "live_launchers",
    metadata,
    Column("launcher_session_id", String(40), primary_key=True),
    Column("last_seen_at", BigInteger, nullable=False),
    Column("deadline", BigInteger, nullable=False),
    Column("lease_until", BigInteger, nullable=False, server_default="0"),
    Index("ix_live_launchers_deadline", "deadline"),
)
