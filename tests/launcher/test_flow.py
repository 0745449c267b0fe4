"""The launcher API end to end over HTTP, with the game server API beside it."""

from __future__ import annotations

import re

import httpx
import pytest

from playwave import ids
from playwave.clock import ManualClock
from playwave.domain.lifecycle import EndReason, GameSession, SessionState
from playwave.partner.sandbox import DEMO_CAFE_ID, DEMO_CAFE_NAME, SandboxPartner
from playwave.runtime import Runtime
from playwave.stores.base import Game
from tests.conftest import START
from tests.helpers import GameServer
from tests.launcher.conftest import run_job
from tests.launcher.signed_client import Launcher


def data(response: httpx.Response) -> dict:
    assert response.status_code == 200, response.json()
    return response.json()["data"]


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    """Assert that `response` has the HTTP status `status` and the error code `code`."""
    assert response.status_code == status, response.json()
    assert response.json()["error"]["code"] == code


async def play(launcher: Launcher, game_server: GameServer, game: Game) -> str:
    """Launch `game` from `launcher` and verify it as the game server; return the session id."""
    launch_data = await launcher.launch_data(game.game_id)
    verified = data(await game_server.verify(launch_data))
    assert verified["is_valid"] is True, verified
    return verified["game_session_id"]


async def assert_both_ended(
    launcher: Launcher, game_server: GameServer, game_session_id: str
) -> None:
    """Assert that the game server and launcher calls on the ended sessions are rejected."""
    assert_error(await game_server.heartbeat(game_session_id), 410, "SESSION_ENDED")
    assert_error(await game_server.end(game_session_id), 409, "ALREADY_ENDED")
    assert_error(await launcher.heartbeat(), 410, "LAUNCHER_SESSION_ENDED")


async def ended_session(
    runtime: Runtime, game_session_id: str, reason: EndReason, ended_at: int
) -> GameSession:
    """Fetch the session's record and assert that it ended for `reason` at `ended_at`."""
    record = await runtime.records.get_session(game_session_id)
    assert record is not None
    assert record.end_reason is reason
    assert record.ended_at == ended_at
    return record


async def assert_active(runtime: Runtime, game_session_id: str) -> None:
    """Assert that the session's record is still ACTIVE."""
    record = await runtime.records.get_session(game_session_id)
    assert record is not None
    assert record.state is SessionState.ACTIVE


# Start.


async def test_start_answers_session_and_games(launcher: Launcher, game: Game, runtime: Runtime):
    inactive = Game("game_00000000000b", "Retired Obby", 600, False, START)
    await runtime.records.create_game(inactive)

    answer = data(await launcher.start("pc-1"))

    assert re.fullmatch(ids.LAUNCHER_SESSION_ID.pattern, answer["launcher_session_id"])
    assert len(answer["launcher_session_token"]) >= 32
    assert answer["pc_cafe"] == {"id": DEMO_CAFE_ID, "name": DEMO_CAFE_NAME}
    assert answer["games"] == [
        {"game_id": game.game_id, "name": game.name, "roblox_place_id": None}
    ]
    assert answer["heartbeat_interval_sec"] == 60


async def test_start_stores_token_hash_only(launcher: Launcher, runtime: Runtime):
    answer = data(await launcher.start("pc-1"))

    record = await runtime.records.get_launcher_session(answer["launcher_session_id"])

    assert record is not None
    assert record.token_hash != answer["launcher_session_token"]
    assert answer["launcher_session_token"] not in repr(record)
    assert record.pc_id == "pc-1"
    assert record.internal_ip == "192.168.0.21"
    assert record.external_ip == "127.0.0.1"
    assert record.hardware == {"cpu": "i5-13400F", "gpu": "RTX 4060", "ram_gb": 16}
    assert record.launcher_version == "1.4.2"
    assert record.started_at == START


async def test_start_outside_cafe_rejected(launcher: Launcher, client_from):
    launcher.client = client_from("203.0.113.50")

    response = await launcher.start()

    assert_error(response, 403, "NOT_PC_CAFE")
    assert "203.0.113.50" in response.json()["error"]["message"]


async def test_start_from_registered_cafe(runtime: Runtime, launcher: Launcher, client_from):
    assert isinstance(runtime.partner, SandboxPartner)
    cafe = await runtime.partner.add_cafe(name="Star PC", ip="203.0.113.50", balance=50_000)
    launcher.client = client_from("203.0.113.50")

    answer = data(await launcher.start())

    assert answer["pc_cafe"] == {"id": cafe.cafe_id, "name": "Star PC"}


async def test_forwarded_ip_only_from_trusted_proxy(runtime: Runtime, launcher: Launcher):
    assert isinstance(runtime.partner, SandboxPartner)
    cafe = await runtime.partner.add_cafe(name="Proxy PC", ip="198.51.100.7", balance=50_000)
    launcher.extra_headers = {"X-Forwarded-For": "198.51.100.7"}

    untrusted = data(await launcher.start("pc-untrusted"))
    runtime.settings.trusted_proxies = ["127.0.0.1/32"]
    trusted = data(await launcher.start("pc-trusted"))

    assert untrusted["pc_cafe"]["id"] == DEMO_CAFE_ID
    assert trusted["pc_cafe"]["id"] == cafe.cafe_id


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"pc_id": ""}, "pc_id"),
        ({"pc_id": "x" * 129}, "pc_id"),
        ({"pc_id": 42}, "pc_id"),
        ({"internal_ip": "192.168.0.300"}, "internal_ip"),
        ({"internal_ip": "pc-room-3"}, "internal_ip"),
        ({"hardware": ["cpu"]}, "hardware"),
        ({"hardware": "i5"}, "hardware"),
        ({"launcher_version": ""}, "launcher_version"),
    ],
)
async def test_start_bad_field_named(launcher: Launcher, changes: dict, field: str):
    response = await launcher.start(**changes)

    assert_error(response, 400, "BAD_REQUEST")
    assert f"'{field}'" in response.json()["error"]["message"]


@pytest.mark.parametrize("missing", ["pc_id", "internal_ip", "hardware", "launcher_version"])
async def test_start_missing_field_named(launcher: Launcher, missing: str):
    body = {
        "pc_id": "pc-1",
        "internal_ip": "10.0.0.5",
        "hardware": {},
        "launcher_version": "1.0.0",
    }
    del body[missing]

    response = await launcher.call("POST", "/v1/launcher/session/start", body)

    assert response.status_code == 400
    assert response.json()["error"]["message"] == f"Field '{missing}' is required."


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "The request body is missing; send a JSON object."),
        (b"[1, 2]", "The request body must be a JSON object."),
        (b'"pc-1"', "The request body must be a JSON object."),
    ],
)
async def test_start_body_not_object(launcher: Launcher, body: bytes, message: str):
    response = await launcher.call("POST", "/v1/launcher/session/start", body)

    assert response.status_code == 400
    assert response.json()["error"]["message"] == message


async def test_start_ignores_unknown_fields(launcher: Launcher):
    response = await launcher.start(os_build="22631", locale="ko-KR")

    assert response.status_code == 200


# Bearer token.


async def test_ott_without_token_rejected(launcher: Launcher, game: Game):
    response = await launcher.ott(game.game_id)

    assert_error(response, 401, "INVALID_TOKEN")


@pytest.mark.parametrize(
    "authorization",
    ["Bearer", "Basic dXNlcjpwYXNz", "Bearer short", "Bearer " + "A" * 43, "Token " + "A" * 43],
)
async def test_bad_bearer_rejected(launcher: Launcher, game: Game, authorization: str):
    data(await launcher.start())
    request = launcher.sign("POST", "/v1/launcher/ott", {"game_id": game.game_id})
    request.headers["Authorization"] = authorization

    response = await launcher.send(request)

    assert_error(response, 401, "INVALID_TOKEN")


async def test_token_needs_signature(launcher: Launcher, game: Game):
    data(await launcher.start())

    response = await launcher.client.post(
        "/v1/launcher/ott",
        json={"game_id": game.game_id},
        headers={"Authorization": f"Bearer {launcher.token}"},
    )

    assert_error(response, 401, "SIGNATURE_MISSING")


# OTT.


async def test_ott_answer(launcher: Launcher, game: Game, runtime: Runtime, clock: ManualClock):
    started = data(await launcher.start("pc-7"))

    answer = data(await launcher.ott(game.game_id))
    grant = await runtime.live.get_ott(answer["ott"], clock.now())

    assert re.fullmatch(ids.OTT.pattern, answer["ott"])
    assert answer["launch_data"] == f"playwave_{answer['ott']}"
    assert answer["expires_in"] == 60
    assert grant is not None
    assert grant.game_id == game.game_id
    assert grant.pc_id == "pc-7"
    assert grant.cafe_id == DEMO_CAFE_ID
    assert grant.launcher_session_id == started["launcher_session_id"]
    assert grant.expires_at == START + 60_000


async def test_ott_unknown_game(launcher: Launcher):
    data(await launcher.start())

    response = await launcher.ott("game_ffffffffffff")

    assert_error(response, 404, "GAME_NOT_FOUND")


async def test_ott_inactive_game(launcher: Launcher, game: Game, runtime: Runtime):
    data(await launcher.start())
    await runtime.records.set_game_active(game.game_id, False)

    response = await launcher.ott(game.game_id)

    assert_error(response, 404, "GAME_NOT_FOUND")


@pytest.mark.parametrize("game_id", ["", "game_XYZ", "obby-tower", 7])
async def test_ott_malformed_game_id(launcher: Launcher, game_id: object):
    data(await launcher.start())

    response = await launcher.call("POST", "/v1/launcher/ott", {"game_id": game_id})

    assert response.status_code == 400
    assert "'game_id'" in response.json()["error"]["message"]


async def test_ott_expires_after_60_s(
    launcher: Launcher, game: Game, game_server: GameServer, clock: ManualClock
):
    data(await launcher.start())
    launch_data = await launcher.launch_data(game.game_id)

    clock.advance(60)
    verified = data(await game_server.verify(launch_data))

    assert verified == {"is_valid": False, "reason": "OTT_EXPIRED"}


# The whole flow.


async def test_full_flow_until_launcher_end(
    launcher: Launcher,
    game: Game,
    game_server: GameServer,
    runtime: Runtime,
    clock: ManualClock,
):
    started = data(await launcher.start("pc-1"))
    game_session_id = await play(launcher, game_server, game)

    for minute in range(1, 5):
        clock.advance(60)
        assert data(await launcher.heartbeat()) == {"next_heartbeat_in": 60}
        if minute % 2 == 0:
            beat = data(await game_server.heartbeat(game_session_id))
            assert beat["result"] == "OK"
            assert beat["play_duration_sec"] == minute * 60
    clock.advance(30)
    ended = data(await launcher.end())

    assert ended == {"result": "SUCCESS", "ended_game_session_ids": [game_session_id]}
    record = await ended_session(
        runtime, game_session_id, EndReason.LAUNCHER_CLOSED, START + 270_000
    )
    launcher_record = await runtime.records.get_launcher_session(started["launcher_session_id"])
    assert record.launcher_session_id == started["launcher_session_id"]
    assert record.state is SessionState.ENDED
    assert record.play_duration_sec == 270
    assert launcher_record is not None
    assert launcher_record.end_reason == "LAUNCHER_CLOSED"
    assert launcher_record.ended_at == START + 270_000
    assert launcher_record.last_heartbeat_at == START + 240_000

    await assert_both_ended(launcher, game_server, game_session_id)


async def test_game_end_keeps_launcher(
    launcher: Launcher, game: Game, game_server: GameServer, clock: ManualClock
):
    data(await launcher.start())
    game_session_id = await play(launcher, game_server, game)

    clock.advance(90)
    ended = data(await game_server.end(game_session_id, 90))
    launcher_beat = data(await launcher.heartbeat())
    launcher_end = data(await launcher.end())

    assert ended["play_duration_sec"] == 90
    assert launcher_beat == {"next_heartbeat_in": 60}
    assert launcher_end["ended_game_session_ids"] == []


async def test_end_twice_rejected(launcher: Launcher):
    data(await launcher.start())

    first = await launcher.end()
    second = await launcher.end()

    assert first.status_code == 200
    assert_error(second, 410, "LAUNCHER_SESSION_ENDED")


# Replacement of a game session on the same PC.


async def test_replacement_through_http(
    launcher: Launcher,
    game: Game,
    game_server: GameServer,
    runtime: Runtime,
    clock: ManualClock,
):
    data(await launcher.start("pc-1"))
    first = await play(launcher, game_server, game)
    clock.advance(100)
    second = await play(launcher, game_server, game)

    clock.advance(20)
    replaced_beat = await game_server.heartbeat(first)
    replaced_end = await game_server.end(first)
    live_beat = data(await game_server.heartbeat(second))

    assert replaced_beat.status_code == 200
    assert replaced_beat.json()["data"]["result"] == "SESSION_REPLACED"
    assert_error(replaced_end, 409, "ALREADY_ENDED")
    assert live_beat["result"] == "OK"
    old = await ended_session(runtime, first, EndReason.SESSION_REPLACED, START + 100_000)
    new = await runtime.records.get_session(second)
    assert new is not None
    assert old.play_duration_sec == 100
    assert new.started_at == START + 100_000
    assert await runtime.records.live_session_on_pc("pc-1") == new


# Launcher loss.


async def test_launcher_loss_ends_games(
    launcher: Launcher,
    game: Game,
    game_server: GameServer,
    runtime: Runtime,
    clock: ManualClock,
):
    started = data(await launcher.start("pc-1"))
    game_session_id = await play(launcher, game_server, game)
    clock.advance(100)
    data(await launcher.heartbeat())
    clock.advance(20)
    assert data(await game_server.heartbeat(game_session_id))["result"] == "OK"

    # The launcher is silent from +100 s; it is lost at +340 s, while the game still beats.
    clock.set(START + 339_999)
    assert await run_job(runtime, "launcher_sweep_live") == 0
    still_live = await runtime.records.get_session(game_session_id)
    clock.set(START + 340_000)
    assert await run_job(runtime, "launcher_sweep_live") == 1

    assert still_live is not None and still_live.state is SessionState.ACTIVE
    # Billed to the earlier of the launcher's last heartbeat (+100 s) and the game's (+120 s).
    record = await ended_session(runtime, game_session_id, EndReason.LAUNCHER_LOST, START + 100_000)
    launcher_record = await runtime.records.get_launcher_session(started["launcher_session_id"])
    assert record.play_duration_sec == 100
    assert record.billable_sec == 100
    assert launcher_record is not None
    assert launcher_record.end_reason == "LAUNCHER_LOST"
    assert launcher_record.ended_at == START + 100_000

    await assert_both_ended(launcher, game_server, game_session_id)


async def test_launcher_heartbeats_keep_games(
    launcher: Launcher,
    game: Game,
    game_server: GameServer,
    runtime: Runtime,
    clock: ManualClock,
):
    data(await launcher.start("pc-1"))
    game_session_id = await play(launcher, game_server, game)

    for _ in range(10):
        clock.advance(60)
        data(await launcher.heartbeat())
        if clock.now() % 120_000 == 0:
            data(await game_server.heartbeat(game_session_id))
        await run_job(runtime, "launcher_sweep_live")
        await run_job(runtime, "launcher_sweep_records")

    await assert_active(runtime, game_session_id)


async def test_late_launcher_heartbeat_not_revived(
    launcher: Launcher,
    game: Game,
    game_server: GameServer,
    runtime: Runtime,
    clock: ManualClock,
):
    data(await launcher.start("pc-1"))
    game_session_id = await play(launcher, game_server, game)
    clock.advance(120)
    data(await game_server.heartbeat(game_session_id))

    # No sweep has run yet: the late heartbeat itself finds the launcher lost.
    clock.set(START + 240_000)
    late = await launcher.heartbeat()

    assert_error(late, 410, "LAUNCHER_SESSION_ENDED")
    assert "LAUNCHER_LOST" in late.json()["error"]["message"]
    await ended_session(runtime, game_session_id, EndReason.LAUNCHER_LOST, START)


async def test_lost_launcher_found_from_records(
    launcher: Launcher,
    game: Game,
    game_server: GameServer,
    runtime: Runtime,
    clock: ManualClock,
):
    started = data(await launcher.start("pc-1"))
    game_session_id = await play(launcher, game_server, game)
    clock.advance(120)
    data(await launcher.heartbeat())
    # The live store loses the launcher's deadline, so only the records contain it.
    await runtime.live.forget_launcher(started["launcher_session_id"])
    for _ in range(2):
        clock.advance(90)
        data(await game_server.heartbeat(game_session_id))

    clock.set(START + 359_999)
    assert await run_job(runtime, "launcher_sweep_records") == 0
    clock.set(START + 360_000)
    assert await run_job(runtime, "launcher_sweep_live") == 0
    assert await run_job(runtime, "launcher_sweep_records") == 1
    again = await run_job(runtime, "launcher_sweep_records")

    assert again == 0
    await ended_session(runtime, game_session_id, EndReason.LAUNCHER_LOST, START + 120_000)


async def test_launcher_record_written_every_half_timeout(
    launcher: Launcher, runtime: Runtime, clock: ManualClock
):
    started = data(await launcher.start("pc-1"))
    recorded = []

    for _ in range(5):
        clock.advance(60)
        data(await launcher.heartbeat())
        record = await runtime.records.get_launcher_session(started["launcher_session_id"])
        assert record is not None
        recorded.append(record.last_heartbeat_at - START)

    # Half the 240 s launcher timeout: the record lags the live store by less than 120 s.
    assert recorded == [0, 120_000, 120_000, 240_000, 240_000]


async def test_live_store_loss_keeps_launcher(
    launcher: Launcher,
    game: Game,
    game_server: GameServer,
    runtime: Runtime,
    clock: ManualClock,
):
    started = data(await launcher.start("pc-1"))
    game_session_id = await play(launcher, game_server, game)
    clock.advance(60)
    data(await launcher.heartbeat())
    await runtime.live.forget_launcher(started["launcher_session_id"])

    # The launcher keeps its 60 s rhythm, so the records see it again before the timeout.
    for _ in range(4):
        clock.advance(60)
        data(await launcher.heartbeat())
        if clock.now() % 120_000 == 0:
            data(await game_server.heartbeat(game_session_id))
        assert await run_job(runtime, "launcher_sweep_records") == 0

    await assert_active(runtime, game_session_id)


async def test_game_timeout_wins_over_loss(
    launcher: Launcher,
    game: Game,
    game_server: GameServer,
    runtime: Runtime,
    clock: ManualClock,
):
    data(await launcher.start("pc-1"))
    game_session_id = await play(launcher, game_server, game)
    clock.advance(30)
    data(await launcher.heartbeat())

    # Both are overdue when the launcher sweep runs, and the game's own silence came first.
    clock.set(START + 400_000)
    await run_job(runtime, "launcher_sweep_live")

    await ended_session(runtime, game_session_id, EndReason.HEARTBEAT_TIMEOUT, START)


# A new start on the same PC.


async def test_logout_then_new_launch(
    launcher: Launcher,
    make_launcher,
    game: Game,
    game_server: GameServer,
    runtime: Runtime,
    clock: ManualClock,
):
    data(await launcher.start("pc-1"))
    first = await play(launcher, game_server, game)
    clock.advance(100)

    data(await launcher.end())
    relaunched = make_launcher()
    data(await relaunched.start("pc-1"))
    second = await play(relaunched, game_server, game)

    old = await ended_session(runtime, first, EndReason.LAUNCHER_CLOSED, START + 100_000)
    new = await runtime.records.get_session(second)
    assert new is not None
    assert new.started_at == START + 100_000
    assert old.ended_at <= new.started_at
    assert new.launcher_session_id == relaunched.launcher_session_id
    assert await runtime.records.live_session_on_pc("pc-1") == new


async def test_restart_without_logout(
    launcher: Launcher,
    make_launcher,
    game: Game,
    game_server: GameServer,
    runtime: Runtime,
    clock: ManualClock,
):
    first_start = data(await launcher.start("pc-1"))
    first = await play(launcher, game_server, game)
    clock.advance(150)

    relaunched = make_launcher()
    data(await relaunched.start("pc-1"))
    old_record = await ended_session(runtime, first, EndReason.LAUNCHER_CLOSED, START + 150_000)
    clock.advance(5)
    second = await play(relaunched, game_server, game)

    old_launcher = await runtime.records.get_launcher_session(first_start["launcher_session_id"])
    new = await runtime.records.get_session(second)
    assert new is not None
    assert old_record.play_duration_sec == 150
    assert new.started_at == START + 155_000
    assert old_launcher is not None
    assert old_launcher.end_reason == "REPLACED"

    assert_error(await launcher.heartbeat(), 410, "LAUNCHER_SESSION_ENDED")
    assert_error(await game_server.heartbeat(first), 410, "SESSION_ENDED")


async def test_other_pc_untouched_by_start(
    launcher: Launcher, make_launcher, game: Game, game_server: GameServer, runtime: Runtime
):
    data(await launcher.start("pc-1"))
    first = await play(launcher, game_server, game)

    data(await make_launcher().start("pc-2"))

    await assert_active(runtime, first)
