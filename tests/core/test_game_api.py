"""The game-server API through HTTP: every row of the published verify, heartbeat, end and check."""

from __future__ import annotations

import re

from playwave.clock import ManualClock
from playwave.partner.base import PartnerUnavailable
from playwave.partner.sandbox import DEMO_CAFE_ID
from playwave.runtime import Runtime
from playwave.stores.base import Game
from tests.helpers import GameServer

GS_ID = re.compile(r"gs_[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
ISO_MS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def assert_success(response, status: int = 200) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"success", "request_id", "data"}
    assert body["success"] is True
    assert body["request_id"].startswith("req_")
    assert response.headers["x-request-id"] == body["request_id"]
    return body["data"]


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"success", "request_id", "error"}
    assert body["success"] is False
    assert response.headers["x-request-id"] == body["request_id"]
    assert set(body["error"]) == {"code", "message", "timestamp"}
    assert body["error"]["code"] == code
    assert ISO_MS.fullmatch(body["error"]["timestamp"])
    return body["error"]


async def other_game_server(runtime: Runtime, game_server: GameServer) -> GameServer:
    other = Game(
        game_id="game_00000000000b",
        name="Racing",
        rate_per_hour=0,
        active=True,
        created_at=runtime.clock.now(),
    )
    await runtime.records.create_game(other)
    issued = await runtime.api_keys.issue(other.game_id, "dev")
    return GameServer(game_server.client, issued.api_key, other.game_id)


# Verify.


async def test_verify_returns_session(game_server, ott):
    grant = await ott()

    data = assert_success(await game_server.verify(grant.ott))

    assert set(data) == {"is_valid", "game_session_id", "is_pc_cafe"}
    assert data["is_valid"] is True
    assert data["is_pc_cafe"] is True
    assert GS_ID.fullmatch(data["game_session_id"])


async def test_verify_accepts_launch_data_form(game_server, ott):
    grant = await ott()

    data = assert_success(await game_server.verify(f"playwave_{grant.ott}"))

    assert data["is_valid"] is True


async def test_verify_never_issued_is_expired(game_server):
    data = assert_success(await game_server.verify("2f1c7f0e-8d8a-4b8e-9a53-0d5d4a3c2b1a"))

    assert data == {"is_valid": False, "reason": "OTT_EXPIRED"}


async def test_verify_after_ttl_is_expired(game_server, ott, clock: ManualClock):
    grant = await ott()
    clock.advance(61)

    data = assert_success(await game_server.verify(grant.ott))

    assert data == {"is_valid": False, "reason": "OTT_EXPIRED"}


async def test_verify_other_user_is_already_used(game_server, ott):
    grant = await ott()
    await game_server.start(grant, user="111")

    data = assert_success(await game_server.verify(grant.ott, user="222"))

    assert data == {"is_valid": False, "reason": "OTT_ALREADY_USED"}


async def test_verify_retry_same_user_same_session(game_server, ott, clock: ManualClock):
    grant = await ott()
    first = await game_server.start(grant)
    clock.advance(90)  # past the OTT's own TTL: a slow retry must still find its session

    data = assert_success(await game_server.verify(f"playwave_{grant.ott}"))

    assert data["game_session_id"] == first


async def test_verify_other_game_is_mismatch(runtime, game_server, ott):
    grant = await ott()
    other = await other_game_server(runtime, game_server)

    data = assert_success(await other.verify(grant.ott))

    assert data == {"is_valid": False, "reason": "GAME_MISMATCH"}
    assert (await game_server.verify(grant.ott)).json()["data"]["is_valid"] is True


async def test_verify_low_balance_not_chargeable(runtime, game_server, ott):
    grant = await ott()
    await runtime.partner.check_ip("127.0.0.1")
    await runtime.partner.set_balance(DEMO_CAFE_ID, 0)

    data = assert_success(await game_server.verify(grant.ott))

    assert data == {"is_valid": False, "reason": "NOT_CHARGEABLE"}
    assert await runtime.records.get_session_by_ott(grant.ott) is None


async def test_verify_partner_down_consumes_nothing(runtime, game_server, ott):
    grant = await ott()
    working = runtime.sessions.partner

    class DownPartner:
        async def start_billing(self, **_kwargs):
            raise PartnerUnavailable("connection refused")

    runtime.sessions.partner = DownPartner()
    assert_error(await game_server.verify(grant.ott), 503, "SERVICE_UNAVAILABLE")

    runtime.sessions.partner = working
    assert assert_success(await game_server.verify(grant.ott))["is_valid"] is True


# Heartbeat.


async def test_heartbeat_reports_growing_duration(game_server, ott, clock: ManualClock):
    session_id = await game_server.start(await ott())

    clock.advance(120.9)
    first = assert_success(await game_server.heartbeat(session_id))
    clock.advance(120)
    second = assert_success(await game_server.heartbeat(session_id))

    assert first == {"result": "OK", "next_heartbeat_in": 120, "play_duration_sec": 120}
    assert second == {"result": "OK", "next_heartbeat_in": 120, "play_duration_sec": 240}


async def test_heartbeat_renews_deadline(runtime, game_server, ott, clock: ManualClock):
    session_id = await game_server.start(await ott())

    for _ in range(5):
        clock.advance(200)
        assert_success(await game_server.heartbeat(session_id))
        await runtime.jobs_by_name["sweep_live"].step()

    record = await runtime.records.get_session(session_id)
    assert record.is_live


async def test_heartbeat_other_user_not_found(game_server, ott):
    session_id = await game_server.start(await ott(), user="111")

    error = assert_error(
        await game_server.heartbeat(session_id, user="222"), 404, "SESSION_NOT_FOUND"
    )

    assert session_id in error["message"]


async def test_heartbeat_other_games_session_not_found(runtime, game_server, ott):
    session_id = await game_server.start(await ott())
    other = await other_game_server(runtime, game_server)

    assert_error(await other.heartbeat(session_id), 404, "SESSION_NOT_FOUND")
    assert_error(await other.end(session_id), 404, "SESSION_NOT_FOUND")
    assert_error(await other.check(session_id), 404, "SESSION_NOT_FOUND")


async def test_heartbeat_unknown_session_not_found(game_server):
    unknown = "gs_550e8400-e29b-41d4-a716-446655440000"

    assert_error(await game_server.heartbeat(unknown), 404, "SESSION_NOT_FOUND")


async def test_heartbeat_while_ending(runtime, game_server, ott):
    from playwave.domain.lifecycle import EndReason

    session_id = await game_server.start(await ott())
    await runtime.live.mark_ending(session_id, EndReason.NORMAL, runtime.clock.now() + 10_000)

    assert_error(await game_server.heartbeat(session_id), 410, "SESSION_ENDING")
    assert_error(await game_server.check(session_id), 410, "SESSION_ENDING")


# End.


async def test_end_returns_server_duration(game_server, ott, clock: ManualClock):
    session_id = await game_server.start(await ott())
    clock.advance(100)
    assert_success(await game_server.heartbeat(session_id))
    clock.advance(80.5)

    data = assert_success(await game_server.end(session_id, play_duration_sec=178))

    assert data == {"result": "SUCCESS", "play_duration_sec": 180, "client_play_duration_sec": 178}


async def test_end_without_client_duration(game_server, ott, clock: ManualClock):
    session_id = await game_server.start(await ott())
    clock.advance(30)

    data = assert_success(await game_server.end(session_id))

    assert data == {"result": "SUCCESS", "play_duration_sec": 30, "client_play_duration_sec": None}


async def test_end_twice_already_ended(game_server, ott):
    session_id = await game_server.start(await ott())
    assert_success(await game_server.end(session_id))

    assert_error(await game_server.end(session_id), 409, "ALREADY_ENDED")
    assert_error(await game_server.heartbeat(session_id), 410, "SESSION_ENDED")
    assert_error(await game_server.check(session_id), 410, "SESSION_ENDED")


async def test_end_unknown_not_found(game_server):
    assert_error(
        await game_server.end("gs_550e8400-e29b-41d4-a716-446655440000"), 404, "SESSION_NOT_FOUND"
    )


async def test_end_records_final_fields(runtime, game_server, ott, clock: ManualClock):
    grant = await ott(pc_id="pc-77")
    session_id = await game_server.start(grant, user="555")
    clock.advance(42)
    await game_server.end(session_id, play_duration_sec=40)

    record = await runtime.records.get_session(session_id)

    assert record.end_reason == "NORMAL"
    assert record.state == "ENDED"
    assert record.play_duration_sec == 42
    assert record.billable_sec == 42
    assert record.client_play_duration_sec == 40
    assert record.pc_id == "pc-77"
    assert record.provider_user_id == "555"
    assert record.rate_per_hour == 600
    assert record.ended_at == record.started_at + 42_000


# Check.


async def test_check_confirms_session(game_server, ott, clock: ManualClock):
    session_id = await game_server.start(await ott())
    clock.advance(200)

    data = assert_success(await game_server.check(session_id))
    clock.advance(200)
    again = assert_success(await game_server.check(session_id))

    assert data == {
        "is_valid": True,
        "game_session_id": session_id,
        "is_pc_cafe": True,
        "play_duration_sec": 200,
    }
    assert again["play_duration_sec"] == 400


# Server-side ends.


async def test_timeout_bills_last_heartbeat(runtime, game_server, ott, clock: ManualClock):
    session_id = await game_server.start(await ott())
    clock.advance(100)
    assert_success(await game_server.heartbeat(session_id))
    clock.advance(240)

    await runtime.jobs_by_name["sweep_live"].step()
    clock.advance(500)  # noticing later must not change the billed end
    record = await runtime.records.get_session(session_id)

    assert record.end_reason == "HEARTBEAT_TIMEOUT"
    assert record.play_duration_sec == 100
    assert_error(await game_server.heartbeat(session_id), 410, "SESSION_ENDED")
    assert_error(await game_server.end(session_id), 409, "ALREADY_ENDED")


async def test_late_heartbeat_does_not_revive(runtime, game_server, ott, clock: ManualClock):
    session_id = await game_server.start(await ott())
    clock.advance(60)
    assert_success(await game_server.heartbeat(session_id))
    clock.advance(241)  # deadline passed, no sweep has run yet

    assert_error(await game_server.heartbeat(session_id), 410, "SESSION_ENDED")
    record = await runtime.records.get_session(session_id)

    assert record.end_reason == "HEARTBEAT_TIMEOUT"
    assert record.play_duration_sec == 60


async def test_end_after_unswept_expiry_conflicts(runtime, game_server, ott, clock: ManualClock):
    session_id = await game_server.start(await ott())
    clock.advance(300)

    assert_error(await game_server.end(session_id, 300), 409, "ALREADY_ENDED")
    record = await runtime.records.get_session(session_id)

    assert record.end_reason == "HEARTBEAT_TIMEOUT"
    assert record.play_duration_sec == 0


async def test_replaced_session_answers_replaced(runtime, game_server, ott, clock: ManualClock):
    old = await game_server.start(await ott(pc_id="pc-9"))
    clock.advance(50)
    new = await game_server.start(await ott(pc_id="pc-9"), user="999")
    clock.advance(10)

    data = assert_success(await game_server.heartbeat(old))
    record = await runtime.records.get_session(old)

    assert data["result"] == "SESSION_REPLACED"
    assert data["play_duration_sec"] == 50
    assert record.end_reason == "SESSION_REPLACED"
    assert_error(await game_server.end(old), 409, "ALREADY_ENDED")
    assert assert_success(await game_server.heartbeat(new, user="999"))["result"] == "OK"


async def test_admin_terminate(runtime, game_server, ott, clock: ManualClock):
    session_id = await game_server.start(await ott())
    clock.advance(15)

    ended = await runtime.sessions.terminate(session_id)

    assert ended.end_reason == "ADMIN_TERMINATED"
    assert ended.play_duration_sec == 15
    assert await runtime.sessions.terminate(session_id) is None
    assert_error(await game_server.heartbeat(session_id), 410, "SESSION_ENDED")


# API keys.


async def test_missing_api_key(game_server, ott):
    grant = await ott()
    response = await game_server.client.post(
        "/v1/game/session/verify", json={"ott": grant.ott, "provider_user_id": "1"}
    )

    assert_error(response, 401, "INVALID_API_KEY")


async def test_unknown_api_key(game_server, ott):
    grant = await ott()
    stranger = GameServer(game_server.client, "pw_live_not-a-real-key", game_server.game_id)

    assert_error(await stranger.verify(grant.ott), 401, "INVALID_API_KEY")


async def test_revoked_key_rejected(runtime, game_server, ott):
    key = (await runtime.records.list_api_keys(game_server.game_id))[0]
    await runtime.api_keys.revoke(key.key_id)

    assert_error(await game_server.verify((await ott()).ott), 401, "INVALID_API_KEY")


async def test_inactive_game_rejected(runtime, game_server, ott):
    grant = await ott()
    await runtime.records.set_game_active(game_server.game_id, False)
    runtime.api_keys._cache.clear()

    assert_error(await game_server.verify(grant.ott), 401, "INVALID_API_KEY")


async def test_key_stored_only_as_hash(runtime, game_server):
    keys = await runtime.records.list_api_keys(game_server.game_id)

    assert len(keys) == 1
    assert game_server.api_key not in keys[0].key_hash
    assert len(keys[0].key_hash) == 64
