"""Billing against `playwave partner-sim` running as its own HTTP process on loopback."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator

import httpx
import pytest

from playwave.api.app import create_app
from playwave.clock import ManualClock
from playwave.domain.billing import charge_for, seconds_covered
from playwave.domain.lifecycle import EndReason
from playwave.runtime import Runtime, build_runtime
from playwave.services.billing import Billing
from playwave.services.ledger import build_ledger, check_against_partner, check_ledger
from playwave.settings import Settings
from playwave.stores.base import Game
from tests.billing.conftest import (
    SimulatorAdmin,
    drain_queue,
    fast_partner,
    gather_bounded,
    mint_cafe_ott,
)
from tests.helpers import GameServer

GAME_ID = "game_0000000000b1"
# 1,000 G-coin per hour is not a whole number per second, so rounding shows.
PRICE = 1_000


@pytest.fixture
async def process_runtime(
    embedded_settings: Settings, clock: ManualClock, partner_process: str
) -> AsyncIterator[Runtime]:
    partner = fast_partner(partner_process, read_timeout=0.2, max_attempts=3)
    runtime = await build_runtime(embedded_settings, clock=clock, partner=partner)
    yield runtime
    await runtime.close()


@pytest.fixture
async def server(process_runtime: Runtime, admin: SimulatorAdmin) -> AsyncIterator[GameServer]:
    game = Game(GAME_ID, "Tycoon", rate_per_hour=600, active=True, created_at=0)
    await process_runtime.records.create_game(game)
    await admin.set_prices({GAME_ID: PRICE})
    issued = await process_runtime.api_keys.issue(GAME_ID, "live")
    app = create_app(runtime=process_runtime, run_jobs=False)
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://playwave.test") as client:
        yield GameServer(client, issued.api_key, GAME_ID)


@pytest.fixture
def process_billing(process_runtime: Runtime) -> Billing:
    return Billing(
        process_runtime.records,
        process_runtime.live,
        process_runtime.partner,
        process_runtime.clock,
        process_runtime.settings.timers,
        rng=random.Random(9),
    )


async def start_session(runtime: Runtime, server: GameServer, pc_id: str, cafe_id: str) -> str:
    """Verify a fresh OTT, retrying a 503 as a game server does; return the session id."""
    grant = await mint_cafe_ott(runtime, GAME_ID, pc_id, cafe_id)
    for _ in range(20):
        response = await server.verify(grant.ott)
        if response.status_code == 503:
            continue
        data = response.json()["data"]
        assert data["is_valid"] is True, data
        return data["game_session_id"]
    raise AssertionError(f"verify of {pc_id} answered 503 twenty times")


def billings_by_id(state: dict) -> dict[str, dict]:
    return {billing["billing_id"]: billing for billing in state["billings"]}


async def test_charge_follows_rounding_rule(
    process_runtime: Runtime,
    server: GameServer,
    clock: ManualClock,
    process_billing: Billing,
    admin: SimulatorAdmin,
):
    await admin.add_cafe("cafe_round", balance=1_000_000)
    durations = [1, 3, 4, 59, 61, 899, 3_599, 3_601]
    sessions = {}
    for number, seconds in enumerate(durations):
        game_session_id = await start_session(process_runtime, server, f"pc-{number}", "cafe_round")
        sessions[game_session_id] = seconds

    # Move time in steps of at most 100 s, heartbeating the live sessions so none times out,
    # and end each session exactly at its duration.
    elapsed = 0
    for seconds in sorted(set(durations)):
        while elapsed < seconds:
            step = min(100, seconds - elapsed)
            clock.advance(step)
            elapsed += step
            for game_session_id, duration in sessions.items():
                if duration > elapsed:
                    assert (await server.heartbeat(game_session_id)).status_code == 200
            await process_runtime.jobs_by_name["flush_heartbeats"].step()
            await process_billing.queue_usage_reports()
        for game_session_id, duration in sessions.items():
            if duration == seconds:
                assert (await server.end(game_session_id)).status_code == 200
    await drain_queue(process_runtime, process_billing, clock)

    billings = billings_by_id(await admin.state())
    for game_session_id, seconds in sessions.items():
        record = await process_runtime.records.get_session(game_session_id)
        assert record is not None
        assert record.billable_sec == seconds
        assert billings[record.billing_id]["charged_seconds"] == seconds
        assert billings[record.billing_id]["charged_amount"] == seconds * PRICE // 3600
        assert billings[record.billing_id]["stopped"] is True


@pytest.mark.slow
async def test_faults_charge_each_key_once(
    process_runtime: Runtime,
    server: GameServer,
    clock: ManualClock,
    process_billing: Billing,
    admin: SimulatorAdmin,
):
    session_count = 200
    await admin.add_cafe("cafe_busy", balance=10_000_000)
    await admin.set_faults(
        error_rate=0.2, timeout_rate=0.1, timeout_sec=0.4, error_after_commit_rate=0.1
    )
    sessions = await gather_bounded(
        16,
        [
            start_session(process_runtime, server, f"pc-{number}", "cafe_busy")
            for number in range(session_count)
        ],
    )
    clock.advance(90)
    await gather_bounded(16, [server.heartbeat(game_session_id) for game_session_id in sessions])
    await process_runtime.jobs_by_name["flush_heartbeats"].step()
    assert await process_billing.queue_usage_reports() == session_count
    await process_billing.dispatch_partner_calls()

    # Half end normally at 120 s; the others stop heartbeating and time out at 90 s.
    clock.advance(30)
    ended = await gather_bounded(16, [server.end(gs) for gs in sessions[: session_count // 2]])
    assert {response.status_code for response in ended} == {200}
    clock.advance(240)
    await process_runtime.jobs_by_name["sweep_live"].step()
    await drain_queue(process_runtime, process_billing, clock)

    state = await admin.state()
    assert state["requests"]["error_after_commit"] > 0
    assert state["requests"]["timeout"] > 0
    assert state["max_applications_per_key"] == 1
    assert state["keys_applied_more_than_once"] == []

    calls = await process_runtime.records.partner_calls_of(sessions)
    queued_keys = {call.idempotency_key for call in calls}
    applied_keys = {key for key in state["keys"] if not key.startswith("start:")}
    assert applied_keys == queued_keys
    assert len(calls) == 2 * session_count

    await admin.set_faults(error_rate=0.0, timeout_rate=0.0, error_after_commit_rate=0.0)
    ledger = await build_ledger(process_runtime.records)
    billings = billings_by_id(state)
    assert check_ledger(ledger) == []
    assert await check_against_partner(ledger, process_runtime.partner) == []
    assert ledger.charged_amount == state["applied_amount"]
    assert ledger.charged_amount == sum(billing["charged_amount"] for billing in billings.values())
    for game_session_id in sessions:
        record = await process_runtime.records.get_session(game_session_id)
        assert record is not None
        expected = 120 if record.end_reason is EndReason.NORMAL else 90
        assert record.billable_sec == expected
        assert billings[record.billing_id]["charged_seconds"] == expected
        assert billings[record.billing_id]["charged_amount"] == charge_for(expected, PRICE)


async def test_exhaustion_then_end_after_grace(
    process_runtime: Runtime,
    server: GameServer,
    clock: ManualClock,
    process_billing: Billing,
    admin: SimulatorAdmin,
):
    # 40 G-coin at 1,000 per hour covers 147 s (147 s cost 40.8, rounded down to 40).
    await admin.add_cafe("cafe_low", balance=40)
    covered = seconds_covered(40, PRICE, 0)
    assert covered == 147
    game_session_id = await start_session(process_runtime, server, "pc-low", "cafe_low")
    started_at = clock.now()

    results = []
    for second in range(1, 240):
        clock.advance(1)
        if second % 30 == 0:
            heartbeat = await server.heartbeat(game_session_id)
            results.append(heartbeat.json()["data"]["result"])
            await process_runtime.jobs_by_name["flush_heartbeats"].step()
        if await process_billing.queue_usage_reports():
            await process_billing.dispatch_partner_calls()
        record = await process_runtime.records.get_session(game_session_id)
        assert record is not None
        if record.exhausted_at is not None:
            break
    exhausted_at = started_at + covered * 1000
    assert record.exhausted_at == exhausted_at
    assert clock.now() - exhausted_at <= 3_000
    assert record.grace_started_at == clock.now()
    assert set(results) == {"OK"}

    grace_ends_at = record.grace_started_at + 120_000
    clock.set(grace_ends_at - 1_000)
    heartbeat = await server.heartbeat(game_session_id)
    assert heartbeat.status_code == 200
    assert heartbeat.json()["data"]["result"] == "CHARGE_EXHAUSTED"
    await process_runtime.jobs_by_name["sweep_live"].step()
    still_live = await process_runtime.records.get_session(game_session_id)
    assert still_live is not None and still_live.ended_at is None

    clock.set(grace_ends_at)
    await process_runtime.jobs_by_name["sweep_live"].step()
    ended = await process_runtime.records.get_session(game_session_id)
    assert ended is not None
    assert ended.end_reason is EndReason.CHARGE_EXHAUSTED
    assert ended.ended_at == grace_ends_at
    assert ended.billable_sec == covered
    after_end = await server.heartbeat(game_session_id)
    assert after_end.status_code == 410
    assert after_end.json()["error"]["code"] == "SESSION_ENDED"

    await drain_queue(process_runtime, process_billing, clock)
    billing = billings_by_id(await admin.state())[ended.billing_id]
    assert billing["charged_seconds"] == covered
    assert billing["charged_amount"] == 40
    cafes = {cafe["cafe_id"]: cafe for cafe in (await admin.state())["cafes"]}
    assert cafes["cafe_low"]["balance"] == 0


async def test_partner_down_then_back_stops_all(
    process_runtime: Runtime,
    server: GameServer,
    clock: ManualClock,
    process_billing: Billing,
    admin: SimulatorAdmin,
):
    await admin.add_cafe("cafe_down", balance=1_000_000)
    sessions = [
        await start_session(process_runtime, server, f"pc-{number}", "cafe_down")
        for number in range(30)
    ]
    await admin.set_faults(down=True)

    clock.advance(100)
    for game_session_id in sessions[:20]:
        heartbeat = await server.heartbeat(game_session_id)
        assert heartbeat.status_code == 200
        assert heartbeat.json()["data"]["result"] == "OK"
    await process_runtime.jobs_by_name["flush_heartbeats"].step()
    await process_billing.queue_usage_reports()
    for game_session_id in sessions[:10]:
        assert (await server.end(game_session_id)).status_code == 200
    for _ in range(3):
        await process_billing.dispatch_partner_calls()
        clock.advance(61)
    for game_session_id in sessions[10:20]:
        assert (await server.heartbeat(game_session_id)).status_code == 200
    await process_runtime.jobs_by_name["flush_heartbeats"].step()
    # The ten silent sessions time out; the ten heartbeating ones stay live.
    clock.advance(60)
    await process_runtime.jobs_by_name["sweep_live"].step()
    pending = await process_runtime.records.count_pending_partner_calls()
    assert pending > 0
    assert (await admin.state())["billings"][0]["charged_seconds"] == 0

    await admin.set_faults(down=False)
    for game_session_id in sessions[10:20]:
        assert (await server.end(game_session_id)).status_code == 200
    await drain_queue(process_runtime, process_billing, clock)

    billings = billings_by_id(await admin.state())
    for game_session_id in sessions:
        record = await process_runtime.records.get_session(game_session_id)
        assert record is not None and record.ended_at is not None
        assert billings[record.billing_id]["stopped"] is True
        assert billings[record.billing_id]["charged_seconds"] == record.billable_sec
    ledger = await build_ledger(process_runtime.records)
    assert check_ledger(ledger) == []
    assert await check_against_partner(ledger, process_runtime.partner) == []
