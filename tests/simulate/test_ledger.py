"""The billing-truth rules accept correct records and catch planted billing errors."""

from __future__ import annotations

from playwave.domain.lifecycle import EndReason, GameSession, SessionState
from playwave.simulate.ledger import LauncherTruth, SessionTruth, check_billing

T0 = 1_767_225_600_000
SESSION_ID = "gs_550e8400-e29b-41d4-a716-446655440000"


def truth(**changes) -> SessionTruth:
    values = {
        "game_session_id": SESSION_ID,
        "game_id": "game_00000000000a",
        "cafe_index": 0,
        "pc_id": "sim-000-000",
        "provider_user_id": "123456789",
        "verify_sent_ms": T0,
        "verify_received_ms": T0 + 20,
        "launcher": None,
    }
    values.update(changes)
    return SessionTruth(**values)


def record(ended_at: int, reason: EndReason, **changes) -> GameSession:
    started_at = changes.pop("started_at", T0 + 10)
    exhausted_at = changes.get("exhausted_at")
    billable_until = min(ended_at, exhausted_at) if exhausted_at else ended_at
    values = {
        "game_session_id": SESSION_ID,
        "ott": "550e8400-e29b-41d4-a716-446655440001",
        "game_id": "game_00000000000a",
        "api_key_id": "key_1",
        "environment": "live",
        "provider_user_id": "123456789",
        "cafe_id": "cafe_1",
        "pc_id": "sim-000-000",
        "launcher_session_id": None,
        "rate_per_hour": 600,
        "billing_id": "bill_1",
        "state": SessionState.ENDED,
        "started_at": started_at,
        "last_heartbeat_at": started_at,
        "ended_at": ended_at,
        "end_reason": reason,
        "play_duration_sec": (ended_at - started_at) // 1000,
        "billable_sec": (billable_until - started_at) // 1000,
    }
    values.update(changes)
    return GameSession(**values)


def normal_truth(end_sent: int, end_received: int, client: int) -> SessionTruth:
    session = truth()
    session.end_sent_ms = end_sent
    session.end_received_ms = end_received
    session.client_play_duration_sec = client
    session.end_play_duration_sec = (end_sent + 5 - (T0 + 10)) // 1000
    session.finish(end_received, EndReason.NORMAL)
    return session


def test_normal_end_within_window_passes() -> None:
    session = normal_truth(T0 + 600_000, T0 + 600_030, client=599)

    assert check_billing(session, record(T0 + 600_005, EndReason.NORMAL)) == []


def test_normal_end_after_answer_is_caught() -> None:
    session = normal_truth(T0 + 600_000, T0 + 600_030, client=599)

    problems = check_billing(session, record(T0 + 602_000, EndReason.NORMAL))

    assert any("outside the end call" in p.problem for p in problems)
    assert any("after the end call's answer" in p.problem for p in problems)


def test_normal_end_far_from_client_count_is_caught() -> None:
    session = normal_truth(T0 + 600_000, T0 + 600_030, client=590)

    problems = check_billing(session, record(T0 + 600_005, EndReason.NORMAL))

    assert [p.problem for p in problems] == [
        "play_duration_sec 599 differs from the game server's 590 by 9 s (allowed 2 s)"
    ]


def test_end_answer_differing_from_record_is_caught() -> None:
    session = normal_truth(T0 + 600_000, T0 + 600_030, client=599)
    session.end_play_duration_sec = 650

    problems = check_billing(session, record(T0 + 600_005, EndReason.NORMAL))

    assert any("the end call answered play_duration_sec 650" in p.problem for p in problems)


def test_timeout_billed_to_last_heartbeat_passes() -> None:
    session = truth()
    session.confirm(T0 + 120_000, T0 + 120_015)
    session.finish(T0 + 130_000, EndReason.HEARTBEAT_TIMEOUT)

    assert check_billing(session, record(T0 + 120_008, EndReason.HEARTBEAT_TIMEOUT)) == []


def test_timeout_billed_before_last_heartbeat_is_caught() -> None:
    session = truth()
    session.confirm(T0 + 120_000, T0 + 120_015)
    session.confirm(T0 + 240_000, T0 + 240_015)

    problems = check_billing(session, record(T0 + 120_008, EndReason.HEARTBEAT_TIMEOUT))

    assert len(problems) == 1
    assert "before the last accepted heartbeat was sent" in problems[0].problem


def test_timeout_billed_past_last_contact_is_caught() -> None:
    session = truth()
    session.confirm(T0 + 120_000, T0 + 120_015)

    problems = check_billing(session, record(T0 + 360_000, EndReason.HEARTBEAT_TIMEOUT))

    assert len(problems) == 1
    assert "after the last request the game server sent" in problems[0].problem


def test_launcher_lost_uses_launcher_heartbeat() -> None:
    launcher = LauncherTruth("ls_1", "sim-000-000", T0 - 5_000, last_confirmed_sent_ms=T0 + 60_000)
    session = truth(launcher=launcher)
    session.confirm(T0 + 240_000, T0 + 240_015)

    billed_at_launcher = record(T0 + 60_004, EndReason.LAUNCHER_LOST)
    billed_too_early = record(T0 + 30_000, EndReason.LAUNCHER_LOST)

    assert check_billing(session, billed_at_launcher) == []
    assert (
        "launcher's last accepted heartbeat" in check_billing(session, billed_too_early)[0].problem
    )


def test_launcher_close_after_silence_passes() -> None:
    launcher = LauncherTruth("ls_1", "sim-000-000", T0 - 5_000, last_confirmed_sent_ms=T0)
    launcher.closed_received_ms = T0 + 150_020
    session = truth(launcher=launcher)
    session.confirm(T0 + 120_000, T0 + 120_015)
    # The game server crashed after its last heartbeat; the customer logged out within the TTL.
    session.finish(T0 + 125_000, EndReason.HEARTBEAT_TIMEOUT)

    billed_at_close = record(T0 + 150_010, EndReason.LAUNCHER_CLOSED)
    billed_after_close = record(T0 + 160_000, EndReason.LAUNCHER_CLOSED)

    assert check_billing(session, billed_at_close) == []
    assert "after the launcher end call's answer" in (
        check_billing(session, billed_after_close)[0].problem
    )


def test_replaced_during_heartbeat_billed_to_verify_passes() -> None:
    session = truth()
    # The old session's heartbeat reached the server while the replacing verify was running.
    session.replacing_verify_sent_ms = T0 + 300_000
    session.replacing_verify_received_ms = T0 + 300_900
    session.confirm(T0 + 300_400, T0 + 300_420)
    session.finish(T0 + 300_900, EndReason.SESSION_REPLACED)

    billed_at_verify = record(T0 + 300_010, EndReason.SESSION_REPLACED)
    billed_before_verify = record(T0 + 200_000, EndReason.SESSION_REPLACED)

    assert check_billing(session, billed_at_verify) == []
    assert "before the replacing verify was sent" in (
        check_billing(session, billed_before_verify)[0].problem
    )


def test_normal_end_of_unanswered_attempt_passes() -> None:
    # The first end attempt reached the server but its response was lost, so the retry got 409.
    session = truth()
    session.end_sent_ms = T0 + 600_000
    session.end_received_ms = T0 + 640_000
    session.client_play_duration_sec = 639
    session.finish(T0 + 640_000, None)

    assert check_billing(session, record(T0 + 600_005, EndReason.NORMAL)) == []


def test_wrong_durations_are_caught() -> None:
    session = truth()
    session.finish(T0 + 100_000, EndReason.SESSION_REPLACED)
    planted = record(T0 + 90_000, EndReason.SESSION_REPLACED, play_duration_sec=95)

    problems = check_billing(session, planted)

    assert [p.problem for p in problems] == [
        "play_duration_sec 95 is not the 89 whole seconds from started_at to ended_at"
    ]


def test_billable_past_exhaustion_is_caught() -> None:
    session = truth(saw_exhausted=True)
    session.finish(T0 + 200_000, EndReason.CHARGE_EXHAUSTED)
    exhausted = T0 + 60_010
    planted = record(T0 + 180_010, EndReason.CHARGE_EXHAUSTED, exhausted_at=exhausted)
    planted = planted.replace(billable_sec=180)

    problems = check_billing(session, planted)

    assert len(problems) == 1
    assert "billable_sec 180 is not the 60 whole seconds" in problems[0].problem


def test_start_outside_verify_is_caught() -> None:
    session = truth()
    session.finish(T0 + 100_000, EndReason.ADMIN_TERMINATED)

    problems = check_billing(
        session, record(T0 + 90_000, EndReason.ADMIN_TERMINATED, started_at=T0 - 5_000)
    )

    assert any("outside the verify call" in p.problem for p in problems)


def test_live_or_missing_record_is_caught() -> None:
    session = truth()
    live = record(T0 + 90_000, EndReason.NORMAL).replace(
        state=SessionState.ACTIVE, ended_at=None, end_reason=None
    )

    assert check_billing(session, None)[0].problem == "no record of this session"
    assert check_billing(session, live)[0].problem == "still ACTIVE after the run"
