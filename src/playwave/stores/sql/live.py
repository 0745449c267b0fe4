"""The live store in SQL tables: the embedded default, and PostgreSQL setups without Redis."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from playwave.clock import Millis
from playwave.domain.lifecycle import EndReason, SessionState, Timers, deadline
from playwave.domain.live import LiveSession, Touch, TouchStatus, touch
from playwave.stores.base import OttGrant
from playwave.stores.sql.engine import translate_errors
from playwave.stores.sql.tables import (
    live_launchers,
    live_nonces,
    live_otts,
    live_sessions,
)

_SESSION_COLUMNS = (
    "game_session_id",
    "game_id",
    "provider_user_id",
    "pc_id",
    "started_at",
    "last_heartbeat_at",
    "grace_started_at",
    "state",
    "deadline",
    "end_reason",
)


def _live_session(row: Row[Any]) -> LiveSession:
    values = row._mapping
    return LiveSession(
        game_session_id=values["game_session_id"],
        game_id=values["game_id"],
        provider_user_id=values["provider_user_id"],
        pc_id=values["pc_id"],
        started_at=values["started_at"],
        last_heartbeat_at=values["last_heartbeat_at"],
        grace_started_at=values["grace_started_at"],
        state=SessionState(values["state"]),
        deadline=values["deadline"],
        end_reason=EndReason(values["end_reason"]) if values["end_reason"] else None,
    )


def _session_values(session: LiveSession) -> dict[str, Any]:
    values = {name: getattr(session, name) for name in _SESSION_COLUMNS}
    values["state"] = session.state.value
    values["end_reason"] = session.end_reason.value if session.end_reason else None
    return values


class SqlLiveStore:
    """`LiveStore` on SQL tables. Expired rows are deleted by `purge`."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    def _upsert(self, table: Any) -> Any:
        if self.engine.dialect.name == "postgresql":
            return pg_insert(table)
        return sqlite_insert(table)

    @translate_errors
    async def ping(self) -> None:
        async with self.engine.connect() as connection:
            await connection.execute(select(1))

    async def close(self) -> None:
        await self.engine.dispose()

    @translate_errors
    async def put_ott(self, grant: OttGrant) -> None:
        async with self.engine.begin() as connection:
            await connection.execute(insert(live_otts).values(**_grant_values(grant)))

    @translate_errors
    async def get_ott(self, ott: str, now: Millis) -> OttGrant | None:
        async with self.engine.begin() as connection:
            row = (
                await connection.execute(
                    select(live_otts).where(live_otts.c.ott == ott, live_otts.c.expires_at > now)
                )
            ).first()
        return OttGrant(**row._mapping) if row else None

    @translate_errors
    async def delete_ott(self, ott: str) -> None:
        async with self.engine.begin() as connection:
            await connection.execute(delete(live_otts).where(live_otts.c.ott == ott))

    @translate_errors
    async def put_session(self, session: LiveSession) -> None:
        values = _session_values(session)
        statement = self._upsert(live_sessions).values(**values, heartbeat_dirty=False)
        # A tombstone is never overwritten: an ended session cannot become live again.
        statement = statement.on_conflict_do_update(
            index_elements=[live_sessions.c.game_session_id],
            set_={name: values[name] for name in _SESSION_COLUMNS if name != "game_session_id"},
            where=live_sessions.c.state != SessionState.ENDED.value,
        )
        async with self.engine.begin() as connection:
            await connection.execute(statement)

    @translate_errors
    async def get_session(self, game_session_id: str) -> LiveSession | None:
        async with self.engine.begin() as connection:
            return await self._get_session(connection, game_session_id)

    async def _get_session(
        self, connection: AsyncConnection, game_session_id: str, *, lock: bool = False
    ) -> LiveSession | None:
        query = select(live_sessions).where(live_sessions.c.game_session_id == game_session_id)
        if lock and connection.dialect.name == "postgresql":
            query = query.with_for_update()
        row = (await connection.execute(query)).first()
        return _live_session(row) if row else None

    @translate_errors
    async def touch(
        self,
        game_session_id: str,
        game_id: str,
        provider_user_id: str,
        now: Millis,
        timers: Timers,
    ) -> Touch:
        async with self.engine.begin() as connection:
            current = await self._get_session(connection, game_session_id, lock=True)
            outcome = touch(current, game_id, provider_user_id, now, timers)
            if outcome.status is TouchStatus.TOUCHED and outcome.session is not None:
                await connection.execute(
                    update(live_sessions)
                    .where(live_sessions.c.game_session_id == game_session_id)
                    .values(
                        last_heartbeat_at=outcome.session.last_heartbeat_at,
                        deadline=outcome.session.deadline,
                        heartbeat_dirty=True,
                    )
                )
        return outcome

    @translate_errors
    async def start_grace(
        self, game_session_id: str, grace_started_at: Millis, timers: Timers
    ) -> None:
        async with self.engine.begin() as connection:
            current = await self._get_session(connection, game_session_id, lock=True)
            if current is None or current.state is not SessionState.ACTIVE:
                return
            await connection.execute(
                update(live_sessions)
                .where(live_sessions.c.game_session_id == game_session_id)
                .values(
                    state=SessionState.GRACE.value,
                    grace_started_at=grace_started_at,
                    deadline=deadline(current.last_heartbeat_at, grace_started_at, timers),
                )
            )

    @translate_errors
    async def mark_ending(self, game_session_id: str, reason: EndReason, retry_at: Millis) -> None:
        async with self.engine.begin() as connection:
            await connection.execute(
                update(live_sessions)
                .where(
                    live_sessions.c.game_session_id == game_session_id,
                    live_sessions.c.state != SessionState.ENDED.value,
                )
                .values(
                    state=SessionState.ENDING.value,
                    end_reason=reason.value,
                    deadline=retry_at,
                    lease_until=0,
                )
            )

    @translate_errors
    async def mark_ended(self, game_session_id: str, reason: EndReason, keep_until: Millis) -> None:
        async with self.engine.begin() as connection:
            await connection.execute(
                update(live_sessions)
                .where(live_sessions.c.game_session_id == game_session_id)
                .values(
                    state=SessionState.ENDED.value,
                    end_reason=reason.value,
                    keep_until=keep_until,
                    heartbeat_dirty=False,
                )
            )

    @translate_errors
    async def due_sessions(self, now: Millis, limit: int, lease_ms: int) -> list[str]:
        async with self.engine.begin() as connection:
            query = (
                select(live_sessions.c.game_session_id)
                .where(
                    live_sessions.c.state != SessionState.ENDED.value,
                    live_sessions.c.deadline <= now,
                    live_sessions.c.lease_until <= now,
                )
                .order_by(live_sessions.c.deadline)
                .limit(limit)
            )
            if connection.dialect.name == "postgresql":
                query = query.with_for_update(skip_locked=True)
            ids = [row.game_session_id for row in await connection.execute(query)]
            if ids:
                await connection.execute(
                    update(live_sessions)
                    .where(live_sessions.c.game_session_id.in_(ids))
                    .values(lease_until=now + lease_ms)
                )
        return ids

    @translate_errors
    async def take_heartbeats(self, limit: int) -> list[tuple[str, Millis]]:
        async with self.engine.begin() as connection:
            query = (
                select(live_sessions.c.game_session_id, live_sessions.c.last_heartbeat_at)
                .where(live_sessions.c.heartbeat_dirty.is_(True))
                .limit(limit)
            )
            if connection.dialect.name == "postgresql":
                query = query.with_for_update(skip_locked=True)
            beats = [(row[0], row[1]) for row in await connection.execute(query)]
            if beats:
                await connection.execute(
                    update(live_sessions)
                    .where(live_sessions.c.game_session_id.in_([beat[0] for beat in beats]))
                    .values(heartbeat_dirty=False)
                )
        return beats

    @translate_errors
    async def remember_nonce(
        self, key_id: str, nonce: str, expires_at: Millis, now: Millis
    ) -> bool:
        async with self.engine.begin() as connection:
            await connection.execute(
                delete(live_nonces).where(
                    live_nonces.c.key_id == key_id,
                    live_nonces.c.nonce == nonce,
                    live_nonces.c.expires_at <= now,
                )
            )
            try:
                async with connection.begin_nested():
                    await connection.execute(
                        insert(live_nonces).values(
                            key_id=key_id, nonce=nonce, expires_at=expires_at
                        )
                    )
            except IntegrityError:
                return False
        return True

    @translate_errors
    async def touch_launcher(self, launcher_session_id: str, at: Millis, deadline: Millis) -> None:
        statement = self._upsert(live_launchers).values(
            launcher_session_id=launcher_session_id,
            last_seen_at=at,
            deadline=deadline,
            lease_until=0,
        )
        statement = statement.on_conflict_do_update(
            index_elements=[live_launchers.c.launcher_session_id],
            set_={"last_seen_at": at, "deadline": deadline, "lease_until": 0},
        )
        async with self.engine.begin() as connection:
            await connection.execute(statement)

    @translate_errors
    async def launcher_last_seen(self, launcher_session_id: str) -> Millis | None:
        async with self.engine.begin() as connection:
            row = (
                await connection.execute(
                    select(live_launchers.c.last_seen_at).where(
                        live_launchers.c.launcher_session_id == launcher_session_id
                    )
                )
            ).first()
        return row[0] if row else None

    @translate_errors
    async def forget_launcher(self, launcher_session_id: str) -> None:
        async with self.engine.begin() as connection:
            await connection.execute(
                delete(live_launchers).where(
                    live_launchers.c.launcher_session_id == launcher_session_id
                )
            )

    @translate_errors
    async def due_launchers(self, now: Millis, limit: int, lease_ms: int) -> list[str]:
        async with self.engine.begin() as connection:
            query = (
                select(live_launchers.c.launcher_session_id)
                .where(live_launchers.c.deadline <= now, live_launchers.c.lease_until <= now)
                .order_by(live_launchers.c.deadline)
                .limit(limit)
            )
            if connection.dialect.name == "postgresql":
                query = query.with_for_update(skip_locked=True)
            ids = [row[0] for row in await connection.execute(query)]
            if ids:
                await connection.execute(
                    update(live_launchers)
                    .where(live_launchers.c.launcher_session_id.in_(ids))
                    .values(lease_until=now + lease_ms)
                )
        return ids

    @translate_errors
    async def purge(self, now: Millis) -> int:
        async with self.engine.begin() as connection:
            removed = 0
            for statement in (
                delete(live_otts).where(live_otts.c.expires_at <= now),
                delete(live_nonces).where(live_nonces.c.expires_at <= now),
                delete(live_sessions).where(
                    live_sessions.c.state == SessionState.ENDED.value,
                    live_sessions.c.keep_until <= now,
                ),
            ):
                removed += (await connection.execute(statement)).rowcount
        return removed


def _grant_values(grant: OttGrant) -> dict[str, Any]:
    return {name: getattr(grant, name) for name in grant.__dataclass_fields__}
