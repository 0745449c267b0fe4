"""Settlement storage on SQL: closed statements, their per-game and per-session lines, operator
adjustments, and the reads that settle a month.

Every row of these tables is append-only. Migration 0003 adds database triggers that reject
UPDATE and DELETE on all four tables, and INSERT of lines or adjustments into a month that is
closed, so a closed month cannot change even through a hand-written query.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Index,
    Integer,
    String,
    Table,
    Text,
    and_,
    exists,
    func,
    insert,
    select,
    text,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from playwave.clock import Millis
from playwave.stores.sql.tables import game_sessions, games, metadata

settlement_statements = Table(
    "settlement_statements",
    metadata,
    Column("month", String(7), primary_key=True),
    Column("timezone", String(64), nullable=False),
    Column("period_start", BigInteger, nullable=False),
    Column("period_end", BigInteger, nullable=False),
    Column("closed_at", BigInteger, nullable=False),
    Column("sessions", BigInteger, nullable=False),
    Column("open_sessions", BigInteger, nullable=False),
    Column("total_billable_sec", BigInteger, nullable=False),
    Column("total_amount", BigInteger, nullable=False),
    Column("summary_json", Text, nullable=False),
    Column("summary_csv", Text, nullable=False),
    Column("checksum", String(64), nullable=False),
)

# One row per game of a closed month: the figures of its summary line.
settlement_statement_games = Table(
    "settlement_statement_games",
    metadata,
    Column("month", String(7), primary_key=True),
    Column("game_id", String(32), primary_key=True),
    Column("game_name", String(200), nullable=False),
    Column("sessions", BigInteger, nullable=False),
    Column("unique_users", BigInteger, nullable=False),
    Column("open_sessions", BigInteger, nullable=False),
    Column("play_sec", BigInteger, nullable=False),
    Column("billable_sec", BigInteger, nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("late_end_sessions", BigInteger, nullable=False),
    Column("late_end_play_sec", BigInteger, nullable=False),
    Column("late_end_billable_sec", BigInteger, nullable=False),
    Column("late_end_amount", BigInteger, nullable=False),
    Column("correction_count", BigInteger, nullable=False),
    Column("correction_sec", BigInteger, nullable=False),
    Column("correction_amount", BigInteger, nullable=False),
    Column("total_billable_sec", BigInteger, nullable=False),
    Column("total_amount", BigInteger, nullable=False),
)

# One row per settled piece of a session: the part of the session played in `service_month`,
# settled in the statement of `month`. The primary key makes settling a piece twice impossible.
settlement_lines = Table(
    "settlement_lines",
    metadata,
    Column("game_session_id", String(40), primary_key=True),
    Column("service_month", String(7), primary_key=True),
    Column("month", String(7), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("game_id", String(32), nullable=False),
    Column("provider_user_id", String(20), nullable=False),
    Column("started_at", BigInteger, nullable=False),
    Column("ended_at", BigInteger, nullable=False),
    Column("rate_per_hour", BigInteger, nullable=False),
    Column("play_sec", BigInteger, nullable=False),
    Column("billable_sec", BigInteger, nullable=False),
    Column("amount", BigInteger, nullable=False),
    CheckConstraint("kind IN ('play', 'late_end')", name="kind_known"),
    CheckConstraint("billable_sec <= play_sec", name="billable_within_play"),
    Index("ix_settlement_lines_month", "month", "kind", "game_id"),
)

settlement_adjustments = Table(
    "settlement_adjustments",
    metadata,
    Column(
        "adjustment_id",
        BigInteger().with_variant(Integer, "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    Column("month", String(7), nullable=False),
    Column("game_id", String(32), nullable=False),
    Column("game_session_id", String(40), nullable=True),
    Column("seconds", BigInteger, nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("reason", Text, nullable=False),
    Column("created_by", String(120), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    CheckConstraint("length(reason) > 0", name="reason_present"),
    CheckConstraint("length(created_by) > 0", name="author_present"),
    Index("ix_settlement_adjustments_month", "month", "game_id"),
)


@dataclass(frozen=True, slots=True)
class SettledSession:
    """The fields of an ended game session that settlement reads."""

    game_session_id: str
    game_id: str
    provider_user_id: str
    started_at: Millis
    ended_at: Millis
    rate_per_hour: int
    play_duration_sec: int
    billable_sec: int


@dataclass(frozen=True, slots=True)
class DetailLine:
    """One settled piece of a session: its play in `service_month`, settled in `month`."""

    month: str
    service_month: str
    kind: str
    game_id: str
    game_session_id: str
    provider_user_id: str
    started_at: Millis
    ended_at: Millis
    rate_per_hour: int
    play_sec: int
    billable_sec: int
    amount: int


@dataclass(frozen=True, slots=True)
class Adjustment:
    """An operator correction of a month's billable seconds and amount for one game."""

    adjustment_id: int | None
    month: str
    game_id: str
    game_session_id: str | None
    seconds: int
    amount: int
    reason: str
    created_by: str
    created_at: Millis


@dataclass(frozen=True, slots=True)
class ClosedStatement:
    """A closed month as stored: its period, closing time and the exact summary exports."""

    month: str
    timezone: str
    period_start: Millis
    period_end: Millis
    closed_at: Millis
    summary_json: str
    summary_csv: str
    checksum: str


class MonthClosed(Exception):
    """The month already has a closed statement, so nothing may be added to it."""

    def __init__(self, month: str) -> None:
        super().__init__(f"month {month} is closed; its statement can no longer change")
        self.month = month


def _closed_statement(row: Any) -> ClosedStatement:
    values = row._mapping
    return ClosedStatement(**{name: values[name] for name in ClosedStatement.__slots__})


# Key of the PostgreSQL advisory lock that serialises closing a month with adding adjustments.
_SETTLEMENT_LOCK_KEY = 0x706C_6179_7374_6C6D

_SESSION_COLUMNS = (
    game_sessions.c.game_session_id,
    game_sessions.c.game_id,
    game_sessions.c.provider_user_id,
    game_sessions.c.started_at,
    game_sessions.c.ended_at,
    game_sessions.c.rate_per_hour,
    game_sessions.c.play_duration_sec,
    game_sessions.c.billable_sec,
)

_ENDED = game_sessions.c.state == "ENDED"


class SettlementReader:
    """Settlement reads inside one transaction, so that every read sees the same snapshot."""

    def __init__(self, connection: AsyncConnection, page_size: int) -> None:
        self.connection = connection
        self.page_size = page_size

    async def closed_statements(self) -> list[ClosedStatement]:
        rows = await self.connection.execute(
            select(settlement_statements).order_by(settlement_statements.c.month)
        )
        return [_closed_statement(row) for row in rows]

    async def closed_statement(self, month: str) -> ClosedStatement | None:
        row = (
            await self.connection.execute(
                select(settlement_statements).where(settlement_statements.c.month == month)
            )
        ).first()
        return _closed_statement(row) if row else None

    async def game_names(self) -> dict[str, str]:
        rows = await self.connection.execute(select(games.c.game_id, games.c.name))
        return {row.game_id: row.name for row in rows}

    def _month_condition(self, start: Millis, end: Millis) -> Any:
        # Every session with a second in [start, end) ended at or after `start` and started
        # before `end`. The caller drops the few that touch the month by less than a second.
        # NOTE: the ended_at index bounds the scan from below only, so settling an old month
        # also reads every session that ended after it.
        return and_(_ENDED, game_sessions.c.ended_at >= start, game_sessions.c.started_at < end)

    def _late_condition(self, start: Millis, end: Millis) -> Any:
        # Ended sessions with play in the closed range [start, end) that no closed statement has
        # settled yet. A close settles all pieces of a session up to its month at once, so one
        # settled piece means the session's closed months are done.
        settled = select(settlement_lines.c.game_session_id).where(
            settlement_lines.c.game_session_id == game_sessions.c.game_session_id
        )
        return and_(self._month_condition(start, end), ~exists(settled))

    async def count_month_sessions(self, start: Millis, end: Millis) -> int:
        query = select(func.count()).select_from(game_sessions)
        return (
            await self.connection.execute(query.where(self._month_condition(start, end)))
        ).scalar_one()

    async def count_late_sessions(self, start: Millis, end: Millis) -> int:
        query = select(func.count()).select_from(game_sessions)
        return (
            await self.connection.execute(query.where(self._late_condition(start, end)))
        ).scalar_one()

    def month_sessions(
        self, start: Millis, end: Millis, *, by_user: bool = True
    ) -> AsyncIterator[SettledSession]:
        """Stream the ended sessions that may have play in [start, end), in pages.

        With `by_user` the stream is ordered by user, which unique-user counting needs;
        otherwise by game and session id, the order of the detail export.
        """
        return self._stream(self._month_condition(start, end), by_user)

    def late_sessions(
        self, start: Millis, end: Millis, *, by_user: bool = True
    ) -> AsyncIterator[SettledSession]:
        """Stream the ended sessions with unsettled play in the closed range [start, end)."""
        return self._stream(self._late_condition(start, end), by_user)

    async def _stream(self, condition: Any, by_user: bool) -> AsyncIterator[SettledSession]:
        if by_user:
            order = (game_sessions.c.provider_user_id, game_sessions.c.game_id)
        else:
            order = (game_sessions.c.game_id,)
        query = (
            select(*_SESSION_COLUMNS)
            .where(condition)
            .order_by(*order, game_sessions.c.game_session_id)
            .execution_options(yield_per=self.page_size)
        )
        result = await self.connection.stream(query)
        async for page in result.partitions():
            for row in page:
                yield SettledSession(*row)

    async def open_sessions(self, end: Millis) -> dict[str, int]:
        """Count, per game, the sessions started before `end` that have not ended yet."""
        query = (
            select(game_sessions.c.game_id, func.count())
            .where(game_sessions.c.state != "ENDED", game_sessions.c.started_at < end)
            .group_by(game_sessions.c.game_id)
        )
        return {row[0]: row[1] for row in await self.connection.execute(query)}

    async def adjustments(self, month: str) -> list[Adjustment]:
        query = (
            select(settlement_adjustments)
            .where(settlement_adjustments.c.month == month)
            .order_by(settlement_adjustments.c.game_id, settlement_adjustments.c.adjustment_id)
        )
        return [Adjustment(**row._mapping) for row in await self.connection.execute(query)]

    async def detail_lines(
        self, month: str, game_id: str | None = None
    ) -> AsyncIterator[DetailLine]:
        """Stream the settled session pieces of a closed month in export order."""
        query = select(*(settlement_lines.c[name] for name in DetailLine.__slots__)).where(
            settlement_lines.c.month == month
        )
        if game_id is not None:
            query = query.where(settlement_lines.c.game_id == game_id)
        query = query.order_by(
            settlement_lines.c.kind.desc(),
            settlement_lines.c.game_id,
            settlement_lines.c.game_session_id,
            settlement_lines.c.service_month,
        ).execution_options(yield_per=self.page_size)
        result = await self.connection.stream(query)
        async for page in result.partitions():
            for row in page:
                yield DetailLine(*row)


def _line_record(line: DetailLine) -> tuple[Any, ...]:
    return tuple(getattr(line, name) for name in DetailLine.__slots__)


class SettlementWriter(SettlementReader):
    """The transaction that closes a month: it stores the lines first and the statement last."""

    async def insert_lines(self, lines: Sequence[DetailLine]) -> None:
        if not lines:
            return
        if self.connection.dialect.name == "postgresql":
            # COPY inside the closing transaction: many times faster than INSERT for the
            # hundreds of thousands of lines of a busy month.
            raw = await self.connection.get_raw_connection()
            await raw.driver_connection.copy_records_to_table(
                "settlement_lines",
                records=[_line_record(line) for line in lines],
                columns=DetailLine.__slots__,
            )
            return
        await self.connection.execute(
            insert(settlement_lines), [dataclasses.asdict(line) for line in lines]
        )

    async def insert_game_lines(self, rows: Sequence[dict[str, Any]]) -> None:
        if rows:
            await self.connection.execute(insert(settlement_statement_games), list(rows))

    async def insert_statement(self, statement: ClosedStatement, totals: dict[str, int]) -> None:
        await self.connection.execute(
            insert(settlement_statements).values(**dataclasses.asdict(statement), **totals)
        )


class SqlSettlementStore:
    """Opens settlement transactions on the records database (SQLite or PostgreSQL).

    PostgreSQL reads run in one REPEATABLE READ transaction, so a month is computed from one
    snapshot while sessions keep ending. SQLite transactions begin with BEGIN IMMEDIATE and so
    see one snapshot already.
    """

    def __init__(self, engine: AsyncEngine, *, page_size: int = 5000) -> None:
        self.engine = engine
        self.page_size = page_size
        self._owns_engine = False

    @classmethod
    def beside(cls, records_engine: AsyncEngine, *, page_size: int = 5000) -> SqlSettlementStore:
        """Create a store on the records database of `records_engine`.

        On PostgreSQL the store gets its own small engine without the records engine's 10 s
        command timeout, because sorting a busy month before the first row can take longer.
        SQLite keeps the records engine, whose single connection serialises the process's writes.
        """
        if records_engine.dialect.name != "postgresql":
            return cls(records_engine, page_size=page_size)
        engine = create_async_engine(
            records_engine.url,
            pool_size=2,
            max_overflow=0,
            pool_pre_ping=True,
            connect_args={"timeout": 5, "command_timeout": None},
        )
        store = cls(engine, page_size=page_size)
        store._owns_engine = True
        return store

    async def close(self) -> None:
        if self._owns_engine:
            await self.engine.dispose()

    @property
    def _postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[SettlementReader]:
        async with self.engine.connect() as connection:
            if self._postgres:
                await connection.execution_options(
                    isolation_level="REPEATABLE READ", postgresql_readonly=True
                )
            async with connection.begin():
                yield SettlementReader(connection, self.page_size)

    @asynccontextmanager
    async def closing(self) -> AsyncIterator[SettlementWriter]:
        """Open the transaction that closes a month, holding the settlement lock throughout.

        On PostgreSQL the lock is taken on a second connection before the snapshot starts, so
        the snapshot includes every adjustment committed before the lock was granted.
        """
        if not self._postgres:
            async with self.engine.begin() as connection:
                yield SettlementWriter(connection, self.page_size)
            return

        async with self.engine.connect() as lock_connection:
            await lock_connection.execution_options(isolation_level="AUTOCOMMIT")
            await lock_connection.execute(
                text("SELECT pg_advisory_lock(:key)"), {"key": _SETTLEMENT_LOCK_KEY}
            )
            try:
                async with self.engine.connect() as connection:
                    await connection.execution_options(isolation_level="REPEATABLE READ")
                    async with connection.begin():
                        yield SettlementWriter(connection, self.page_size)
            finally:
                await lock_connection.execute(
                    text("SELECT pg_advisory_unlock(:key)"), {"key": _SETTLEMENT_LOCK_KEY}
                )

    async def add_adjustment(self, adjustment: Adjustment) -> Adjustment:
        """Insert an adjustment into an open month; raise `MonthClosed` if its month is closed."""
        values = dataclasses.asdict(adjustment)
        del values["adjustment_id"]
        async with self.engine.begin() as connection:
            if self._postgres:
                await connection.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SETTLEMENT_LOCK_KEY}
                )
            closed = (
                await connection.execute(
                    select(settlement_statements.c.month).where(
                        settlement_statements.c.month == adjustment.month
                    )
                )
            ).first()
            if closed is not None:
                raise MonthClosed(adjustment.month)
            adjustment_id = (
                await connection.execute(
                    insert(settlement_adjustments)
                    .values(**values)
                    .returning(settlement_adjustments.c.adjustment_id)
                )
            ).scalar_one()
        return dataclasses.replace(adjustment, adjustment_id=adjustment_id)

    async def get_session(self, game_session_id: str) -> SettledSession | None:
        async with self.engine.connect() as connection:
            row = (
                await connection.execute(
                    select(*_SESSION_COLUMNS).where(
                        game_sessions.c.game_session_id == game_session_id
                    )
                )
            ).first()
        return SettledSession(*row) if row else None

    async def game_rate(self, game_id: str) -> int | None:
        """Return the game's current rate per hour, or None when the game does not exist."""
        async with self.engine.connect() as connection:
            row = (
                await connection.execute(
                    select(games.c.rate_per_hour).where(games.c.game_id == game_id)
                )
            ).first()
        return int(row[0]) if row else None
