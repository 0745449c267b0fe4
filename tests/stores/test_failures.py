"""Failure behaviour on PostgreSQL and Redis: Redis outages, lost live data, racing sweepers.

Each test starts its own `redis-server` on a free loopback port, so it can stop, restart or
flush it without touching the Redis that other tests share.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import redis
from sqlalchemy import func, insert, select, text

from playwave import metrics
from playwave.api.app import create_app
from playwave.clock import ManualClock
from playwave.domain.lifecycle import EndReason, GameSession, SessionState
from playwave.domain.live import LiveSession
from playwave.jobs.sessions import DURABLE_SWEEP_MARGIN_MS, SessionJobs
from playwave.runtime import Runtime, build_runtime
from playwave.settings import Settings
from playwave.stores.base import Game, StoreUnavailable
from playwave.stores.sql.engine import create_engine
from playwave.stores.sql.records import SqlRecordStore
from playwave.stores.sql.tables import game_sessions, partner_calls
from tests.backends import RedisProcess, sqlalchemy_url
from tests.conftest import START
from tests.helpers import GameServer, mint_ott

GAME = Game(
    game_id="game_0000000000c1",
    name="Failure Game",
    rate_per_hour=600,
    active=True,
    created_at=START,
)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisProcess]:
    server = RedisProcess(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


def production_settings(tmp_path: Path, database_url: str, redis_url: str) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        redis_url=redis_url,
        redis_cluster="no",
        secret_key="test-secret",
        _env_file=None,
    )


@pytest.fixture
async def production(
    tmp_path: Path, postgres_database: str, private_redis: RedisProcess, clock: ManualClock
) -> AsyncIterator[Runtime]:
    runtime = await build_runtime(
        production_settings(tmp_path, postgres_database, private_redis.url), clock=clock
    )
    await runtime.records.create_game(GAME)
    yield runtime
    await runtime.close()


@pytest.fixture
async def game_server(production: Runtime) -> AsyncIterator[GameServer]:
    app = create_app(runtime=production, run_jobs=False)
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://playwave.test") as client:
        issued = await production.api_keys.issue(GAME.game_id, "live")
        yield GameServer(client, issued.api_key, GAME.game_id)


def flush_redis(server: RedisProcess) -> None:
    client = redis.Redis(host="127.0.0.1", port=server.port)
    try:
        client.flushdb()
    finally:
        client.close()


def ended_count() -> float:
    return sum(
        sample.value
        for metric in metrics.SESSIONS_ENDED.collect()
        for sample in metric.samples
        if sample.name == "playwave_sessions_ended_total"
    )


async def test_redis_outage_answers_503_and_recovers(
    production: Runtime, game_server: GameServer, private_redis: RedisProcess, clock: ManualClock
):
    session_id = await game_server.start(await mint_ott(production, GAME.game_id))

    private_redis.stop()
    clock.advance(30)
    during = await game_server.heartbeat(session_id)
    ready_during = await game_server.client.get("/readyz")

    assert during.status_code == 503, during.text
    assert during.json()["error"]["code"] == "SERVICE_UNAVAILABLE"
    assert ready_during.status_code == 503
    assert ready_during.json()["checks"]["records"] == "ok"
    assert ready_during.json()["checks"]["live"].startswith("unavailable")

    private_redis.start()
    clock.advance(30)
    after = await game_server.heartbeat(session_id)
    ready_after = await game_server.client.get("/readyz")

    assert after.status_code == 200, after.text
    assert after.json()["data"]["result"] == "OK"
    assert after.json()["data"]["play_duration_sec"] == 60
    assert ready_after.status_code == 200


async def test_redis_outage_verify_answers_503(
    production: Runtime, game_server: GameServer, private_redis: RedisProcess
):
    grant = await mint_ott(production, GAME.game_id)
    private_redis.stop()

    response = await game_server.verify(grant.ott)

    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == "SERVICE_UNAVAILABLE"


async def test_flushdb_sessions_rebuilt_or_swept_once(
    production: Runtime, game_server: GameServer, private_redis: RedisProcess, clock: ManualClock
):
    session_ids = [
        await game_server.start(await mint_ott(production, GAME.game_id, f"pc-{index}"))
        for index in range(10)
    ]
    clock.advance(60)
    for session_id in session_ids:
        assert (await game_server.heartbeat(session_id)).status_code == 200
    jobs = SessionJobs(production.sessions)
    await jobs.flush_heartbeats()
    ends_before = ended_count()

    flush_redis(private_redis)
    clock.advance(60)
    heartbeating, silent = session_ids[:5], session_ids[5:]
    for session_id in heartbeating:
        response = await game_server.heartbeat(session_id)
        assert response.status_code == 200, response.text
        assert response.json()["data"]["result"] == "OK"

    clock.advance(240 + DURABLE_SWEEP_MARGIN_MS / 1000 - 60 + 1)
    for session_id in heartbeating:
        assert (await game_server.heartbeat(session_id)).status_code == 200
    swept = await jobs.sweep_records() + await jobs.sweep_live() + await jobs.sweep_records()

    assert swept == len(silent)
    for session_id in silent:
        record = await production.records.get_session(session_id)
        assert record is not None
        assert record.state is SessionState.ENDED
        assert record.end_reason is EndReason.HEARTBEAT_TIMEOUT
        assert record.ended_at == START + 60_000
        response = await game_server.heartbeat(session_id)
        assert response.status_code == 410
        assert response.json()["error"]["code"] == "SESSION_ENDED"
    for session_id in heartbeating:
        record = await production.records.get_session(session_id)
        assert record is not None
        assert record.state is SessionState.ACTIVE
    assert ended_count() - ends_before == len(silent)

    for session_id in heartbeating:
        assert (await game_server.end(session_id)).status_code == 200
    async with production.records.engine.begin() as connection:
        stops = (
            await connection.execute(
                select(partner_calls.c.game_session_id).where(partner_calls.c.kind == "stop")
            )
        ).all()
    assert sorted(row[0] for row in stops) == sorted(session_ids)


def bulk_records(count: int) -> list[GameSession]:
    return [
        GameSession(
            game_session_id=f"gs_{uuid.uuid4()}",
            ott=str(uuid.uuid4()),
            game_id=GAME.game_id,
            api_key_id="key_0000000000000001",
            environment="live",
            provider_user_id="123456789",
            cafe_id="cafe_demo",
            pc_id=f"pc-bulk-{index}",
            launcher_session_id=None,
            rate_per_hour=GAME.rate_per_hour,
            billing_id=f"bill_bulk_{index}",
            state=SessionState.ACTIVE,
            started_at=START,
            last_heartbeat_at=START,
        )
        for index in range(count)
    ]


@pytest.mark.slow
async def test_two_sweepers_end_each_session_once(
    tmp_path: Path,
    postgres_database: str,
    private_redis: RedisProcess,
    production: Runtime,
    clock: ManualClock,
):
    """Two runtimes sweep the same expired sessions (PLAYWAVE_TEST_SWEEP_SESSIONS, default
    10000) at once, and every session ends exactly once."""
    count = int(os.environ.get("PLAYWAVE_TEST_SWEEP_SESSIONS", "10000"))
    records = bulk_records(count)
    async with production.records.engine.begin() as connection:
        await connection.execute(
            insert(game_sessions),
            [{**_fields(record), "state": record.state.value} for record in records],
        )
    for record in records:
        await production.live.put_session(
            LiveSession.from_record(record, production.sessions.timers)
        )

    second = await build_runtime(
        production_settings(tmp_path / "second", postgres_database, private_redis.url), clock=clock
    )
    try:
        clock.advance(240 + DURABLE_SWEEP_MARGIN_MS / 1000 + 1)
        ends_before = ended_count()

        async def sweep_until_done(runtime: Runtime) -> int:
            jobs = SessionJobs(runtime.sessions)
            total = 0
            while True:
                handled = await jobs.sweep_live() + await jobs.sweep_records()
                total += handled
                if handled == 0:
                    return total

        await asyncio.gather(sweep_until_done(production), sweep_until_done(second))
    finally:
        await second.close()

    async with production.records.engine.begin() as connection:
        ended = (
            await connection.execute(
                select(func.count())
                .select_from(game_sessions)
                .where(game_sessions.c.state == SessionState.ENDED.value)
            )
        ).scalar_one()
        stops = (
            await connection.execute(
                select(func.count(func.distinct(partner_calls.c.game_session_id))).where(
                    partner_calls.c.kind == "stop"
                )
            )
        ).scalar_one()
        stop_rows = (
            await connection.execute(
                select(func.count())
                .select_from(partner_calls)
                .where(partner_calls.c.kind == "stop")
            )
        ).scalar_one()
    assert ended == count
    assert stops == count
    assert stop_rows == count
    assert ended_count() - ends_before == count


def _fields(record: GameSession) -> dict[str, object]:
    return {name: getattr(record, name) for name in record.__dataclass_fields__}


async def test_dropped_database_connections_cost_at_most_one_call(postgres_database: str):
    """Without a ping on checkout, a connection the server dropped fails once, then recovers."""
    store = SqlRecordStore(create_engine(sqlalchemy_url(postgres_database)))
    admin = create_engine(sqlalchemy_url(postgres_database), pool_size=1)
    try:
        await store.create_game(GAME)
        # Fill the pool with several idle connections, then have the server drop them all.
        await asyncio.gather(*(store.get_game(GAME.game_id) for _ in range(5)))
        async with admin.connect() as connection:
            await connection.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            )

        outcomes = []
        for _ in range(3):
            try:
                outcomes.append(await store.get_game(GAME.game_id))
            except StoreUnavailable:
                outcomes.append(None)
    finally:
        await store.close()
        await admin.dispose()

    assert outcomes[0] in (None, GAME)
    assert outcomes[1:] == [GAME, GAME]
