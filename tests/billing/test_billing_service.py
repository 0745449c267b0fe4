"""Usage reports, refunds, exhaustion and the queue, with the simulator in-process over ASGI."""

from __future__ import annotations

import asyncio
import random

from prometheus_client import REGISTRY

from playwave.clock import ManualClock
from playwave.domain.billing import charge_for, seconds_covered
from playwave.domain.lifecycle import EndReason, SessionState
from playwave.partner.simulator import PartnerSimulator
from playwave.runtime import Runtime
from playwave.services.billing import Billing, QueuePolicy
from playwave.stores.base import Game, PartnerCall
from tests.billing.conftest import drain_queue, mint_cafe_ott
from tests.helpers import GameServer

PRICE = 1_200  # the simulator's default G-coin per hour


async def test_usage_report_queued_with_reported_sec(
    runtime: Runtime, game_server: GameServer, ott, clock: ManualClock, billing: Billing
):
    game_session_id = await game_server.start(await ott())
    clock.advance(60)
    assert (await game_server.heartbeat(game_session_id)).status_code == 200
    await runtime.jobs_by_name["flush_heartbeats"].step()

    assert await billing.queue_usage_reports() == 1
    assert await billing.queue_usage_reports() == 0

    record = await runtime.records.get_session(game_session_id)
    assert record is not None
    assert record.reported_sec == 60
    calls = await runtime.records.partner_calls_of([game_session_id])
    assert [call.idempotency_key for call in calls] == [f"usage:{game_session_id}:60"]
    assert calls[0].payload == {"billing_id": record.billing_id, "total_seconds": 60}


async def test_usage_report_charged_by_dispatch(
    runtime: Runtime,
    game_server: GameServer,
    ott,
    clock: ManualClock,
    billing: Billing,
    simulator: PartnerSimulator,
):
    game_session_id = await game_server.start(await ott())
    clock.advance(90)
    await game_server.heartbeat(game_session_id)
    await runtime.jobs_by_name["flush_heartbeats"].step()
    await billing.queue_usage_reports()

    assert await billing.dispatch_partner_calls() == 1

    record = await runtime.records.get_session(game_session_id)
    assert record is not None and record.billing_id is not None
    state = await simulator.sandbox.get_billing(record.billing_id)
    assert state is not None
    assert state.charged_seconds == 90
    assert state.charged_amount == charge_for(90, PRICE)
    (call,) = await runtime.records.partner_calls_of([game_session_id])
    assert call.completed_at is not None
    assert call.result is not None and call.result["charged_seconds"] == 90


async def test_usage_stops_at_heartbeat_deadline_and_stop_refunds(
    runtime: Runtime,
    game_server: GameServer,
    ott,
    clock: ManualClock,
    billing: Billing,
    simulator: PartnerSimulator,
):
    game_session_id = await game_server.start(await ott())
    balance_before = await simulator.sandbox.get_balance("cafe_demo")
    clock.advance(30)
    await game_server.heartbeat(game_session_id)
    await runtime.jobs_by_name["flush_heartbeats"].step()
    clock.advance(300)

    # Counted up to the heartbeat deadline (30 s + 240 s), never up to now.
    await billing.queue_usage_reports()
    await billing.dispatch_partner_calls()
    record = await runtime.records.get_session(game_session_id)
    assert record is not None and record.billing_id is not None
    assert record.reported_sec == 270

    # The timeout bills to the last heartbeat, and the stop refunds the provisional 240 s.
    await runtime.jobs_by_name["sweep_live"].step()
    ended = await runtime.records.get_session(game_session_id)
    assert ended is not None
    assert ended.end_reason is EndReason.HEARTBEAT_TIMEOUT
    assert ended.billable_sec == 30
    await drain_queue(runtime, billing, clock)

    state = await simulator.sandbox.get_billing(record.billing_id)
    assert state is not None
    assert state.stopped is True
    assert state.charged_seconds == 30
    assert state.charged_amount == charge_for(30, PRICE)
    balance_after = await simulator.sandbox.get_balance("cafe_demo")
    assert balance_before is not None and balance_after is not None
    assert balance_before - balance_after == charge_for(30, PRICE)


async def start_low_cafe_session(
    runtime: Runtime, game_server: GameServer, game: Game, simulator: PartnerSimulator
) -> str:
    """Start a session at a cafe whose 50 G-coin cover 152 s of play, and return its id."""
    # 50 G-coin at 1,200 per hour covers 152 s: 152 s cost 50.67, rounded down to 50.
    await simulator.sandbox.add_cafe(name="Low Cafe", ip=None, balance=50, cafe_id="cafe_low")
    grant = await mint_cafe_ott(runtime, game.game_id, "pc-low", "cafe_low")
    return await game_server.start(grant)


async def test_exhaustion_found_within_seconds(
    runtime: Runtime,
    game_server: GameServer,
    game: Game,
    clock: ManualClock,
    billing: Billing,
    simulator: PartnerSimulator,
):
    game_session_id = await start_low_cafe_session(runtime, game_server, game, simulator)
    started_at = clock.now()

    found_at = None
    for second in range(1, 300):
        clock.advance(1)
        if second % 30 == 0:
            await game_server.heartbeat(game_session_id)
            await runtime.jobs_by_name["flush_heartbeats"].step()
        if await billing.queue_usage_reports() == 0:
            continue
        await billing.dispatch_partner_calls()
        record = await runtime.records.get_session(game_session_id)
        assert record is not None
        if record.exhausted_at is not None:
            found_at = clock.now()
            break

    assert seconds_covered(50, PRICE, 0) == 152
    assert record.exhausted_at == started_at + 152_000
    assert record.state is SessionState.GRACE
    assert found_at is not None
    assert found_at - record.exhausted_at <= 3_000


async def test_grace_starts_when_exhaustion_learned(
    runtime: Runtime,
    game_server: GameServer,
    game: Game,
    clock: ManualClock,
    billing: Billing,
    simulator: PartnerSimulator,
):
    # The G-coin covers 152 s, but the server receives the usage report result only at 300 s.
    game_session_id = await start_low_cafe_session(runtime, game_server, game, simulator)
    started_at = clock.now()

    for _ in range(10):
        clock.advance(30)
        heartbeat = await game_server.heartbeat(game_session_id)
        assert heartbeat.json()["data"]["result"] == "OK"
    await runtime.jobs_by_name["flush_heartbeats"].step()
    last_ok_heartbeat = clock.now()

    await billing.queue_usage_reports()
    await billing.dispatch_partner_calls()

    record = await runtime.records.get_session(game_session_id)
    assert record is not None
    assert record.exhausted_at == started_at + 152_000
    assert record.grace_started_at == last_ok_heartbeat
    heartbeat = (await game_server.heartbeat(game_session_id)).json()["data"]
    assert heartbeat["result"] == "CHARGE_EXHAUSTED"
    assert heartbeat["next_heartbeat_in"] == 120

    clock.advance(119)
    await runtime.jobs_by_name["sweep_live"].step()
    still_live = await runtime.records.get_session(game_session_id)
    assert still_live is not None and still_live.ended_at is None

    clock.advance(1)
    await runtime.jobs_by_name["sweep_live"].step()
    ended = await runtime.records.get_session(game_session_id)
    assert ended is not None
    assert ended.end_reason is EndReason.CHARGE_EXHAUSTED
    assert ended.ended_at == last_ok_heartbeat + 120_000
    assert ended.play_duration_sec == 420
    assert ended.billable_sec == 152

    await drain_queue(runtime, billing, clock)
    state = await simulator.sandbox.get_billing(ended.billing_id or "")
    assert state is not None and state.charged_seconds == 152


async def end_played_sessions(game_server: GameServer, ott, clock: ManualClock, count: int):
    """Start `count` sessions on their own PCs, play 45 s and end them; return their ids."""
    sessions = [await game_server.start(await ott(f"pc-{number}")) for number in range(count)]
    clock.advance(45)
    for game_session_id in sessions:
        assert (await game_server.end(game_session_id)).status_code == 200
    return sessions


async def test_two_dispatchers_complete_each_call_once(
    runtime: Runtime,
    game_server: GameServer,
    ott,
    clock: ManualClock,
    simulator: PartnerSimulator,
):
    sessions = await end_played_sessions(game_server, ott, clock, 20)

    workers = [
        Billing(
            runtime.records,
            runtime.live,
            runtime.partner,
            clock,
            runtime.settings.timers,
            policy=QueuePolicy(batch_size=7, concurrency=3),
            rng=random.Random(seed),
        )
        for seed in (1, 2)
    ]
    for _ in range(10):
        await asyncio.gather(*(worker.dispatch_partner_calls() for worker in workers))

    assert await runtime.records.count_pending_partner_calls() == 0
    calls = await runtime.records.partner_calls_of(sessions)
    assert len(calls) == 20
    assert all(call.attempts == 1 for call in calls)
    assert max(simulator.sandbox.applications.values()) == 1


async def test_rejected_call_completed_not_retried(
    runtime: Runtime, clock: ManualClock, billing: Billing
):
    call = PartnerCall(
        idempotency_key="stop:gs_00000000-0000-4000-8000-000000000000",
        kind="stop",
        game_session_id=None,
        payload={"billing_id": "bill_unknown", "billable_seconds": 10},
        next_attempt_at=clock.now(),
    )
    await runtime.records.enqueue_partner_calls([call])

    assert await billing.dispatch_partner_calls() == 1
    clock.advance(600)
    assert await billing.dispatch_partner_calls() == 0
    assert await runtime.records.count_pending_partner_calls() == 0


async def test_partner_down_keeps_sessions_working(
    runtime: Runtime,
    game_server: GameServer,
    ott,
    clock: ManualClock,
    billing: Billing,
    simulator: PartnerSimulator,
):
    sessions = [await game_server.start(await ott(f"pc-{number}")) for number in range(5)]
    simulator.faults.down = True
    clock.advance(100)

    for game_session_id in sessions:
        heartbeat = await game_server.heartbeat(game_session_id)
        assert heartbeat.status_code == 200
        assert heartbeat.json()["data"]["result"] == "OK"
    await runtime.jobs_by_name["flush_heartbeats"].step()
    await billing.queue_usage_reports()
    for game_session_id in sessions:
        assert (await game_server.end(game_session_id)).status_code == 200

    await billing.dispatch_partner_calls()
    assert await runtime.records.count_pending_partner_calls() == 10

    simulator.faults.down = False
    await drain_queue(runtime, billing, clock)
    for game_session_id in sessions:
        record = await runtime.records.get_session(game_session_id)
        assert record is not None and record.billing_id is not None
        state = await simulator.sandbox.get_billing(record.billing_id)
        assert state is not None
        assert state.stopped is True
        assert state.charged_seconds == record.billable_sec == 100


async def test_queue_lag_gauge_tracks_oldest_due_call(
    runtime: Runtime,
    game_server: GameServer,
    ott,
    clock: ManualClock,
    billing: Billing,
    simulator: PartnerSimulator,
):
    game_session_id = await game_server.start(await ott("pc-1"))
    simulator.faults.down = True
    clock.advance(100)
    assert (await game_server.end(game_session_id)).status_code == 200
    clock.advance(30)

    await billing.update_queue_gauge()
    assert REGISTRY.get_sample_value("playwave_partner_queue_lag_seconds") == 30.0

    simulator.faults.down = False
    await drain_queue(runtime, billing, clock)
    await billing.update_queue_gauge()
    assert REGISTRY.get_sample_value("playwave_partner_queue_lag_seconds") == 0.0


async def test_full_batches_dispatched_back_to_back(
    runtime: Runtime,
    game_server: GameServer,
    ott,
    clock: ManualClock,
    simulator: PartnerSimulator,
):
    await end_played_sessions(game_server, ott, clock, 20)
    pending = await runtime.records.count_pending_partner_calls()
    billing = Billing(
        runtime.records,
        runtime.live,
        runtime.partner,
        clock,
        runtime.settings.timers,
        policy=QueuePolicy(batch_size=5, concurrency=2, max_rounds=3),
    )

    first = await billing.dispatch_partner_calls()
    rest = await billing.dispatch_partner_calls()

    assert first == 15
    assert first + rest == pending
    assert await runtime.records.count_pending_partner_calls() == 0
