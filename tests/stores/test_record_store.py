"""The `RecordStore` contract, run against SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid

import pytest

from playwave.domain.lifecycle import EndReason, GameSession, SessionEnd, SessionState, Timers
from playwave.stores.base import OttConsumed, PartnerCall, PcBusy, RecordStore
from tests.conftest import START
from tests.stores.conftest import GAME

TIMERS = Timers()


def new_record(pc_id: str = "pc-1", *, at: int = START) -> GameSession:
    return GameSession(
        game_session_id=f"gs_{uuid.uuid4()}",
        ott=str(uuid.uuid4()),
        game_id=GAME.game_id,
        api_key_id="key_0000000000000001",
        environment="live",
        provider_user_id="123456789",
        cafe_id="cafe_demo",
        pc_id=pc_id,
        launcher_session_id=None,
        rate_per_hour=GAME.rate_per_hour,
        billing_id=f"bill_{uuid.uuid4().hex[:12]}",
        state=SessionState.ACTIVE,
        started_at=at,
        last_heartbeat_at=at,
    )


def normal_end(at: int) -> SessionEnd:
    return SessionEnd(
        reason=EndReason.NORMAL,
        ended_at=at,
        play_duration_sec=(at - START) // 1000,
        billable_sec=(at - START) // 1000,
    )


def stop_call(session: GameSession) -> PartnerCall:
    return PartnerCall(
        idempotency_key=f"stop:{session.game_session_id}",
        kind="stop",
        game_session_id=session.game_session_id,
        payload={"billing_id": session.billing_id},
    )


def queued_call(index: int) -> PartnerCall:
    return PartnerCall(
        idempotency_key=f"report:test:{index}",
        kind="report",
        game_session_id=None,
        payload={"index": index},
        next_attempt_at=START,
    )


# Sessions.


async def test_create_and_get_session(record_store: RecordStore):
    session = new_record()

    await record_store.create_session(session)

    assert await record_store.get_session(session.game_session_id) == session
    assert await record_store.get_session_by_ott(session.ott) == session
    assert await record_store.live_session_on_pc(session.pc_id) == session


async def test_create_session_same_ott_is_consumed(record_store: RecordStore):
    first = new_record("pc-1")
    await record_store.create_session(first)
    second = new_record("pc-2").replace(ott=first.ott)

    with pytest.raises(OttConsumed) as raised:
        await record_store.create_session(second)

    assert raised.value.existing.game_session_id == first.game_session_id


async def test_create_session_busy_pc(record_store: RecordStore):
    await record_store.create_session(new_record("pc-1"))

    with pytest.raises(PcBusy):
        await record_store.create_session(new_record("pc-1"))


async def test_concurrent_creates_of_one_ott(record_store: RecordStore):
    ott = str(uuid.uuid4())
    candidates = [new_record(f"pc-{index}").replace(ott=ott) for index in range(20)]

    results = await asyncio.gather(
        *(record_store.create_session(candidate) for candidate in candidates),
        return_exceptions=True,
    )

    created = [result for result in results if result is None]
    consumed = [result for result in results if isinstance(result, OttConsumed)]
    assert len(created) == 1
    assert len(consumed) == 19


async def test_pc_free_after_end(record_store: RecordStore):
    first = new_record("pc-1")
    await record_store.create_session(first)
    await record_store.end_session(first.game_session_id, normal_end(START + 5000), None, [])

    second = new_record("pc-1")
    await record_store.create_session(second)

    assert await record_store.live_session_on_pc("pc-1") == second


async def test_end_session_exactly_once_concurrently(record_store: RecordStore):
    session = new_record()
    await record_store.create_session(session)

    results = await asyncio.gather(
        *(
            record_store.end_session(
                session.game_session_id,
                normal_end(START + 1000 * index),
                index,
                [stop_call(session)],
            )
            for index in range(1, 51)
        )
    )

    ended = [result for result in results if result is not None]
    assert len(ended) == 1
    stored = await record_store.get_session(session.game_session_id)
    assert stored == ended[0]
    assert stored.state is SessionState.ENDED
    calls = await record_store.claim_partner_calls(START + 3_600_000, 30_000, 100)
    assert [call.idempotency_key for call in calls] == [f"stop:{session.game_session_id}"]


async def test_ended_record_is_complete(record_store: RecordStore):
    session = new_record()
    await record_store.create_session(session)

    ended = await record_store.end_session(
        session.game_session_id, normal_end(START + 61_500), 70, []
    )

    assert ended is not None
    assert ended.ended_at == START + 61_500
    assert ended.end_reason is EndReason.NORMAL
    assert ended.play_duration_sec == 61
    assert ended.billable_sec == 61
    assert ended.client_play_duration_sec == 70
    assert await record_store.end_session(session.game_session_id, normal_end(START), 1, []) is None


async def test_mark_exhausted_once(record_store: RecordStore):
    session = new_record()
    await record_store.create_session(session)

    first = await record_store.mark_exhausted(session.game_session_id, START + 1000, START + 4000)
    second = await record_store.mark_exhausted(session.game_session_id, START + 2000, START + 5000)

    assert first is True
    assert second is False
    stored = await record_store.get_session(session.game_session_id)
    assert stored is not None
    assert stored.state is SessionState.GRACE
    assert stored.exhausted_at == START + 1000
    assert stored.grace_started_at == START + 4000


async def test_record_heartbeats_batch(record_store: RecordStore):
    sessions = [new_record(f"pc-{index}") for index in range(5)]
    for session in sessions:
        await record_store.create_session(session)
    ended = sessions[4]
    await record_store.end_session(ended.game_session_id, normal_end(START + 1000), None, [])

    updated = await record_store.record_heartbeats(
        [
            (sessions[0].game_session_id, START + 5000),
            (sessions[0].game_session_id, START + 9000),
            (sessions[1].game_session_id, START + 7000),
            (sessions[2].game_session_id, START - 1000),
            (ended.game_session_id, START + 9000),
            (f"gs_{uuid.uuid4()}", START + 9000),
        ]
    )

    assert updated == 2
    heartbeats = [
        (await record_store.get_session(session.game_session_id)).last_heartbeat_at
        for session in sessions
    ]
    assert heartbeats == [START + 9000, START + 7000, START, START, START]


async def test_overdue_sessions(record_store: RecordStore):
    fresh = new_record("pc-1", at=START + 200_000)
    silent = new_record("pc-2")
    exhausted = new_record("pc-3", at=START + 200_000)
    # Ran out at the same moment, but the server learned it later, so its grace is not over yet.
    noticed_late = new_record("pc-4", at=START + 200_000)
    for session in (fresh, silent, exhausted, noticed_late):
        await record_store.create_session(session)
    await record_store.mark_exhausted(exhausted.game_session_id, START + 100_000, START + 100_000)
    await record_store.mark_exhausted(
        noticed_late.game_session_id, START + 100_000, START + 150_000
    )

    overdue = await record_store.overdue_sessions(START + TIMERS.session_ttl_ms, TIMERS, 10)

    assert {session.game_session_id for session in overdue} == {
        silent.game_session_id,
        exhausted.game_session_id,
    }
    assert await record_store.count_live_sessions() == 4


# Partner call queue.


async def test_due_usage_reports_oldest_first(record_store: RecordStore):
    interval_ms = 60_000
    # Ids run opposite to start times, so ordering by id would return the wrong sessions.
    sessions = [
        new_record(f"pc-{index}", at=START + index * 1000).replace(
            game_session_id=f"gs_{9 - index}"
        )
        for index in range(5)
    ]
    for session in sessions:
        await record_store.create_session(session)
    rescheduled = sessions[4]
    await record_store.queue_usage_report(
        rescheduled.game_session_id,
        reported_sec=0,
        total_sec=0,
        next_report_at=START,
        call=None,
        at=START,
    )

    now = START + interval_ms + 10_000
    due = await record_store.due_usage_reports(now, interval_ms, 3)

    assert [session.game_session_id for session in due] == [
        rescheduled.game_session_id,
        sessions[0].game_session_id,
        sessions[1].game_session_id,
    ]


async def test_partner_queue_claim_complete_retry(record_store: RecordStore):
    await record_store.enqueue_partner_calls([queued_call(1), queued_call(2), queued_call(1)])

    claimed = await record_store.claim_partner_calls(START, 30_000, 10)
    within_lease = await record_store.claim_partner_calls(START + 29_999, 30_000, 10)

    assert [call.idempotency_key for call in claimed] == ["report:test:1", "report:test:2"]
    assert all(call.attempts == 1 for call in claimed)
    assert within_lease == []

    first, second = claimed
    assert await record_store.complete_partner_call(first.call_id, START + 10, {"ok": True})
    assert not await record_store.complete_partner_call(first.call_id, START + 20, {"ok": True})
    await record_store.retry_partner_call(second.call_id, START + 60_000, "partner timed out")

    assert await record_store.claim_partner_calls(START + 59_999, 30_000, 10) == []
    retried = await record_store.claim_partner_calls(START + 60_000, 30_000, 10)
    assert [call.call_id for call in retried] == [second.call_id]
    assert retried[0].attempts == 2
    assert retried[0].last_error == "partner timed out"


async def test_oldest_due_partner_call(record_store: RecordStore):
    later = dataclasses.replace(queued_call(2), next_attempt_at=START + 5_000)
    await record_store.enqueue_partner_calls([queued_call(1), later])

    assert await record_store.oldest_due_partner_call(START - 1) is None
    assert await record_store.oldest_due_partner_call(START + 10_000) == START

    claimed = await record_store.claim_partner_calls(START, 30_000, 1)
    await record_store.complete_partner_call(claimed[0].call_id, START + 10, {"ok": True})

    assert await record_store.oldest_due_partner_call(START + 10_000) == START + 5_000


async def test_partner_queue_lease_lapses(record_store: RecordStore):
    await record_store.enqueue_partner_calls([queued_call(1)])
    await record_store.claim_partner_calls(START, 30_000, 10)

    again = await record_store.claim_partner_calls(START + 30_000, 30_000, 10)

    assert [call.idempotency_key for call in again] == ["report:test:1"]
    assert again[0].attempts == 2


async def test_concurrent_claimers_share_queue(record_store: RecordStore):
    await record_store.enqueue_partner_calls([queued_call(index) for index in range(60)])

    async def claimer() -> list[int]:
        claimed: list[int] = []
        while batch := await record_store.claim_partner_calls(START, 30_000, 7):
            claimed.extend(call.call_id for call in batch if call.call_id is not None)
        return claimed

    results = await asyncio.gather(*(claimer() for _ in range(4)))

    every_id = [call_id for result in results for call_id in result]
    assert len(every_id) == 60
    assert len(set(every_id)) == 60
