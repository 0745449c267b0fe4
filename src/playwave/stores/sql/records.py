"""The durable record store on SQL (SQLite or PostgreSQL)."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

from sqlalchemy import BigInteger, String, and_, bindparam, func, insert, or_, select, text, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from playwave.clock import Millis
from playwave.domain.lifecycle import (
    LIVE_STATES,
    EndReason,
    GameSession,
    SessionEnd,
    SessionState,
    Timers,
)
from playwave.stores.base import (
    ApiKey,
    Game,
    LauncherKey,
    LauncherSession,
    OttConsumed,
    PartnerCall,
    PcBusy,
)
from playwave.stores.sql.engine import translate_errors
from playwave.stores.sql.tables import (
    api_keys,
    game_sessions,
    games,
    launcher_keys,
    launcher_sessions,
    partner_calls,
)

_LIVE = [state.value for state in LIVE_STATES]
_NOT_ENDED = [*_LIVE, SessionState.ENDING.value]


def _session(row: Row[Any]) -> GameSession:
    values = row._mapping
    return GameSession(
        game_session_id=values["game_session_id"],
        ott=values["ott"],
        game_id=values["game_id"],
        api_key_id=values["api_key_id"],
        environment=values["environment"],
        provider_user_id=values["provider_user_id"],
        cafe_id=values["cafe_id"],
        pc_id=values["pc_id"],
        launcher_session_id=values["launcher_session_id"],
        rate_per_hour=values["rate_per_hour"],
        billing_id=values["billing_id"],
        state=SessionState(values["state"]),
        started_at=values["started_at"],
        last_heartbeat_at=values["last_heartbeat_at"],
        exhausted_at=values["exhausted_at"],
        grace_started_at=values["grace_started_at"],
        ended_at=values["ended_at"],
        end_reason=EndReason(values["end_reason"]) if values["end_reason"] else None,
        play_duration_sec=values["play_duration_sec"],
        billable_sec=values["billable_sec"],
        client_play_duration_sec=values["client_play_duration_sec"],
        reported_sec=values["reported_sec"],
    )


def _game(row: Row[Any]) -> Game:
    return Game(**row._mapping)


def _api_key(row: Row[Any]) -> ApiKey:
    return ApiKey(**row._mapping)


def _launcher_session(row: Row[Any]) -> LauncherSession:
    return LauncherSession(**row._mapping)


def _partner_call(row: Row[Any]) -> PartnerCall:
    values = row._mapping
    return PartnerCall(
        call_id=values["call_id"],
        idempotency_key=values["idempotency_key"],
        kind=values["kind"],
        game_session_id=values["game_session_id"],
        payload=values["payload"],
        attempts=values["attempts"],
        next_attempt_at=values["next_attempt_at"],
        last_error=values["last_error"],
        completed_at=values["completed_at"],
        result=values["result"],
    )


def _call_values(call: PartnerCall, now: Millis) -> dict[str, Any]:
    return {
        "idempotency_key": call.idempotency_key,
        "kind": call.kind,
        "game_session_id": call.game_session_id,
        "payload": call.payload,
        "created_at": now,
        "attempts": 0,
        "next_attempt_at": call.next_attempt_at or now,
    }


class SqlRecordStore:
    """`RecordStore` on SQLAlchemy Core; every method is one transaction."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._autocommit = (
            engine.execution_options(isolation_level="AUTOCOMMIT")
            if engine.dialect.name == "postgresql"
            else None
        )

    def _statement(self) -> AbstractAsyncContextManager[AsyncConnection]:
        """Return a connection for a method that runs a single statement.

        One statement is atomic by itself, so on PostgreSQL it runs in autocommit and saves the
        BEGIN and COMMIT round trips. SQLite keeps its BEGIN IMMEDIATE transaction, which
        orders writers across processes.
        """
        if self._autocommit is not None:
            return self._autocommit.connect()
        return self.engine.begin()

    @translate_errors
    async def ping(self) -> None:
        async with self.engine.connect() as connection:
            await connection.execute(select(1))

    async def close(self) -> None:
        await self.engine.dispose()

    # Games and keys.

    @translate_errors
    async def create_game(self, game: Game) -> None:
        async with self._statement() as connection:
            await connection.execute(insert(games).values(**_fields(game)))

    @translate_errors
    async def get_game(self, game_id: str) -> Game | None:
        async with self._statement() as connection:
            row = (
                await connection.execute(select(games).where(games.c.game_id == game_id))
            ).first()
        return _game(row) if row else None

    @translate_errors
    async def list_games(self, *, active_only: bool = False) -> list[Game]:
        query = select(games).order_by(games.c.created_at, games.c.game_id)
        if active_only:
            query = query.where(games.c.active.is_(True))
        async with self._statement() as connection:
            return [_game(row) for row in await connection.execute(query)]

    @translate_errors
    async def set_game_active(self, game_id: str, active: bool) -> bool:
        async with self._statement() as connection:
            result = await connection.execute(
                update(games).where(games.c.game_id == game_id).values(active=active)
            )
        return result.rowcount == 1

    @translate_errors
    async def create_api_key(self, key: ApiKey) -> None:
        async with self._statement() as connection:
            await connection.execute(insert(api_keys).values(**_fields(key)))

    @translate_errors
    async def find_api_key(self, key_hash: str) -> ApiKey | None:
        # The lookup is by a keyed hash of the presented key, so the database compares digests,
        # never secrets, and timing reveals nothing about any stored key.
        async with self._statement() as connection:
            row = (
                await connection.execute(select(api_keys).where(api_keys.c.key_hash == key_hash))
            ).first()
        return _api_key(row) if row else None

    @translate_errors
    async def list_api_keys(self, game_id: str | None = None) -> list[ApiKey]:
        query = select(api_keys).order_by(api_keys.c.created_at, api_keys.c.key_id)
        if game_id is not None:
            query = query.where(api_keys.c.game_id == game_id)
        async with self._statement() as connection:
            return [_api_key(row) for row in await connection.execute(query)]

    @translate_errors
    async def revoke_api_key(self, key_id: str, at: Millis) -> bool:
        async with self._statement() as connection:
            result = await connection.execute(
                update(api_keys)
                .where(api_keys.c.key_id == key_id, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=at)
            )
        return result.rowcount == 1

    @translate_errors
    async def create_launcher_key(self, key: LauncherKey) -> None:
        async with self._statement() as connection:
            await connection.execute(insert(launcher_keys).values(**_fields(key)))

    @translate_errors
    async def get_launcher_key(self, key_id: str) -> LauncherKey | None:
        async with self._statement() as connection:
            row = (
                await connection.execute(
                    select(launcher_keys).where(launcher_keys.c.key_id == key_id)
                )
            ).first()
        return LauncherKey(**row._mapping) if row else None

    @translate_errors
    async def list_launcher_keys(self) -> list[LauncherKey]:
        async with self._statement() as connection:
            rows = await connection.execute(
                select(launcher_keys).order_by(launcher_keys.c.created_at)
            )
            return [LauncherKey(**row._mapping) for row in rows]

    @translate_errors
    async def revoke_launcher_key(self, key_id: str, at: Millis) -> bool:
        async with self._statement() as connection:
            result = await connection.execute(
                update(launcher_keys)
                .where(launcher_keys.c.key_id == key_id, launcher_keys.c.revoked_at.is_(None))
                .values(revoked_at=at)
            )
        return result.rowcount == 1

    # Launcher sessions.

    @translate_errors
    async def start_launcher_session(self, session: LauncherSession) -> LauncherSession | None:
        try:
            async with self.engine.begin() as connection:
                previous_row = (
                    await connection.execute(
                        update(launcher_sessions)
                        .where(
                            launcher_sessions.c.pc_id == session.pc_id,
                            launcher_sessions.c.ended_at.is_(None),
                        )
                        .values(ended_at=session.started_at, end_reason="REPLACED")
                        .returning(*launcher_sessions.c)
                    )
                ).first()
                await connection.execute(insert(launcher_sessions).values(**_fields(session)))
        except IntegrityError as error:
            # A concurrent start for the same PC committed its open session first.
            raise PcBusy(session.pc_id) from error
        return _launcher_session(previous_row) if previous_row else None

    @translate_errors
    async def get_launcher_session(self, launcher_session_id: str) -> LauncherSession | None:
        async with self._statement() as connection:
            row = (
                await connection.execute(
                    select(launcher_sessions).where(
                        launcher_sessions.c.launcher_session_id == launcher_session_id
                    )
                )
            ).first()
        return _launcher_session(row) if row else None

    @translate_errors
    async def find_launcher_session_by_token(self, token_hash: str) -> LauncherSession | None:
        # Like API keys, a token is found by its keyed hash, so no token is compared directly.
        async with self._statement() as connection:
            row = (
                await connection.execute(
                    select(launcher_sessions).where(launcher_sessions.c.token_hash == token_hash)
                )
            ).first()
        return _launcher_session(row) if row else None

    @translate_errors
    async def open_launcher_session_on_pc(self, pc_id: str) -> LauncherSession | None:
        async with self._statement() as connection:
            row = (
                await connection.execute(
                    select(launcher_sessions).where(
                        launcher_sessions.c.pc_id == pc_id,
                        launcher_sessions.c.ended_at.is_(None),
                    )
                )
            ).first()
        return _launcher_session(row) if row else None

    @translate_errors
    async def touch_launcher_session(self, launcher_session_id: str, at: Millis) -> bool:
        async with self._statement() as connection:
            result = await connection.execute(
                update(launcher_sessions)
                .where(
                    launcher_sessions.c.launcher_session_id == launcher_session_id,
                    launcher_sessions.c.ended_at.is_(None),
                    launcher_sessions.c.last_heartbeat_at < at,
                )
                .values(last_heartbeat_at=at)
            )
        return result.rowcount == 1

    @translate_errors
    async def end_launcher_session(
        self, launcher_session_id: str, reason: str, at: Millis
    ) -> LauncherSession | None:
        async with self._statement() as connection:
            row = (
                await connection.execute(
                    update(launcher_sessions)
                    .where(
                        launcher_sessions.c.launcher_session_id == launcher_session_id,
                        launcher_sessions.c.ended_at.is_(None),
                    )
                    .values(ended_at=at, end_reason=reason)
                    .returning(*launcher_sessions.c)
                )
            ).first()
        return _launcher_session(row) if row else None

    @translate_errors
    async def stale_launcher_sessions(
        self, seen_before: Millis, limit: int
    ) -> list[LauncherSession]:
        query = (
            select(launcher_sessions)
            .where(
                launcher_sessions.c.ended_at.is_(None),
                launcher_sessions.c.last_heartbeat_at < seen_before,
            )
            .order_by(launcher_sessions.c.last_heartbeat_at)
            .limit(limit)
        )
        async with self._statement() as connection:
            return [_launcher_session(row) for row in await connection.execute(query)]

    # Game sessions.

    @translate_errors
    async def create_session(self, session: GameSession) -> None:
        try:
            async with self._statement() as connection:
                await connection.execute(insert(game_sessions).values(**_fields(session)))
        except IntegrityError as error:
            existing = await self.get_session_by_ott(session.ott)
            if existing is not None:
                raise OttConsumed(existing) from error
            # Re-reading the PC's live session is not enough: a racing verify may already have
            # replaced it, so the unique index that rejected the insert is what counts.
            message = str(error.orig)
            if "ux_game_sessions_live_pc" in message or "game_sessions.pc_id" in message:
                raise PcBusy(session.pc_id) from error
            if await self.live_session_on_pc(session.pc_id) is not None:
                raise PcBusy(session.pc_id) from error
            raise

    @translate_errors
    async def get_session(self, game_session_id: str) -> GameSession | None:
        return await self._one(game_sessions.c.game_session_id == game_session_id)

    @translate_errors
    async def get_session_by_ott(self, ott: str) -> GameSession | None:
        return await self._one(game_sessions.c.ott == ott)

    @translate_errors
    async def live_session_on_pc(self, pc_id: str) -> GameSession | None:
        return await self._one(
            and_(game_sessions.c.pc_id == pc_id, game_sessions.c.state.in_(_NOT_ENDED))
        )

    async def _one(self, condition: Any) -> GameSession | None:
        async with self._statement() as connection:
            row = (await connection.execute(select(game_sessions).where(condition))).first()
        return _session(row) if row else None

    @translate_errors
    async def live_sessions_of_launcher(self, launcher_session_id: str) -> list[GameSession]:
        query = select(game_sessions).where(
            game_sessions.c.launcher_session_id == launcher_session_id,
            game_sessions.c.state.in_(_NOT_ENDED),
        )
        async with self._statement() as connection:
            return [_session(row) for row in await connection.execute(query)]

    @translate_errors
    async def end_session(
        self,
        game_session_id: str,
        end: SessionEnd,
        client_play_duration_sec: int | None,
        calls: Sequence[PartnerCall],
    ) -> GameSession | None:
        async with self.engine.begin() as connection:
            row = (
                await connection.execute(
                    update(game_sessions)
                    .where(
                        game_sessions.c.game_session_id == game_session_id,
                        game_sessions.c.state.in_(_NOT_ENDED),
                    )
                    .values(
                        state=SessionState.ENDED.value,
                        ended_at=end.ended_at,
                        end_reason=end.reason.value,
                        play_duration_sec=end.play_duration_sec,
                        billable_sec=end.billable_sec,
                        client_play_duration_sec=client_play_duration_sec,
                    )
                    .returning(*game_sessions.c)
                )
            ).first()
            if row is None:
                return None
            if calls:
                await connection.execute(
                    insert(partner_calls), [_call_values(call, end.ended_at) for call in calls]
                )
        return _session(row)

    @translate_errors
    async def mark_exhausted(
        self, game_session_id: str, exhausted_at: Millis, grace_started_at: Millis
    ) -> bool:
        async with self._statement() as connection:
            result = await connection.execute(
                update(game_sessions)
                .where(
                    game_sessions.c.game_session_id == game_session_id,
                    game_sessions.c.state == SessionState.ACTIVE.value,
                )
                .values(
                    state=SessionState.GRACE.value,
                    exhausted_at=exhausted_at,
                    grace_started_at=grace_started_at,
                )
            )
        return result.rowcount == 1

    @translate_errors
    async def record_heartbeats(self, beats: Sequence[tuple[str, Millis]]) -> int:
        if not beats:
            return 0

        # One row per session with its latest beat, sorted by id. executemany updates the rows in
        # that order, so two concurrent flushes take their row locks in the same order.
        latest: dict[str, Millis] = {}
        for game_session_id, at in beats:
            latest[game_session_id] = max(at, latest.get(game_session_id, at))
        if self.engine.dialect.name == "postgresql":
            return await self._record_heartbeats_postgresql(sorted(latest.items()))

        parameters = [
            {"beat_session_id": game_session_id, "beat_at": at}
            for game_session_id, at in sorted(latest.items())
        ]

        statement = (
            update(game_sessions)
            .where(
                game_sessions.c.game_session_id == bindparam("beat_session_id"),
                # Plain comparisons, because an expanding IN cannot run as executemany.
                or_(*(game_sessions.c.state == state for state in _LIVE)),
                game_sessions.c.last_heartbeat_at < bindparam("beat_at"),
            )
            .values(last_heartbeat_at=bindparam("beat_at"))
        )
        async with self.engine.begin() as connection:
            result = await connection.execute(statement, parameters)
        return max(result.rowcount, 0)

    async def _record_heartbeats_postgresql(self, beats: list[tuple[str, Millis]]) -> int:
        """Apply `beats` in one UPDATE joined to the unnested arrays of ids and times.

        asyncpg reports no row count for executemany, and one statement takes one round trip.
        NOTE: PostgreSQL may join in any order, so two flushes sharing ids could still deadlock.
        The server then aborts one flush, and the live copies keep its heartbeats.
        """
        statement = text(
            "UPDATE game_sessions AS session SET last_heartbeat_at = beat.at "
            "FROM (SELECT * FROM unnest(CAST(:ids AS text[]), CAST(:ats AS bigint[])) "
            "AS beat_rows(id, at) ORDER BY id) AS beat "
            "WHERE session.game_session_id = beat.id "
            "AND session.state IN ('ACTIVE', 'GRACE') "
            "AND session.last_heartbeat_at < beat.at"
        ).bindparams(
            bindparam("ids", type_=ARRAY(String)), bindparam("ats", type_=ARRAY(BigInteger))
        )
        async with self._statement() as connection:
            result = await connection.execute(
                statement,
                {"ids": [beat[0] for beat in beats], "ats": [beat[1] for beat in beats]},
            )
        return result.rowcount

    @translate_errors
    async def overdue_sessions(self, now: Millis, timers: Timers, limit: int) -> list[GameSession]:
        timed_out = game_sessions.c.last_heartbeat_at <= now - timers.session_ttl_ms
        grace_over = and_(
            game_sessions.c.grace_started_at.is_not(None),
            game_sessions.c.grace_started_at <= now - timers.charge_grace_ms,
        )
        query = (
            select(game_sessions)
            .where(game_sessions.c.state.in_(_NOT_ENDED), or_(timed_out, grace_over))
            .order_by(game_sessions.c.last_heartbeat_at)
            .limit(limit)
        )
        async with self._statement() as connection:
            return [_session(row) for row in await connection.execute(query)]

    @translate_errors
    async def live_sessions(self, after_id: str | None, limit: int) -> list[GameSession]:
        return await self._session_page(
            game_sessions.c.state.in_(_NOT_ENDED), after_id=after_id, limit=limit
        )

    async def _session_page(
        self, *conditions: Any, after_id: str | None, limit: int
    ) -> list[GameSession]:
        """Return up to `limit` sessions matching `conditions`, in id order after `after_id`."""
        query = select(game_sessions).where(*conditions)
        if after_id is not None:
            query = query.where(game_sessions.c.game_session_id > after_id)
        query = query.order_by(game_sessions.c.game_session_id).limit(limit)
        async with self._statement() as connection:
            return [_session(row) for row in await connection.execute(query)]

    @translate_errors
    async def count_live_sessions(self) -> int:
        query = (
            select(func.count())
            .select_from(game_sessions)
            .where(game_sessions.c.state.in_(_NOT_ENDED))
        )
        async with self._statement() as connection:
            return int((await connection.execute(query)).scalar_one())

    # Partner call queue.

    @translate_errors
    async def enqueue_partner_calls(self, calls: Sequence[PartnerCall]) -> None:
        if not calls:
            return
        async with self.engine.begin() as connection:
            for call in calls:
                try:
                    async with connection.begin_nested():
                        await connection.execute(
                            insert(partner_calls).values(**_call_values(call, call.next_attempt_at))
                        )
                except IntegrityError:
                    # The same idempotency key is already queued: the call exists exactly once.
                    continue

    @translate_errors
    async def claim_partner_calls(
        self, now: Millis, lease_ms: int, limit: int
    ) -> list[PartnerCall]:
        async with self.engine.begin() as connection:
            due = (
                select(partner_calls.c.call_id)
                .where(
                    partner_calls.c.completed_at.is_(None),
                    partner_calls.c.next_attempt_at <= now,
                    or_(partner_calls.c.lease_until.is_(None), partner_calls.c.lease_until <= now),
                )
                .order_by(partner_calls.c.next_attempt_at)
                .limit(limit)
            )
            if connection.dialect.name == "postgresql":
                due = due.with_for_update(skip_locked=True)
            ids = [row.call_id for row in await connection.execute(due)]
            if not ids:
                return []
            rows = await connection.execute(
                update(partner_calls)
                .where(partner_calls.c.call_id.in_(ids))
                .values(lease_until=now + lease_ms, attempts=partner_calls.c.attempts + 1)
                .returning(*partner_calls.c)
            )
            return sorted((_partner_call(row) for row in rows), key=lambda call: call.call_id or 0)

    @translate_errors
    async def complete_partner_call(self, call_id: int, at: Millis, result: dict[str, Any]) -> bool:
        async with self._statement() as connection:
            outcome = await connection.execute(
                update(partner_calls)
                .where(partner_calls.c.call_id == call_id, partner_calls.c.completed_at.is_(None))
                .values(completed_at=at, result=result, lease_until=None, last_error=None)
            )
        return outcome.rowcount == 1

    @translate_errors
    async def retry_partner_call(self, call_id: int, next_attempt_at: Millis, error: str) -> None:
        async with self._statement() as connection:
            await connection.execute(
                update(partner_calls)
                .where(partner_calls.c.call_id == call_id, partner_calls.c.completed_at.is_(None))
                .values(next_attempt_at=next_attempt_at, lease_until=None, last_error=error[:2000])
            )

    @translate_errors
    async def count_pending_partner_calls(self) -> int:
        query = (
            select(func.count())
            .select_from(partner_calls)
            .where(partner_calls.c.completed_at.is_(None))
        )
        async with self._statement() as connection:
            return int((await connection.execute(query)).scalar_one())

    @translate_errors
    async def oldest_due_partner_call(self, now: Millis) -> Millis | None:
        query = select(func.min(partner_calls.c.next_attempt_at)).where(
            partner_calls.c.completed_at.is_(None),
            partner_calls.c.next_attempt_at <= now,
        )
        async with self._statement() as connection:
            oldest = (await connection.execute(query)).scalar_one()
        return None if oldest is None else int(oldest)

    @translate_errors
    async def list_sessions(self, after_id: str | None, limit: int) -> list[GameSession]:
        return await self._session_page(after_id=after_id, limit=limit)

    @translate_errors
    async def partner_calls_of(self, game_session_ids: Sequence[str]) -> list[PartnerCall]:
        if not game_session_ids:
            return []
        query = (
            select(partner_calls)
            .where(partner_calls.c.game_session_id.in_(list(game_session_ids)))
            .order_by(partner_calls.c.call_id)
        )
        async with self._statement() as connection:
            return [_partner_call(row) for row in await connection.execute(query)]

    # Usage reports.

    @translate_errors
    async def due_usage_reports(
        self, now: Millis, interval_ms: int, limit: int
    ) -> list[GameSession]:
        never_reported = and_(
            game_sessions.c.next_report_at.is_(None),
            game_sessions.c.started_at <= now - interval_ms,
        )
        due_at = func.coalesce(
            game_sessions.c.next_report_at, game_sessions.c.started_at + interval_ms
        )
        query = (
            select(game_sessions)
            .where(
                game_sessions.c.state == SessionState.ACTIVE.value,
                or_(game_sessions.c.next_report_at <= now, never_reported),
            )
            .order_by(due_at, game_sessions.c.game_session_id)
            .limit(limit)
        )
        async with self._statement() as connection:
            return [_session(row) for row in await connection.execute(query)]

    @translate_errors
    async def queue_usage_report(
        self,
        game_session_id: str,
        *,
        reported_sec: int,
        total_sec: int,
        next_report_at: Millis,
        call: PartnerCall | None,
        at: Millis,
    ) -> bool:
        async with self.engine.begin() as connection:
            result = await connection.execute(
                update(game_sessions)
                .where(
                    game_sessions.c.game_session_id == game_session_id,
                    game_sessions.c.state == SessionState.ACTIVE.value,
                    game_sessions.c.reported_sec == reported_sec,
                )
                .values(reported_sec=total_sec, next_report_at=next_report_at)
            )
            if result.rowcount != 1:
                return False
            if call is not None:
                await connection.execute(insert(partner_calls).values(**_call_values(call, at)))
        return True

    @translate_errors
    async def advance_usage_report(self, game_session_id: str, at: Millis) -> bool:
        async with self._statement() as connection:
            result = await connection.execute(
                update(game_sessions)
                .where(
                    game_sessions.c.game_session_id == game_session_id,
                    game_sessions.c.state == SessionState.ACTIVE.value,
                    or_(
                        game_sessions.c.next_report_at.is_(None),
                        game_sessions.c.next_report_at > at,
                    ),
                )
                .values(next_report_at=at)
            )
        return result.rowcount == 1


def _fields(record: Any) -> dict[str, Any]:
    """Return a dataclass record as column values, enums as their string values."""
    values = {}
    for name in record.__dataclass_fields__:
        value = getattr(record, name)
        values[name] = value.value if hasattr(value, "value") else value
    return values
