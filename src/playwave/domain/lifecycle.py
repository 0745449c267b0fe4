"""Game session lifecycle: states, end reasons and the play-time rules.

A session is ACTIVE from verify, GRACE once the cafe's G-coin ran out, ENDING while its end is
being written, and ENDED for good. Each session ends exactly once, with one end reason. The
moment a session ends for billing is fixed by the reason and the session's own history, never by
the moment the server happened to notice an expiry.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import StrEnum

from playwave.clock import Millis, whole_seconds


class SessionState(StrEnum):
    ACTIVE = "ACTIVE"
    GRACE = "GRACE"
    ENDING = "ENDING"
    ENDED = "ENDED"


LIVE_STATES = (SessionState.ACTIVE, SessionState.GRACE)


class EndReason(StrEnum):
    NORMAL = "NORMAL"
    HEARTBEAT_TIMEOUT = "HEARTBEAT_TIMEOUT"
    CHARGE_EXHAUSTED = "CHARGE_EXHAUSTED"
    SESSION_REPLACED = "SESSION_REPLACED"
    LAUNCHER_LOST = "LAUNCHER_LOST"
    LAUNCHER_CLOSED = "LAUNCHER_CLOSED"
    ADMIN_TERMINATED = "ADMIN_TERMINATED"


@dataclass(frozen=True, slots=True)
class Timers:
    """Lifecycle timers in milliseconds (intervals advertised to clients in seconds)."""

    ott_ttl_ms: int = 60_000
    heartbeat_interval_sec: int = 120
    session_ttl_ms: int = 240_000
    charge_grace_ms: int = 120_000
    launcher_heartbeat_sec: int = 60
    launcher_timeout_ms: int = 240_000
    usage_report_interval_ms: int = 60_000
    replaced_answer_ms: int = 3_600_000


@dataclass(frozen=True, slots=True)
class GameSession:
    """The durable record of one game session."""

    game_session_id: str
    ott: str
    game_id: str
    api_key_id: str
    environment: str
    provider_user_id: str
    cafe_id: str
    pc_id: str
    launcher_session_id: str | None
    rate_per_hour: int
    billing_id: str | None
    state: SessionState
    started_at: Millis
    last_heartbeat_at: Millis
    exhausted_at: Millis | None = None
    grace_started_at: Millis | None = None
    ended_at: Millis | None = None
    end_reason: EndReason | None = None
    play_duration_sec: int | None = None
    billable_sec: int | None = None
    client_play_duration_sec: int | None = None
    reported_sec: int = 0

    @property
    def is_live(self) -> bool:
        return self.state in LIVE_STATES

    def replace(self, **changes: object) -> GameSession:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True, slots=True)
class SessionEnd:
    """How a session ends: the reason, the billed end moment and the resulting durations."""

    reason: EndReason
    ended_at: Millis
    play_duration_sec: int
    billable_sec: int


def heartbeat_deadline(last_heartbeat_at: Millis, timers: Timers) -> Millis:
    """Return the moment a session with this last heartbeat times out."""
    return last_heartbeat_at + timers.session_ttl_ms


def grace_started(exhausted_at: Millis, noticed_at: Millis) -> Millis:
    """Return when the grace of a session whose G-coin ran out at `exhausted_at` starts.

    The server learns of an exhaustion from a usage report's result, which may arrive late. The
    grace runs from the moment the server learned it, so every heartbeat it accepted with result
    `OK` before then falls inside the session. Billable time still stops at `exhausted_at`.
    """
    return max(exhausted_at, noticed_at)


def grace_deadline(grace_started_at: Millis, timers: Timers) -> Millis:
    return grace_started_at + timers.charge_grace_ms


def deadline(last_heartbeat_at: Millis, grace_started_at: Millis | None, timers: Timers) -> Millis:
    """Return the earliest moment the server must end a live session on its own."""
    end_by_heartbeat = heartbeat_deadline(last_heartbeat_at, timers)
    if grace_started_at is None:
        return end_by_heartbeat
    return min(end_by_heartbeat, grace_deadline(grace_started_at, timers))


def automatic_end(
    last_heartbeat_at: Millis, grace_started_at: Millis | None, now: Millis, timers: Timers
) -> tuple[EndReason, Millis] | None:
    """Return the reason and billed end of an automatic end that is due at `now`, if any.

    Whichever deadline passed first wins: a session that stopped heartbeating before its grace
    ran out timed out at its last heartbeat.
    """
    end_by_heartbeat = heartbeat_deadline(last_heartbeat_at, timers)
    end_by_grace = None if grace_started_at is None else grace_deadline(grace_started_at, timers)

    if end_by_grace is not None and end_by_grace <= end_by_heartbeat and now >= end_by_grace:
        return EndReason.CHARGE_EXHAUSTED, end_by_grace
    if now >= end_by_heartbeat:
        return EndReason.HEARTBEAT_TIMEOUT, last_heartbeat_at
    return None


def resolve_end(
    session: GameSession,
    reason: EndReason,
    at: Millis,
    timers: Timers,
    *,
    last_heartbeat_at: Millis | None = None,
    launcher_last_seen_at: Millis | None = None,
) -> SessionEnd:
    """Decide how `session` ends when `reason` is requested at `at`.

    `last_heartbeat_at` may be fresher than the record's, from the live store. If an automatic
    end was already due at `at`, that end wins: a session that was dead before the request is
    billed to its last sign of life, whatever was requested later.
    """
    last_seen = max(session.last_heartbeat_at, last_heartbeat_at or 0)
    due = automatic_end(last_seen, session.grace_started_at, at, timers)
    if due is not None:
        reason, ended_at = due
    elif reason is EndReason.HEARTBEAT_TIMEOUT:
        ended_at = last_seen
    elif reason is EndReason.CHARGE_EXHAUSTED:
        if session.grace_started_at is None:
            raise ValueError(f"session {session.game_session_id} has not run out of G-coin")
        ended_at = min(at, grace_deadline(session.grace_started_at, timers))
    elif reason is EndReason.LAUNCHER_LOST:
        ended_at = min(last_seen, launcher_last_seen_at if launcher_last_seen_at else at, at)
    else:
        ended_at = at

    ended_at = max(ended_at, session.started_at)
    billable_until = ended_at
    if session.exhausted_at is not None:
        billable_until = min(billable_until, session.exhausted_at)

    return SessionEnd(
        reason=reason,
        ended_at=ended_at,
        play_duration_sec=whole_seconds(session.started_at, ended_at),
        billable_sec=whole_seconds(session.started_at, billable_until),
    )


def play_duration_now(started_at: Millis, now: Millis) -> int:
    return whole_seconds(started_at, now)


def next_heartbeat_in(now: Millis, grace_started_at: Millis | None, timers: Timers) -> int:
    """Return the advised seconds until the next heartbeat, lowered near the end of a grace."""
    interval = timers.heartbeat_interval_sec
    if grace_started_at is None:
        return interval
    remaining_ms = grace_deadline(grace_started_at, timers) - now
    return max(1, min(interval, -(-remaining_ms // 1000)))
