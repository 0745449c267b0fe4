"""Production layout: several API processes and workers on one PostgreSQL and one Redis."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
from sqlalchemy import func, select

from playwave.clock import SystemClock
from playwave.domain.lifecycle import GameSession, SessionState
from playwave.domain.live import LiveSession
from playwave.runtime import build_runtime
from playwave.settings import Settings
from playwave.stores.base import Game
from playwave.stores.sql.tables import game_sessions, partner_calls
from tests.backends import redis_url
from tests.processes import playwave_env, run_cli, running_server


@pytest.fixture(params=["redis", "cluster"])
def production_env(request, tmp_path, postgres_database) -> dict[str, str]:
    if request.param == "redis":
        live_url, prefix = redis_url(), request.getfixturevalue("redis_namespace")
    else:
        live_url = request.getfixturevalue("redis_cluster").url
        prefix = request.getfixturevalue("cluster_namespace")
    return playwave_env(
        tmp_path / "data",
        PLAYWAVE_DATABASE_URL=postgres_database,
        PLAYWAVE_REDIS_URL=live_url,
        PLAYWAVE_REDIS_PREFIX=prefix,
        PLAYWAVE_SECRET_KEY="processes-test-secret",
        PLAYWAVE_SESSION_TTL_SEC="3",
        PLAYWAVE_HEARTBEAT_INTERVAL_SEC="1",
        PLAYWAVE_SWEEP_INTERVAL_SEC="0.2",
        PLAYWAVE_HEARTBEAT_FLUSH_SEC="0.5",
    )


@contextmanager
def workers(env: dict[str, str], count: int) -> Iterator[list[subprocess.Popen]]:
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "playwave", "worker"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for _ in range(count)
    ]
    try:
        yield processes
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def settings_of(env: dict[str, str]) -> Settings:
    return Settings(
        database_url=env["PLAYWAVE_DATABASE_URL"],
        redis_url=env["PLAYWAVE_REDIS_URL"],
        redis_prefix=env["PLAYWAVE_REDIS_PREFIX"],
        secret_key=env["PLAYWAVE_SECRET_KEY"],
        session_ttl_sec=3,
        _env_file=None,
    )


def session_record(env: dict[str, str], game_session_id: str) -> GameSession | None:
    async def read() -> GameSession | None:
        runtime = await build_runtime(settings_of(env))
        try:
            return await runtime.records.get_session(game_session_id)
        finally:
            await runtime.close()

    return asyncio.run(read())


def test_three_servers_two_workers(production_env):
    env = production_env
    upgrade = subprocess.run(
        [sys.executable, "-m", "playwave", "db", "upgrade"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert upgrade.returncode == 0, upgrade.stderr

    with workers(env, 2) as worker_processes, running_server(env, "--workers", "3") as base_url:
        game = run_cli(env, "games", "create", "--name", "Obby", "--rate-per-hour", "600")
        key = run_cli(env, "keys", "create", "--game", game["game_id"], "--env", "live")
        headers = {"X-Api-Key": key["api_key"]}
        with httpx.Client(base_url=base_url, headers=headers, timeout=10) as client:
            played = run_cli(env, "sandbox", "ott", "--game", game["game_id"], "--pc", "pc-1")
            verify = client.post(
                "/v1/game/session/verify",
                json={"ott": played["launch_data"], "provider_user_id": "7"},
            )
            session_id = verify.json()["data"]["game_session_id"]
            beats = [
                client.patch(
                    "/v1/game/session/heartbeat",
                    json={"game_session_id": session_id, "provider_user_id": "7"},
                )
                for _ in range(6)
            ]
            end = client.request(
                "DELETE",
                "/v1/game/session/end",
                json={"game_session_id": session_id, "play_duration_sec": 0},
            )
            end_again = client.request(
                "DELETE", "/v1/game/session/end", json={"game_session_id": session_id}
            )

            abandoned = run_cli(env, "sandbox", "ott", "--game", game["game_id"], "--pc", "pc-2")
            silent = client.post(
                "/v1/game/session/verify", json={"ott": abandoned["ott"], "provider_user_id": "8"}
            )
            silent_id = silent.json()["data"]["game_session_id"]

            # No request touches the silent session again: a worker must end it on its own.
            deadline = time.monotonic() + 20
            record = session_record(env, silent_id)
            while record.state is not SessionState.ENDED and time.monotonic() < deadline:
                time.sleep(0.5)
                record = session_record(env, silent_id)
            after = client.patch(
                "/v1/game/session/heartbeat",
                json={"game_session_id": silent_id, "provider_user_id": "8"},
            )

        for process in worker_processes:
            process.send_signal(signal.SIGTERM)
        exit_codes = [process.wait(timeout=30) for process in worker_processes]

    assert verify.json()["data"]["is_valid"] is True
    assert {beat.json()["data"]["result"] for beat in beats} == {"OK"}
    assert end.json()["data"]["result"] == "SUCCESS"
    assert end_again.json()["error"]["code"] == "ALREADY_ENDED"
    assert record.end_reason == "HEARTBEAT_TIMEOUT"
    assert record.ended_at == record.started_at
    assert after.status_code == 410
    assert after.json()["error"]["code"] == "SESSION_ENDED"
    assert exit_codes == [0, 0]


async def _seed_expired_sessions(settings: Settings, count: int) -> None:
    runtime = await build_runtime(settings, clock=SystemClock())
    try:
        game = Game("game_0000000000ff", "Kill", 600, True, 0)
        await runtime.records.create_game(game)
        long_ago = SystemClock().now() - 600_000
        for number in range(count):
            session = GameSession(
                game_session_id=f"gs_00000000-0000-4000-8000-{number:012d}",
                ott=f"00000000-0000-4000-8000-{number:012d}",
                game_id=game.game_id,
                api_key_id="key_seed",
                environment="live",
                provider_user_id=str(number + 1),
                cafe_id="cafe_demo",
                pc_id=f"pc-{number}",
                launcher_session_id=None,
                rate_per_hour=600,
                billing_id=None,
                state=SessionState.ACTIVE,
                started_at=long_ago,
                last_heartbeat_at=long_ago + 1000,
            )
            await runtime.records.create_session(session)
            await runtime.live.put_session(LiveSession.from_record(session, settings.timers))
    finally:
        await runtime.close()


async def _count_ends(settings: Settings) -> tuple[int, int, int]:
    runtime = await build_runtime(settings)
    try:
        engine = runtime.records.engine
        async with engine.connect() as connection:
            ended = (
                await connection.execute(
                    select(func.count())
                    .select_from(game_sessions)
                    .where(game_sessions.c.state == "ENDED")
                )
            ).scalar_one()
            timeouts = (
                await connection.execute(
                    select(func.count())
                    .select_from(game_sessions)
                    .where(
                        game_sessions.c.end_reason == "HEARTBEAT_TIMEOUT",
                        game_sessions.c.ended_at == game_sessions.c.last_heartbeat_at,
                    )
                )
            ).scalar_one()
            stops = (
                await connection.execute(
                    select(func.count())
                    .select_from(partner_calls)
                    .where(partner_calls.c.kind == "stop")
                )
            ).scalar_one()
        return ended, timeouts, stops
    finally:
        await runtime.close()


def test_worker_killed_mid_sweep(production_env):
    env = production_env
    settings = settings_of(env)
    count = 1500
    subprocess.run(
        [sys.executable, "-m", "playwave", "db", "upgrade"],
        env=env,
        check=True,
        capture_output=True,
    )
    asyncio.run(_seed_expired_sessions(settings, count))

    with workers(env, 1) as first:
        time.sleep(1.0)
        first[0].kill()
        first[0].wait()
    killed_at = asyncio.run(_count_ends(settings))[0]

    with workers(env, 2):
        deadline = time.monotonic() + 60
        ended = 0
        while time.monotonic() < deadline:
            ended, timeouts, stops = asyncio.run(_count_ends(settings))
            if ended == count:
                break
            time.sleep(0.5)

    ended, timeouts, stops = asyncio.run(_count_ends(settings))
    assert killed_at < count, "the first worker finished before it was killed; raise the count"
    assert ended == count
    assert timeouts == count
    assert stops == 0  # seeded sessions have no billing, so no stop call may appear
