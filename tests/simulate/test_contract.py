"""The response checker passes published responses and names every planted deviation."""

from __future__ import annotations

import pytest

from playwave.simulate.contract import check_response

REQUEST_ID = "req_0123456789abcdef01234567"
HEADERS = {"x-request-id": REQUEST_ID, "content-type": "application/json"}
SESSION_ID = "gs_550e8400-e29b-41d4-a716-446655440000"


def ok(data: dict) -> dict:
    return {"success": True, "request_id": REQUEST_ID, "data": data}


def error(code: str) -> dict:
    return {
        "success": False,
        "request_id": REQUEST_ID,
        "error": {
            "code": code,
            "message": "Session was not found for this game.",
            "timestamp": "2026-03-06T12:00:00.000Z",
        },
    }


VALID_ANSWERS = [
    ("verify", 200, ok({"is_valid": True, "game_session_id": SESSION_ID, "is_pc_cafe": True})),
    ("verify", 200, ok({"is_valid": False, "reason": "OTT_EXPIRED"})),
    ("verify", 200, ok({"is_valid": False, "reason": "NOT_CHARGEABLE"})),
    ("heartbeat", 200, ok({"result": "OK", "next_heartbeat_in": 120, "play_duration_sec": 5})),
    (
        "heartbeat",
        200,
        ok({"result": "SESSION_REPLACED", "next_heartbeat_in": 120, "play_duration_sec": 0}),
    ),
    ("heartbeat", 410, error("SESSION_ENDED")),
    ("heartbeat", 410, error("SESSION_ENDING")),
    ("heartbeat", 404, error("SESSION_NOT_FOUND")),
    ("end", 409, error("ALREADY_ENDED")),
    ("verify", 503, error("SERVICE_UNAVAILABLE")),
    (
        "check",
        200,
        ok(
            {
                "is_valid": True,
                "game_session_id": SESSION_ID,
                "is_pc_cafe": True,
                "play_duration_sec": 9,
            }
        ),
    ),
]


@pytest.mark.parametrize(("endpoint", "status", "body"), VALID_ANSWERS)
def test_published_answers_pass(endpoint: str, status: int, body: dict) -> None:
    checked = check_response(endpoint, status, HEADERS, body, {"game_session_id": SESSION_ID})

    assert checked.violations == ()


def test_end_answer_echoes_client_duration() -> None:
    body = ok({"result": "SUCCESS", "play_duration_sec": 61, "client_play_duration_sec": 60})

    echoed = check_response("end", 200, HEADERS, body, {"play_duration_sec": 60})
    not_echoed = check_response("end", 200, HEADERS, body, {"play_duration_sec": 59})

    assert echoed.violations == ()
    assert len(not_echoed.violations) == 1
    assert "does not echo" in not_echoed.violations[0].problem


PLANTED = [
    (
        "unknown heartbeat result",
        "heartbeat",
        200,
        HEADERS,
        ok({"result": "ALIVE", "next_heartbeat_in": 120, "play_duration_sec": 5}),
        "is not a heartbeat result",
    ),
    (
        "duration as a string",
        "heartbeat",
        200,
        HEADERS,
        ok({"result": "OK", "next_heartbeat_in": 120, "play_duration_sec": "5"}),
        "play_duration_sec",
    ),
    (
        "missing next_heartbeat_in",
        "heartbeat",
        200,
        HEADERS,
        ok({"result": "OK", "play_duration_sec": 5}),
        "next_heartbeat_in",
    ),
    (
        "ended session answered 404",
        "end",
        410,
        HEADERS,
        error("SESSION_ENDED"),
        "is not an answer of end",
    ),
    (
        "code under the wrong status",
        "heartbeat",
        404,
        HEADERS,
        error("SESSION_ENDED"),
        "does not belong to HTTP 404",
    ),
    (
        "unknown verify reason",
        "verify",
        200,
        HEADERS,
        ok({"is_valid": False, "reason": "EXPIRED"}),
        "is not a verify failure reason",
    ),
    (
        "session id of the wrong shape",
        "verify",
        200,
        HEADERS,
        ok({"is_valid": True, "game_session_id": "gs_1", "is_pc_cafe": True}),
        "is not gs_<uuid4>",
    ),
    (
        "header differs from the body",
        "heartbeat",
        404,
        {"x-request-id": "req_other"},
        error("SESSION_NOT_FOUND"),
        "X-Request-Id header",
    ),
    (
        "timestamp without milliseconds",
        "heartbeat",
        404,
        HEADERS,
        {
            "success": False,
            "request_id": REQUEST_ID,
            "error": {
                "code": "SESSION_NOT_FOUND",
                "message": "not found",
                "timestamp": "2026-03-06T12:00:00Z",
            },
        },
        "error.timestamp",
    ),
    (
        "429 without Retry-After",
        "verify",
        429,
        HEADERS,
        error("RATE_LIMITED"),
        "Retry-After",
    ),
    (
        "success flag false on 200",
        "heartbeat",
        200,
        HEADERS,
        {
            "success": False,
            "request_id": REQUEST_ID,
            "data": {"result": "OK", "next_heartbeat_in": 120, "play_duration_sec": 1},
        },
        "success: true",
    ),
    (
        "launch data without prefix",
        "launcher_ott",
        200,
        HEADERS,
        ok(
            {
                "ott": "550e8400-e29b-41d4-a716-446655440000",
                "launch_data": "550e8400-e29b-41d4-a716-446655440000",
                "expires_in": 60,
            }
        ),
        "playwave_<ott>",
    ),
]


@pytest.mark.parametrize(
    ("case", "endpoint", "status", "headers", "body", "expected"),
    PLANTED,
    ids=[case[0] for case in PLANTED],
)
def test_planted_violation_caught(
    case: str, endpoint: str, status: int, headers: dict, body: dict, expected: str
) -> None:
    checked = check_response(endpoint, status, headers, body, {})

    problems = [violation.problem for violation in checked.violations]
    assert any(expected in problem for problem in problems), problems


def test_non_json_body_is_violation() -> None:
    checked = check_response("heartbeat", 500, HEADERS, None)

    assert checked.violations[0].problem == "body is not a JSON object"
