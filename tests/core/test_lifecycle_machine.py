"""A Hypothesis state machine drives sessions through the services with an injected clock.

It keeps its own model of every session and checks after each step that the records agree:
each session ends once, with the reason and billed end the lifecycle rules give, and has at most
one stop-billing call queued. The cafe's G-coin may run out at any moment, and the server may
learn of it at any later moment, as it does from a late usage report.
"""

from __future__ import annotations

import asyncio
import tempfile
from dataclasses import dataclass
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from playwave.clock import ManualClock
from playwave.runtime import Runtime, build_runtime
from playwave.services.billing import Billing
from playwave.services.errors import AlreadyEnded, SessionEnded
from playwave.settings import Settings
from playwave.stores.base import Game
from tests.helpers import mint_ott

TTL_MS = 240_000
GRACE_MS = 120_000
REPLACED_ANSWER_MS = 3_600_000


@dataclass
class ModelSession:
    user: str
    pc_id: str
    ott: str
    started_at: int
    last_heartbeat_at: int
    end_reason: str | None = None
    ended_at: int | None = None
    exhausted_at: int | None = None
    grace_started_at: int | None = None

    def automatic_end(self) -> tuple[str, int]:
        """Return the reason and billed end the session gets if nothing else ends it first."""
        timeout = self.last_heartbeat_at + TTL_MS
        if self.grace_started_at is not None and self.grace_started_at + GRACE_MS <= timeout:
            return "CHARGE_EXHAUSTED", self.grace_started_at + GRACE_MS
        return "HEARTBEAT_TIMEOUT", self.last_heartbeat_at

    def expired(self, now: int) -> bool:
        if self.end_reason is not None:
            return False
        reason, _ = self.automatic_end()
        if reason == "CHARGE_EXHAUSTED":
            return now >= self.grace_started_at + GRACE_MS
        return now >= self.last_heartbeat_at + TTL_MS

    def end(self, reason: str, at: int) -> None:
        self.end_reason = reason
        self.ended_at = at


class SessionMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.directory = tempfile.TemporaryDirectory()
        self.clock = ManualClock(1_767_225_600_000)
        self.sessions: dict[str, ModelSession] = {}
        self.runtime: Runtime | None = None

    def run(self, coroutine):
        return self.loop.run_until_complete(coroutine)

    @initialize()
    def open_runtime(self) -> None:
        settings = Settings(data_dir=Path(self.directory.name), secret_key="s", _env_file=None)
        self.runtime = self.run(build_runtime(settings, clock=self.clock))
        self.run(self.runtime.records.create_game(Game("game_0000000000aa", "Obby", 600, True, 0)))
        issued = self.run(self.runtime.api_keys.issue("game_0000000000aa", "live"))
        self.key = self.run(self.runtime.api_keys.authenticate(issued.api_key))
        timers = self.runtime.settings.timers
        self.billing = Billing(
            self.runtime.records, self.runtime.live, self.runtime.partner, self.clock, timers
        )

    def teardown(self) -> None:
        if self.runtime is not None:
            self.run(self.runtime.close())
        self.loop.close()
        self.directory.cleanup()

    def _expire_overdue(self, pc_id: str | None = None) -> None:
        now = self.clock.now()
        for session in self.sessions.values():
            if session.expired(now) and (pc_id is None or session.pc_id == pc_id):
                session.end(*session.automatic_end())

    @rule(pc=st.integers(0, 3), user=st.integers(1, 5))
    def start(self, pc: int, user: int) -> None:
        pc_id = f"pc-{pc}"
        grant = self.run(mint_ott(self.runtime, "game_0000000000aa", pc_id))
        outcome = self.run(self.runtime.sessions.verify(self.key, grant.ott, str(user)))
        assert outcome.is_valid

        now = self.clock.now()
        self._expire_overdue(pc_id)
        for session in self.sessions.values():
            if session.pc_id == pc_id and session.end_reason is None:
                session.end("SESSION_REPLACED", now)
        self.sessions[outcome.game_session_id] = ModelSession(str(user), pc_id, grant.ott, now, now)

    @precondition(lambda self: self.sessions)
    @rule(data=st.data())
    def heartbeat(self, data) -> None:
        session_id = data.draw(st.sampled_from(list(self.sessions)))
        session = self.sessions[session_id]
        now = self.clock.now()
        self._expire_overdue()

        try:
            answer = self.run(self.runtime.sessions.heartbeat(self.key, session_id, session.user))
        except SessionEnded:
            assert session.end_reason is not None
            assert not (
                session.end_reason == "SESSION_REPLACED"
                and now < session.ended_at + REPLACED_ANSWER_MS
            )
            return

        if session.end_reason == "SESSION_REPLACED":
            assert answer.result == "SESSION_REPLACED"
            return
        assert session.end_reason is None
        if session.grace_started_at is None:
            assert answer.result == "OK"
            assert answer.next_heartbeat_in == 120
        else:
            assert answer.result == "CHARGE_EXHAUSTED"
            grace_left_ms = session.grace_started_at + GRACE_MS - now
            assert answer.next_heartbeat_in == max(1, min(120, -(-grace_left_ms // 1000)))
        assert answer.play_duration_sec == (now - session.started_at) // 1000
        session.last_heartbeat_at = now

    @precondition(lambda self: self.sessions)
    @rule(data=st.data(), client_seconds=st.none() | st.integers(0, 10_000))
    def end(self, data, client_seconds) -> None:
        session_id = data.draw(st.sampled_from(list(self.sessions)))
        session = self.sessions[session_id]
        now = self.clock.now()
        self._expire_overdue()

        try:
            outcome = self.run(self.runtime.sessions.end(self.key, session_id, client_seconds))
        except AlreadyEnded:
            assert session.end_reason is not None
            return

        assert session.end_reason is None
        assert outcome.play_duration_sec == (now - session.started_at) // 1000
        session.end("NORMAL", now)

    @precondition(lambda self: self.sessions)
    @rule(data=st.data(), covered_seconds=st.sampled_from([0, 1, 60, 150, 600]))
    def learn_exhaustion(self, data, covered_seconds) -> None:
        """Apply a usage report result, received now: the wallet covered `covered_seconds`."""
        session_id = data.draw(st.sampled_from(list(self.sessions)))
        session = self.sessions[session_id]
        now = self.clock.now()
        self._expire_overdue()

        self.run(self.billing.mark_exhausted(session_id, covered_seconds))

        if session.end_reason is not None or session.exhausted_at is not None:
            return
        session.exhausted_at = session.started_at + covered_seconds * 1000
        session.grace_started_at = max(session.exhausted_at, now)

    @precondition(lambda self: self.sessions)
    @rule(data=st.data())
    def repeat_verify(self, data) -> None:
        session_id = data.draw(st.sampled_from(list(self.sessions)))
        session = self.sessions[session_id]
        self._expire_overdue()

        outcome = self.run(self.runtime.sessions.verify(self.key, session.ott, session.user))

        if outcome.is_valid:
            assert outcome.game_session_id == session_id
            assert session.end_reason is None
        else:
            assert outcome.reason == "OTT_ALREADY_USED"
            assert session.end_reason is not None

    @rule(seconds=st.sampled_from([1, 30, 119, 120, 239, 240, 241, 600]))
    def advance(self, seconds: int) -> None:
        self.clock.advance(seconds)

    @rule()
    def sweep(self) -> None:
        self._expire_overdue()
        self.run(self.runtime.jobs_by_name["sweep_live"].step())

    @invariant()
    def records_agree(self) -> None:
        if self.runtime is None:
            return
        for session_id, session in self.sessions.items():
            record = self.run(self.runtime.records.get_session(session_id))
            if record.end_reason is None:
                # The server may not have noticed an expiry yet; it must not have ended early.
                assert session.end_reason in (None, "HEARTBEAT_TIMEOUT", "CHARGE_EXHAUSTED")
                continue
            assert record.end_reason == session.end_reason, session_id
            assert record.ended_at == session.ended_at
            assert record.play_duration_sec == (session.ended_at - session.started_at) // 1000
            assert record.ended_at >= session.last_heartbeat_at
            billable_until = session.ended_at
            if session.exhausted_at is not None:
                billable_until = min(billable_until, session.exhausted_at)
            billable_sec = max(0, billable_until - session.started_at) // 1000
            assert record.billable_sec == billable_sec


TestSessionMachine = SessionMachine.TestCase
TestSessionMachine.settings = settings(
    max_examples=25,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
