"""Fixtures for settlement tests: sessions written through the records store, and PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

import pytest

from playwave import ids
from playwave.clock import ManualClock, Millis, whole_seconds
from playwave.domain.lifecycle import EndReason, GameSession, SessionEnd, SessionState
from playwave.runtime import Runtime
from playwave.services.settlement import Settlements
from playwave.stores.sql.settlement import SqlSettlementStore

AddSession = Callable[..., Awaitable[GameSession]]


async def start_session(
    runtime: Runtime,
    game_id: str,
    started_at: Millis,
    *,
    user: str = "1001",
    rate_per_hour: int = 600,
) -> GameSession:
    """Create a live session through the records store, as verify does."""
    session = GameSession(
        game_session_id=ids.new_game_session_id(),
        ott=ids.new_ott(),
        game_id=game_id,
        api_key_id="key_settlement",
        environment="live",
        provider_user_id=user,
        cafe_id="cafe-1",
        pc_id=f"pc-{uuid.uuid4()}",
        launcher_session_id=None,
        rate_per_hour=rate_per_hour,
        billing_id=None,
        state=SessionState.ACTIVE,
        started_at=started_at,
        last_heartbeat_at=started_at,
    )
    await runtime.records.create_session(session)
    return session


async def end_session(
    runtime: Runtime, session: GameSession, ended_at: Millis, exhausted_at: Millis | None = None
) -> GameSession:
    """End a live session through the records store with the server's duration rules."""
    billable_until = ended_at if exhausted_at is None else min(ended_at, exhausted_at)
    end = SessionEnd(
        reason=EndReason.NORMAL,
        ended_at=ended_at,
        play_duration_sec=whole_seconds(session.started_at, ended_at),
        billable_sec=whole_seconds(session.started_at, billable_until),
    )
    ended = await runtime.records.end_session(session.game_session_id, end, None, [])
    assert ended is not None
    return ended


@pytest.fixture
def add_session(runtime: Runtime) -> AddSession:
    async def add(
        game_id: str,
        started_at: Millis,
        ended_at: Millis,
        *,
        user: str = "1001",
        rate_per_hour: int = 600,
        exhausted_at: Millis | None = None,
    ) -> GameSession:
        session = await start_session(
            runtime, game_id, started_at, user=user, rate_per_hour=rate_per_hour
        )
        return await end_session(runtime, session, ended_at, exhausted_at)

    return add


@pytest.fixture
def settlements(runtime: Runtime, clock: ManualClock) -> Settlements:
    store = SqlSettlementStore(runtime.records.engine, page_size=3)
    return Settlements(store, clock, "Asia/Seoul")
