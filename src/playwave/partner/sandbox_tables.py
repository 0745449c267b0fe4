"""Tables of the in-process sandbox partner, kept in the records database."""

from __future__ import annotations

from sqlalchemy import JSON, BigInteger, Boolean, CheckConstraint, Column, String, Table

from playwave.stores.sql.tables import metadata

sandbox_cafes = Table(
    "sandbox_cafes",
    metadata,
    Column("cafe_id", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("ip", String(64), nullable=True, unique=True),
    Column("balance", BigInteger, nullable=False),
    Column("suspended", Boolean, nullable=False),
    CheckConstraint("balance >= 0", name="balance_not_negative"),
)

sandbox_billings = Table(
    "sandbox_billings",
    metadata,
    Column("billing_id", String(80), primary_key=True),
    Column("cafe_id", String(64), nullable=False),
    Column("game_id", String(32), nullable=False),
    Column("game_session_id", String(40), nullable=False),
    Column("price_per_hour", BigInteger, nullable=False),
    Column("charged_seconds", BigInteger, nullable=False),
    Column("charged_amount", BigInteger, nullable=False),
    Column("exhausted", Boolean, nullable=False),
    Column("stopped", Boolean, nullable=False),
)

# One row per applied idempotency key: the partner's answer to it, returned again on a retry.
sandbox_applied = Table(
    "sandbox_applied",
    metadata,
    Column("idempotency_key", String(120), primary_key=True),
    Column("billing_id", String(80), nullable=True),
    Column("amount", BigInteger, nullable=False),
    Column("answer", JSON, nullable=False),
)
