"""The live view of a session that heartbeats read and renew, and the rule for renewing it.

Every live store applies `touch` atomically; the Redis store runs the same rule in a Lua script,
and the store contract tests hold both to it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import StrEnum

from playwave.clock import Millis
from playwave.domain.lifecycle import EndReason, GameSession, SessionState, Timers, deadline


@dataclass(frozen=True, slots=True)
class LiveSession:
    game_session_id: str
    game_id: str
    provider_user_id: str
    pc_id: str
    started_at: Millis
    last_heartbeat_at: Millis
    grace_started_at: Millis | None
    state: SessionState
    deadline: Millis
    end_reason: EndReason | None = None

    @classmethod
    def from_record(cls, session: GameSession, timers: Timers) -> LiveSession:
        return cls(
            game_session_id=session.game_session_id,
            game_id=session.game_id,
            provider_user_id=session.provider_user_id,
            pc_id=session.pc_id,
            started_at=session.started_at,
            last_heartbeat_at=session.last_heartbeat_at,
            grace_started_at=session.grace_started_at,
            state=session.state,
            deadline=deadline(session.last_heartbeat_at, session.grace_started_at, timers),
            end_reason=session.end_reason,
        )

    def replace(self, **changes: object) -> LiveSession:
        return dataclasses.replace(self, **changes)


class TouchStatus(StrEnum):
    TOUCHED = "TOUCHED"
    MISSING = "MISSING"
    MISMATCH = "MISMATCH"
    EXPIRED = "EXPIRED"
    ENDING = "ENDING"
    ENDED = "ENDED"


@dataclass(frozen=True, slots=True)
class Touch:
    status: TouchStatus
    session: LiveSession | None


def touch(
    current: LiveSession | None,
    game_id: str,
    provider_user_id: str,
    now: Millis,
    timers: Timers,
) -> Touch:
    """Apply a heartbeat at `now` to `current` and return the outcome with the new state.

    Only a live session whose deadline has not passed is renewed. A session of another game or
    user is reported as a mismatch and left unchanged, so a wrong caller extends nothing.
    """
    if current is None:
        return Touch(TouchStatus.MISSING, None)
    if current.game_id != game_id or current.provider_user_id != provider_user_id:
        return Touch(TouchStatus.MISMATCH, current)
    if current.state is SessionState.ENDED:
        return Touch(TouchStatus.ENDED, current)
    if current.state is SessionState.ENDING:
        return Touch(TouchStatus.ENDING, current)
    if now >= current.deadline:
        return Touch(TouchStatus.EXPIRED, current)

    renewed = current.replace(
        last_heartbeat_at=max(now, current.last_heartbeat_at),
        deadline=deadline(max(now, current.last_heartbeat_at), current.grace_started_at, timers),
    )
    return Touch(TouchStatus.TOUCHED, renewed)
