"""The truth ledger: what the simulation measured about each session, and the billing rules.

All moments are wall-clock epoch milliseconds measured on this machine, the clock the server
uses, so a record's `started_at` and `ended_at` compare directly with when requests were sent and
answered. A request is processed by the server between its `sent` and `received` moments, which
gives every rule below a window rather than a point.

Billing rules checked for every session:

- The record is ENDED with one known end reason, `started_at` lies in the verify's window,
  `play_duration_sec` is the whole seconds from `started_at` to `ended_at`, and `billable_sec` is
  the whole seconds to the earlier of `ended_at` and `exhausted_at`.
- Never more than actually played: `ended_at` is no later than the last request that showed
  the session alive (timeouts and launcher loss), the verify that replaced it (replacement), or
  the moment the simulation learned that it was over (every other reason).
- Never less than the last confirmed heartbeat for abnormal ends: `ended_at` is no earlier than
  the sending of the last heartbeat the server accepted. For LAUNCHER_LOST the bound is the
  earlier of that and the launcher's last accepted heartbeat, because such a session is billed
  until the launcher's last sign of life.
- Normal ends are exact: `ended_at` lies in the end call's window, the end answer's
  `play_duration_sec` equals the record's, and it differs from the game server's own measurement
  by at most 1 s plus the round-trip time of the verify and end calls.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from playwave.domain.lifecycle import EndReason, GameSession, SessionState

# Tolerance for the millisecond rounding of the two processes' clock readings.
CLOCK_SLACK_MS = 2


@dataclass
class LauncherTruth:
    """A launcher session as the simulation ran it."""

    launcher_session_id: str
    pc_id: str
    started_ms: int
    last_confirmed_sent_ms: int
    closed_received_ms: int | None = None


@dataclass
class SessionTruth:
    """One game session as the simulation saw it, from verify to its end."""

    game_session_id: str
    game_id: str
    cafe_index: int
    pc_id: str
    provider_user_id: str
    verify_sent_ms: int
    verify_received_ms: int
    launcher: LauncherTruth | None
    last_confirmed_sent_ms: int = 0
    last_contact_received_ms: int = 0
    expected_end: EndReason | None = None
    end_sent_ms: int | None = None
    end_received_ms: int | None = None
    end_status: int | None = None
    end_play_duration_sec: int | None = None
    client_play_duration_sec: int | None = None
    finished_ms: int | None = None
    saw_exhausted: bool = False
    replacing_verify_sent_ms: int | None = None
    replacing_verify_received_ms: int | None = None
    planted_late_heartbeat: bool = False
    recent_heartbeats: list[tuple[int, int, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.last_confirmed_sent_ms = self.last_confirmed_sent_ms or self.verify_sent_ms
        self.last_contact_received_ms = self.last_contact_received_ms or self.verify_received_ms

    def confirm(self, sent_ms: int, received_ms: int) -> None:
        """Note a heartbeat or check that the server accepted."""
        self.note_heartbeat(sent_ms, received_ms, "accepted")
        self.last_confirmed_sent_ms = max(self.last_confirmed_sent_ms, sent_ms)
        self.contact(received_ms)

    def note_heartbeat(self, sent_ms: int, received_ms: int, outcome: str) -> None:
        """Keep the last few heartbeats, to explain a mismatch in the report."""
        self.recent_heartbeats.append((sent_ms, received_ms, outcome))
        del self.recent_heartbeats[:-4]

    def contact(self, received_ms: int) -> None:
        """Note a request about this session that may have reached the server."""
        self.last_contact_received_ms = max(self.last_contact_received_ms, received_ms)

    def finish(self, at_ms: int, expected: EndReason | None) -> None:
        """Note the moment the simulation stopped the session or learned that it was over."""
        if self.finished_ms is None:
            self.finished_ms = at_ms
            self.expected_end = expected


@dataclass(frozen=True, slots=True)
class BillingMismatch:
    game_session_id: str
    end_reason: str | None
    problem: str


def check_billing(truth: SessionTruth, record: GameSession | None) -> list[BillingMismatch]:
    """Return every way `record` breaks the billing rules for what `truth` saw."""
    problems: list[str] = []
    if record is None:
        return [BillingMismatch(truth.game_session_id, None, "no record of this session")]
    if record.state is not SessionState.ENDED or record.ended_at is None:
        return [
            BillingMismatch(
                truth.game_session_id, None, f"still {record.state.value} after the run"
            )
        ]
    reason = record.end_reason
    if reason is None or record.play_duration_sec is None or record.billable_sec is None:
        return [BillingMismatch(truth.game_session_id, None, "ended without reason or durations")]

    _check_record_arithmetic(truth, record, problems)
    _check_upper_bound(truth, record, reason, problems)
    if reason is EndReason.NORMAL:
        _check_normal_end(truth, record, problems)
    else:
        _check_lower_bound(truth, record, reason, problems)
    return [BillingMismatch(truth.game_session_id, reason.value, problem) for problem in problems]


def _check_record_arithmetic(truth: SessionTruth, record: GameSession, problems: list[str]) -> None:
    assert record.ended_at is not None
    if not (
        truth.verify_sent_ms - CLOCK_SLACK_MS
        <= record.started_at
        <= truth.verify_received_ms + CLOCK_SLACK_MS
    ):
        problems.append(
            f"started_at {record.started_at} is outside the verify call "
            f"[{truth.verify_sent_ms}, {truth.verify_received_ms}]"
        )
    expected_play = max(0, record.ended_at - record.started_at) // 1000
    if record.play_duration_sec != expected_play:
        problems.append(
            f"play_duration_sec {record.play_duration_sec} is not the {expected_play} whole "
            "seconds from started_at to ended_at"
        )
    billable_until = record.ended_at
    if record.exhausted_at is not None:
        billable_until = min(billable_until, record.exhausted_at)
    expected_billable = max(0, billable_until - record.started_at) // 1000
    if record.billable_sec != expected_billable:
        problems.append(
            f"billable_sec {record.billable_sec} is not the {expected_billable} whole seconds "
            "before the end or the G-coin exhaustion"
        )


def _check_upper_bound(
    truth: SessionTruth, record: GameSession, reason: EndReason, problems: list[str]
) -> None:
    """Never bill more than was played."""
    assert record.ended_at is not None
    if reason in (EndReason.HEARTBEAT_TIMEOUT, EndReason.LAUNCHER_LOST):
        latest = truth.last_contact_received_ms
        what = "the last request the game server sent"
    elif reason is EndReason.NORMAL and truth.end_received_ms is not None:
        latest = truth.end_received_ms
        what = "the end call's answer"
    elif (
        reason is EndReason.LAUNCHER_CLOSED
        and truth.launcher is not None
        and truth.launcher.closed_received_ms is not None
    ):
        # A launcher end bills its PC's sessions to that moment, even one whose game server went
        # silent less than a session TTL before.
        latest = max(truth.launcher.closed_received_ms, truth.last_contact_received_ms)
        what = "the launcher end call's answer"
    elif reason is EndReason.SESSION_REPLACED and truth.replacing_verify_received_ms is not None:
        # A replaced session is billed until the verify that replaced it, even when its game
        # server had already gone silent.
        latest = truth.replacing_verify_received_ms
        what = "the replacing verify's answer"
    else:
        latest = truth.finished_ms if truth.finished_ms is not None else truth.verify_received_ms
        what = "the moment the simulation stopped the session"
    if record.ended_at > latest + CLOCK_SLACK_MS:
        problems.append(
            f"billed until {record.ended_at}, {record.ended_at - latest} ms after {what}"
        )


def _check_lower_bound(
    truth: SessionTruth, record: GameSession, reason: EndReason, problems: list[str]
) -> None:
    """Never bill less than the last heartbeat the server accepted."""
    assert record.ended_at is not None
    earliest = truth.last_confirmed_sent_ms
    what = "the last accepted heartbeat was sent"
    launcher = truth.launcher
    if (
        reason is EndReason.LAUNCHER_LOST
        and launcher is not None
        and launcher.last_confirmed_sent_ms < earliest
    ):
        earliest = launcher.last_confirmed_sent_ms
        what = "the launcher's last accepted heartbeat was sent"
    replaced_at = truth.replacing_verify_sent_ms
    if reason is EndReason.SESSION_REPLACED and replaced_at is not None and replaced_at < earliest:
        # Play is counted until the replacing verify. A heartbeat that reached the server while
        # that verify was running got OK, which is right: the verify could still have failed.
        earliest = replaced_at
        what = "the replacing verify was sent"
    if record.ended_at < earliest - CLOCK_SLACK_MS:
        problems.append(
            f"billed until {record.ended_at}, {earliest - record.ended_at} ms before {what}"
        )


def _check_normal_end(truth: SessionTruth, record: GameSession, problems: list[str]) -> None:
    assert record.ended_at is not None
    if truth.end_sent_ms is None or truth.end_received_ms is None:
        problems.append("ended NORMAL but the simulation never called end")
        return
    if not (
        truth.end_sent_ms - CLOCK_SLACK_MS
        <= record.ended_at
        <= truth.end_received_ms + CLOCK_SLACK_MS
    ):
        problems.append(
            f"ended_at {record.ended_at} is outside the end call "
            f"[{truth.end_sent_ms}, {truth.end_received_ms}]"
        )
    if truth.end_play_duration_sec is not None and (
        truth.end_play_duration_sec != record.play_duration_sec
    ):
        problems.append(
            f"the end call answered play_duration_sec {truth.end_play_duration_sec}, the record "
            f"holds {record.play_duration_sec}"
        )
    if truth.client_play_duration_sec is not None:
        round_trips_ms = (truth.verify_received_ms - truth.verify_sent_ms) + (
            truth.end_received_ms - truth.end_sent_ms
        )
        allowed = 1 + -(-round_trips_ms // 1000)
        difference = abs(record.play_duration_sec - truth.client_play_duration_sec)
        if difference > allowed:
            problems.append(
                f"play_duration_sec {record.play_duration_sec} differs from the game server's "
                f"{truth.client_play_duration_sec} by {difference} s (allowed {allowed} s)"
            )
