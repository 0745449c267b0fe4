"""Shared fixtures: an injected clock, a runtime on a fresh data directory, an HTTP client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from playwave.api.app import create_app
from playwave.clock import ManualClock
from playwave.logs import configure_logging
from playwave.runtime import Runtime, build_runtime
from playwave.settings import Settings
from playwave.stores.base import Game, OttGrant
from tests.backends import (  # noqa: F401  (fixtures)
    cluster_namespace,
    postgres_database,
    postgres_server,
    redis_cluster,
    redis_namespace,
    redis_server,
    redis_url,
)
from tests.helpers import GameServer, mint_ott

START = 1_767_225_600_000  # 2026-01-01T00:00:00Z

# Send structlog through standard logging so that pytest captures it per test.
configure_logging("DEBUG", json=True)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture(params=["embedded", "postgres-redis"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """Settings of one backend: the embedded SQLite default, or PostgreSQL with Redis.

    The production backend gets a fresh migrated database and its own Redis key prefix.
    """
    if request.param == "embedded":
        return Settings(data_dir=tmp_path / "data", secret_key="test-secret", _env_file=None)
    return Settings(
        data_dir=tmp_path / "data",
        database_url=request.getfixturevalue("postgres_database"),
        redis_url=redis_url(),
        redis_prefix=request.getfixturevalue("redis_namespace"),
        secret_key="test-secret",
        _env_file=None,
    )


@pytest.fixture
async def runtime(settings: Settings, clock: ManualClock) -> AsyncIterator[Runtime]:
    runtime = await build_runtime(settings, clock=clock)
    yield runtime
    await runtime.close()


@pytest.fixture
async def client(runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(runtime=runtime, run_jobs=False)
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://playwave.test") as client:
        yield client


@pytest.fixture
async def game(runtime: Runtime) -> Game:
    game = Game(
        game_id="game_00000000000a",
        name="Obby Tower",
        rate_per_hour=600,
        active=True,
        created_at=START,
    )
    await runtime.records.create_game(game)
    return game


@pytest.fixture
async def game_server(runtime: Runtime, client: httpx.AsyncClient, game: Game) -> GameServer:
    issued = await runtime.api_keys.issue(game.game_id, "live")
    return GameServer(client, issued.api_key, game.game_id)


@pytest.fixture
def ott(runtime: Runtime, game: Game):
    async def make(pc_id: str = "pc-1", game_id: str | None = None) -> OttGrant:
        return await mint_ott(runtime, game_id or game.game_id, pc_id)

    return make
