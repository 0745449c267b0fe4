"""The `LiveStore` contract, run against every backend: SQL on SQLite and PostgreSQL, Redis
standalone and Redis Cluster."""

from __future__ import annotations

import asyncio
import uuid

from playwave.clock import ManualClock
from playwave.domain.lifecycle import EndReason, SessionState, Timers
from playwave.domain.live import LiveSession, TouchStatus
from playwave.stores.base import LiveStore, OttGrant
from tests.conftest import START

TIMERS = Timers()
GAME_ID = "game_0000000000b1"
USER = "123456789"
LEASE_MS = 30_000


def new_session_id() -> str:
    return f"gs_{uuid.uuid4()}"


def live_session(game_session_id: str | None = None, *, at: int = START, pc_id: str = "pc-1"):
    return LiveSession(
        game_session_id=game_session_id or new_session_id(),
        game_id=GAME_ID,
        provider_user_id=USER,
        pc_id=pc_id,
        started_at=at,
        last_heartbeat_at=at,
        grace_started_at=None,
        state=SessionState.ACTIVE,
        deadline=at + TIMERS.session_ttl_ms,
    )


async def put_live(store: LiveStore, *, at: int = START) -> LiveSession:
    session = live_session(at=at)
    await store.put_session(session)
    return session


# One-time tokens.


async def test_ott_put_get_delete(live_store: LiveStore):
    grant = OttGrant(
        ott=str(uuid.uuid4()),
        game_id=GAME_ID,
        pc_id="pc-1",
        cafe_id="cafe_demo",
        launcher_session_id="ls_" + str(uuid.uuid4()),
        issued_at=START,
        expires_at=START + TIMERS.ott_ttl_ms,
    )
    await live_store.put_ott(grant)

    assert await live_store.get_ott(grant.ott, START + 1) == grant
    assert await live_store.get_ott(str(uuid.uuid4()), START + 1) is None

    await live_store.delete_ott(grant.ott)
    assert await live_store.get_ott(grant.ott, START + 1) is None


async def test_ott_expires_at_expiry(live_store: LiveStore):
    grant = OttGrant(
        ott=str(uuid.uuid4()),
        game_id=GAME_ID,
        pc_id="pc-1",
        cafe_id="cafe_demo",
        launcher_session_id=None,
        issued_at=START,
        expires_at=START + TIMERS.ott_ttl_ms,
    )
    await live_store.put_ott(grant)

    assert await live_store.get_ott(grant.ott, grant.expires_at - 1) == grant
    assert await live_store.get_ott(grant.ott, grant.expires_at) is None


# Sessions and touch.


async def test_session_round_trip(live_store: LiveStore):
    session = live_session().replace(grace_started_at=START + 5, state=SessionState.GRACE)
    await live_store.put_session(session)

    assert await live_store.get_session(session.game_session_id) == session
    assert await live_store.get_session(new_session_id()) is None


async def test_touch_missing(live_store: LiveStore):
    outcome = await live_store.touch(new_session_id(), GAME_ID, USER, START, TIMERS)

    assert outcome.status is TouchStatus.MISSING
    assert outcome.session is None


async def test_touch_renews_deadline(live_store: LiveStore):
    session = await put_live(live_store)
    now = START + 100_000

    outcome = await live_store.touch(session.game_session_id, GAME_ID, USER, now, TIMERS)

    assert outcome.status is TouchStatus.TOUCHED
    assert outcome.session is not None
    assert outcome.session.last_heartbeat_at == now
    assert outcome.session.deadline == now + TIMERS.session_ttl_ms
    stored = await live_store.get_session(session.game_session_id)
    assert stored == outcome.session


async def test_touch_never_lowers_heartbeat(live_store: LiveStore):
    session = await put_live(live_store)
    await live_store.touch(session.game_session_id, GAME_ID, USER, START + 50_000, TIMERS)

    outcome = await live_store.touch(session.game_session_id, GAME_ID, USER, START + 20_000, TIMERS)

    assert outcome.status is TouchStatus.TOUCHED
    assert outcome.session is not None
    assert outcome.session.last_heartbeat_at == START + 50_000
    assert outcome.session.deadline == START + 50_000 + TIMERS.session_ttl_ms


async def test_touch_other_game_or_user_is_mismatch(live_store: LiveStore):
    session = await put_live(live_store)

    other_game = await live_store.touch(
        session.game_session_id, "game_0000000000ff", USER, START + 1000, TIMERS
    )
    other_user = await live_store.touch(
        session.game_session_id, GAME_ID, "987654321", START + 1000, TIMERS
    )

    assert other_game.status is TouchStatus.MISMATCH
    assert other_user.status is TouchStatus.MISMATCH
    assert await live_store.get_session(session.game_session_id) == session


async def test_touch_after_deadline_is_expired(live_store: LiveStore):
    session = await put_live(live_store)

    outcome = await live_store.touch(
        session.game_session_id, GAME_ID, USER, session.deadline, TIMERS
    )

    assert outcome.status is TouchStatus.EXPIRED
    assert await live_store.get_session(session.game_session_id) == session


async def test_touch_in_grace_keeps_grace_deadline(live_store: LiveStore):
    session = await put_live(live_store)
    grace_started_at = START + 10_000
    await live_store.start_grace(session.game_session_id, grace_started_at, TIMERS)

    outcome = await live_store.touch(session.game_session_id, GAME_ID, USER, START + 60_000, TIMERS)

    assert outcome.status is TouchStatus.TOUCHED
    assert outcome.session is not None
    assert outcome.session.state is SessionState.GRACE
    assert outcome.session.grace_started_at == grace_started_at
    assert outcome.session.deadline == grace_started_at + TIMERS.charge_grace_ms


async def test_touch_ending_and_ended(live_store: LiveStore):
    ending = await put_live(live_store)
    ended = await put_live(live_store)
    await live_store.mark_ending(ending.game_session_id, EndReason.NORMAL, START + 10_000)
    await live_store.mark_ended(ended.game_session_id, EndReason.NORMAL, START + 600_000)

    ending_outcome = await live_store.touch(ending.game_session_id, GAME_ID, USER, START, TIMERS)
    ended_outcome = await live_store.touch(ended.game_session_id, GAME_ID, USER, START, TIMERS)

    assert ending_outcome.status is TouchStatus.ENDING
    assert ended_outcome.status is TouchStatus.ENDED
    assert ended_outcome.session is not None
    assert ended_outcome.session.end_reason is EndReason.NORMAL


# Exhaustion, ending and tombstones.


async def test_start_grace_only_once(live_store: LiveStore):
    session = await put_live(live_store)

    await live_store.start_grace(session.game_session_id, START + 10_000, TIMERS)
    await live_store.start_grace(session.game_session_id, START + 20_000, TIMERS)

    stored = await live_store.get_session(session.game_session_id)
    assert stored is not None
    assert stored.state is SessionState.GRACE
    assert stored.grace_started_at == START + 10_000
    assert stored.deadline == START + 10_000 + TIMERS.charge_grace_ms


async def test_mark_ending_comes_due_at_retry(live_store: LiveStore):
    session = await put_live(live_store)
    retry_at = START + 10_000

    await live_store.mark_ending(session.game_session_id, EndReason.HEARTBEAT_TIMEOUT, retry_at)

    stored = await live_store.get_session(session.game_session_id)
    assert stored is not None
    assert stored.state is SessionState.ENDING
    assert stored.end_reason is EndReason.HEARTBEAT_TIMEOUT
    assert await live_store.due_sessions(retry_at - 1, 10, LEASE_MS) == []
    assert await live_store.due_sessions(retry_at, 10, LEASE_MS) == [session.game_session_id]


async def test_mark_ended_leaves_tombstone(live_store: LiveStore):
    session = await put_live(live_store)

    await live_store.mark_ended(
        session.game_session_id, EndReason.SESSION_REPLACED, START + 600_000
    )

    stored = await live_store.get_session(session.game_session_id)
    assert stored is not None
    assert stored.state is SessionState.ENDED
    assert stored.end_reason is EndReason.SESSION_REPLACED
    assert await live_store.due_sessions(session.deadline + 1, 10, LEASE_MS) == []


async def test_tombstone_never_revived(live_store: LiveStore):
    session = await put_live(live_store)
    await live_store.mark_ended(session.game_session_id, EndReason.NORMAL, START + 600_000)

    await live_store.put_session(session)

    stored = await live_store.get_session(session.game_session_id)
    assert stored is not None
    assert stored.state is SessionState.ENDED


async def test_mark_ending_never_reopens_tombstone(live_store: LiveStore):
    session = await put_live(live_store)
    await live_store.mark_ended(session.game_session_id, EndReason.NORMAL, START + 600_000)

    await live_store.mark_ending(session.game_session_id, EndReason.HEARTBEAT_TIMEOUT, START)

    stored = await live_store.get_session(session.game_session_id)
    assert stored is not None
    assert stored.state is SessionState.ENDED
    assert stored.end_reason is EndReason.NORMAL


async def test_marks_on_missing_session_do_nothing(live_store: LiveStore):
    game_session_id = new_session_id()

    await live_store.start_grace(game_session_id, START, TIMERS)
    await live_store.mark_ending(game_session_id, EndReason.NORMAL, START)
    await live_store.mark_ended(game_session_id, EndReason.NORMAL, START + 600_000)

    assert await live_store.get_session(game_session_id) is None
    assert await live_store.due_sessions(START + 1, 10, LEASE_MS) == []


# Due sessions and leases.


async def test_due_sessions_at_deadline(live_store: LiveStore):
    session = await put_live(live_store)

    assert await live_store.due_sessions(session.deadline - 1, 10, LEASE_MS) == []
    assert await live_store.due_sessions(session.deadline, 10, LEASE_MS) == [
        session.game_session_id
    ]


async def test_due_sessions_lease_hides_until_lapse(live_store: LiveStore):
    session = await put_live(live_store)
    now = session.deadline

    first = await live_store.due_sessions(now, 10, LEASE_MS)
    within_lease = await live_store.due_sessions(now + LEASE_MS - 1, 10, LEASE_MS)
    after_lease = await live_store.due_sessions(now + LEASE_MS, 10, LEASE_MS)

    assert first == [session.game_session_id]
    assert within_lease == []
    assert after_lease == [session.game_session_id]


async def test_due_sessions_respects_limit(live_store: LiveStore):
    sessions = [await put_live(live_store) for _ in range(7)]
    now = sessions[0].deadline

    first = await live_store.due_sessions(now, 3, LEASE_MS)
    second = await live_store.due_sessions(now, 10, LEASE_MS)

    assert len(first) == 3
    assert len(second) == 4
    assert set(first) | set(second) == {session.game_session_id for session in sessions}


async def test_concurrent_sweepers_never_share_an_id(live_store: LiveStore):
    sessions = [await put_live(live_store) for _ in range(120)]
    now = sessions[0].deadline

    async def sweeper() -> list[str]:
        taken: list[str] = []
        while batch := await live_store.due_sessions(now, 7, LEASE_MS):
            taken.extend(batch)
        return taken

    results = await asyncio.gather(*(sweeper() for _ in range(4)))

    every_id = [game_session_id for result in results for game_session_id in result]
    assert len(every_id) == len(set(every_id))
    assert set(every_id) == {session.game_session_id for session in sessions}


async def test_touch_after_lease_rearms(live_store: LiveStore):
    session = await put_live(live_store)
    now = START + 1000
    await live_store.touch(session.game_session_id, GAME_ID, USER, now, TIMERS)

    assert await live_store.due_sessions(session.deadline, 10, LEASE_MS) == []
    assert await live_store.due_sessions(now + TIMERS.session_ttl_ms, 10, LEASE_MS) == [
        session.game_session_id
    ]


# Heartbeats queued for the flush.


async def test_take_heartbeats_once(live_store: LiveStore):
    first = await put_live(live_store)
    second = await put_live(live_store)
    untouched = await put_live(live_store)
    await live_store.touch(first.game_session_id, GAME_ID, USER, START + 1000, TIMERS)
    await live_store.touch(second.game_session_id, GAME_ID, USER, START + 2000, TIMERS)
    await live_store.touch(second.game_session_id, GAME_ID, USER, START + 3000, TIMERS)

    beats = await live_store.take_heartbeats(100)

    assert sorted(beats) == sorted(
        [(first.game_session_id, START + 1000), (second.game_session_id, START + 3000)]
    )
    assert untouched.game_session_id not in dict(beats)
    assert await live_store.take_heartbeats(100) == []


async def test_take_heartbeats_respects_limit(live_store: LiveStore):
    sessions = [await put_live(live_store) for _ in range(5)]
    for session in sessions:
        await live_store.touch(session.game_session_id, GAME_ID, USER, START + 1000, TIMERS)

    first = await live_store.take_heartbeats(2)
    rest = await live_store.take_heartbeats(100)

    assert len(first) == 2
    assert len(rest) == 3
    assert {beat[0] for beat in first + rest} == {s.game_session_id for s in sessions}


async def test_ended_session_heartbeat_not_taken(live_store: LiveStore):
    session = await put_live(live_store)
    await live_store.touch(session.game_session_id, GAME_ID, USER, START + 1000, TIMERS)

    await live_store.mark_ended(session.game_session_id, EndReason.NORMAL, START + 600_000)

    assert await live_store.take_heartbeats(100) == []


# Signature nonces.


async def test_nonce_once_within_window(live_store: LiveStore):
    expires_at = START + 600_000

    first = await live_store.remember_nonce("lk_1", "nonce-0123456789abcdef", expires_at, START)
    again = await live_store.remember_nonce(
        "lk_1", "nonce-0123456789abcdef", expires_at + 5000, START + 5000
    )
    other_key = await live_store.remember_nonce("lk_2", "nonce-0123456789abcdef", expires_at, START)

    assert first is True
    assert again is False
    assert other_key is True


async def test_nonce_accepted_again_after_expiry(live_store: LiveStore):
    expires_at = START + 600_000
    await live_store.remember_nonce("lk_1", "nonce-fedcba9876543210", expires_at, START)

    later = await live_store.remember_nonce(
        "lk_1", "nonce-fedcba9876543210", expires_at + 600_000, expires_at
    )

    assert later is True


async def test_concurrent_nonce_accepted_once(live_store: LiveStore):
    expires_at = START + 600_000

    results = await asyncio.gather(
        *(
            live_store.remember_nonce("lk_1", "nonce-concurrent-000001", expires_at, START)
            for _ in range(10)
        )
    )

    assert results.count(True) == 1


# Launcher liveness.


async def test_launcher_liveness(live_store: LiveStore):
    launcher_id = f"ls_{uuid.uuid4()}"
    deadline = START + TIMERS.launcher_timeout_ms

    await live_store.touch_launcher(launcher_id, START, deadline)

    assert await live_store.launcher_last_seen(launcher_id) == START
    assert await live_store.due_launchers(deadline - 1, 10, LEASE_MS) == []
    assert await live_store.due_launchers(deadline, 10, LEASE_MS) == [launcher_id]
    assert await live_store.due_launchers(deadline + 1, 10, LEASE_MS) == []
    assert await live_store.due_launchers(deadline + LEASE_MS, 10, LEASE_MS) == [launcher_id]


async def test_launcher_touch_moves_deadline(live_store: LiveStore):
    launcher_id = f"ls_{uuid.uuid4()}"
    await live_store.touch_launcher(launcher_id, START, START + TIMERS.launcher_timeout_ms)
    later = START + 60_000

    await live_store.touch_launcher(launcher_id, later, later + TIMERS.launcher_timeout_ms)

    assert await live_store.launcher_last_seen(launcher_id) == later
    assert await live_store.due_launchers(START + TIMERS.launcher_timeout_ms, 10, LEASE_MS) == []


async def test_forget_launcher(live_store: LiveStore):
    launcher_id = f"ls_{uuid.uuid4()}"
    deadline = START + TIMERS.launcher_timeout_ms
    await live_store.touch_launcher(launcher_id, START, deadline)

    await live_store.forget_launcher(launcher_id)

    assert await live_store.launcher_last_seen(launcher_id) is None
    assert await live_store.due_launchers(deadline, 10, LEASE_MS) == []


async def test_ping(live_store: LiveStore, clock: ManualClock):
    await live_store.ping()
