"""Concurrent launcher calls on one PC never leave two live game sessions."""

from __future__ import annotations

import asyncio

import httpx

from playwave.domain.lifecycle import EndReason, SessionState
from playwave.runtime import Runtime
from playwave.stores.base import Game
from tests.helpers import GameServer
from tests.launcher.signed_client import Launcher

ATTEMPTS = 6


def data(response: httpx.Response) -> dict:
    assert response.status_code == 200, response.json()
    return response.json()["data"]


async def live_sessions_on(runtime: Runtime, pc_id: str) -> list:
    sessions = await runtime.records.live_sessions(None, 1000)
    return [session for session in sessions if session.pc_id == pc_id]


async def test_concurrent_otts_and_verifies(
    launcher: Launcher, game: Game, game_server: GameServer, runtime: Runtime
):
    data(await launcher.start("pc-1"))

    otts = await asyncio.gather(*(launcher.ott(game.game_id) for _ in range(ATTEMPTS)))
    launch_data = [data(response)["launch_data"] for response in otts]
    users = [str(1000 + index) for index in range(ATTEMPTS)]
    verifies = await asyncio.gather(
        *(game_server.verify(item, user) for item, user in zip(launch_data, users, strict=True))
    )
    # Verifies racing on one PC keep replacing each other. One that loses too often returns
    # 503 and leaves its OTT unused, so the game server retries it.
    retried = []
    for response, item, user in zip(verifies, launch_data, users, strict=True):
        if response.status_code == 503:
            assert response.json()["error"]["code"] == "SERVICE_UNAVAILABLE"
            response = await game_server.verify(item, user)
        retried.append(response)

    started = [data(response)["game_session_id"] for response in retried]
    live = await live_sessions_on(runtime, "pc-1")
    assert len(set(launch_data)) == ATTEMPTS
    assert len(set(started)) == ATTEMPTS
    assert len(live) == 1
    assert live[0].game_session_id in started
    for game_session_id in started:
        record = await runtime.records.get_session(game_session_id)
        assert record is not None
        if game_session_id != live[0].game_session_id:
            assert record.state is SessionState.ENDED
            assert record.end_reason is EndReason.SESSION_REPLACED


async def test_concurrent_verifies_of_one_ott(
    launcher: Launcher, game: Game, game_server: GameServer, runtime: Runtime
):
    data(await launcher.start("pc-1"))
    launch_data = await launcher.launch_data(game.game_id)

    verifies = await asyncio.gather(
        *(game_server.verify(launch_data, str(2000 + index)) for index in range(ATTEMPTS))
    )

    answers = [data(response) for response in verifies]
    valid = [answer for answer in answers if answer["is_valid"]]
    assert len(valid) == 1
    assert {answer.get("reason") for answer in answers if not answer["is_valid"]} == {
        "OTT_ALREADY_USED"
    }
    assert len(await live_sessions_on(runtime, "pc-1")) == 1


async def test_concurrent_starts_one_pc(make_launcher, runtime: Runtime):
    # NOTE: the sandbox creates its demo cafe on the first loopback IP check, and concurrent
    # first checks on PostgreSQL collide on its primary key. A start on another PC creates the
    # cafe first, so this test stays about launcher sessions.
    data(await make_launcher().start("pc-warm-up"))
    launchers = [make_launcher() for _ in range(ATTEMPTS)]

    responses = await asyncio.gather(*(launcher.start("pc-1") for launcher in launchers))

    assert all(response.status_code == 200 for response in responses)
    open_sessions = [
        await runtime.records.get_launcher_session(launcher.launcher_session_id)
        for launcher in launchers
        if launcher.launcher_session_id is not None
    ]
    still_open = [session for session in open_sessions if session and session.ended_at is None]
    assert len(still_open) == 1
    assert await runtime.records.open_launcher_session_on_pc("pc-1") == still_open[0]


async def test_heartbeats_during_launches(
    launcher: Launcher, game: Game, game_server: GameServer, runtime: Runtime
):
    data(await launcher.start("pc-1"))

    calls = []
    for _ in range(ATTEMPTS):
        calls.append(launcher.heartbeat())
        calls.append(launcher.ott(game.game_id))
    responses = await asyncio.gather(*calls)

    assert all(response.status_code == 200 for response in responses)
    launch_data = [r.json()["data"]["launch_data"] for r in responses if "ott" in r.json()["data"]]
    verifies = await asyncio.gather(*(game_server.verify(item) for item in launch_data))
    assert {response.status_code for response in verifies} <= {200, 503}
    assert len(await live_sessions_on(runtime, "pc-1")) == 1
