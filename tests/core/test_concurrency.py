"""Concurrent requests: one session per OTT, one end per session."""

from __future__ import annotations

import asyncio
from collections import Counter

from tests.helpers import GameServer


async def test_hundred_verifies_create_one_session(runtime, game_server: GameServer, ott):
    grant = await ott()

    responses = await asyncio.gather(
        *(game_server.verify(grant.ott, user=str(1000 + n)) for n in range(100))
    )
    outcomes = [response.json()["data"] for response in responses]
    valid = [outcome for outcome in outcomes if outcome["is_valid"]]
    reasons = Counter(outcome.get("reason") for outcome in outcomes if not outcome["is_valid"])

    assert all(response.status_code == 200 for response in responses)
    assert len(valid) == 1
    assert reasons == {"OTT_ALREADY_USED": 99}
    assert await runtime.records.count_live_sessions() == 1


async def test_same_user_verifies_share_session(runtime, game_server: GameServer, ott):
    grant = await ott()

    responses = await asyncio.gather(*(game_server.verify(grant.ott) for _ in range(50)))
    session_ids = {response.json()["data"]["game_session_id"] for response in responses}

    assert len(session_ids) == 1
    assert await runtime.records.count_live_sessions() == 1


async def test_concurrent_ends_one_success(runtime, game_server: GameServer, ott, clock):
    session_id = await game_server.start(await ott())
    clock.advance(30)

    responses = await asyncio.gather(*(game_server.end(session_id) for _ in range(30)))
    statuses = Counter(response.status_code for response in responses)

    assert statuses == {200: 1, 409: 29}
    record = await runtime.records.get_session(session_id)
    assert record.end_reason == "NORMAL"


async def test_end_races_sweep_once(runtime, game_server: GameServer, ott, clock):
    session_ids = [await game_server.start(await ott(pc_id=f"pc-{n}")) for n in range(20)]
    clock.advance(240)

    sweep = runtime.jobs_by_name["sweep_live"].step()
    ends = [game_server.end(session_id) for session_id in session_ids]
    results = await asyncio.gather(sweep, *ends)

    statuses = Counter(response.status_code for response in results[1:])
    assert statuses == {409: 20}
    for session_id in session_ids:
        record = await runtime.records.get_session(session_id)
        assert record.end_reason == "HEARTBEAT_TIMEOUT"
    calls = await runtime.records.claim_partner_calls(clock.now(), 60_000, 1000)
    assert sorted(call.idempotency_key for call in calls) == sorted(
        f"stop:{session_id}" for session_id in session_ids
    )
