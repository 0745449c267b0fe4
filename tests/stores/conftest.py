"""Store fixtures: every `LiveStore` and `RecordStore` backend behind one parametrized name."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from playwave.clock import ManualClock
from playwave.stores.base import Game, LiveStore, RecordStore
from playwave.stores.redis.live import RedisLiveStore
from playwave.stores.sql.engine import create_engine, upgrade_schema
from playwave.stores.sql.live import SqlLiveStore
from playwave.stores.sql.records import SqlRecordStore
from tests.backends import redis_url, sqlalchemy_url
from tests.conftest import START

GAME = Game(
    game_id="game_0000000000b1",
    name="Contract Game",
    rate_per_hour=600,
    active=True,
    created_at=START,
)


async def _sqlite_engine(tmp_path: Path) -> AsyncEngine:
    url = f"sqlite+aiosqlite:///{tmp_path / 'stores.sqlite3'}"
    await asyncio.to_thread(upgrade_schema, url)
    return create_engine(url)


@pytest.fixture(params=["sqlite", "postgres", "redis", "redis-cluster"])
async def live_store(
    request: pytest.FixtureRequest, tmp_path: Path, clock: ManualClock
) -> AsyncIterator[LiveStore]:
    store: LiveStore
    if request.param == "sqlite":
        store = SqlLiveStore(await _sqlite_engine(tmp_path))
    elif request.param == "postgres":
        url = request.getfixturevalue("postgres_database")
        store = SqlLiveStore(create_engine(sqlalchemy_url(url)))
    elif request.param == "redis":
        prefix = request.getfixturevalue("redis_namespace")
        store = await RedisLiveStore.connect(redis_url(), "no", prefix=prefix, clock=clock)
    else:
        cluster = request.getfixturevalue("redis_cluster")
        prefix = request.getfixturevalue("cluster_namespace")
        store = await RedisLiveStore.connect(cluster.url, "yes", prefix=prefix, clock=clock)
    yield store
    await store.close()


@pytest.fixture(params=["sqlite", "postgres"])
async def record_store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[RecordStore]:
    if request.param == "sqlite":
        engine = await _sqlite_engine(tmp_path)
    else:
        engine = create_engine(sqlalchemy_url(request.getfixturevalue("postgres_database")))
    store = SqlRecordStore(engine)
    await store.create_game(GAME)
    yield store
    await store.close()
