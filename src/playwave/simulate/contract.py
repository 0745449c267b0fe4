"""Response checker: does an answer match the published API, field by field?

Each rule here is a fact of the API. Every response carries `request_id` (`req_` + random) in the
body and the same value in the `X-Request-Id` header. A success is `{"success": true,
"request_id", "data"}`, an error `{"success": false, "request_id", "error": {"code", "message",
"timestamp"}}` with a UTC timestamp in milliseconds. Each endpoint answers a fixed set of HTTP
statuses, each status carries fixed error codes, and a 429 carries `Retry-After`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

GAME_SESSION_ID = re.compile(
    r"gs_[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
)
LAUNCHER_SESSION_ID = re.compile(
    r"ls_[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
)
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
ERROR_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")

VERIFY_REASONS = frozenset({"OTT_EXPIRED", "OTT_ALREADY_USED", "GAME_MISMATCH", "NOT_CHARGEABLE"})
HEARTBEAT_RESULTS = frozenset({"OK", "CHARGE_EXHAUSTED", "SESSION_REPLACED"})

# Error codes each HTTP status may carry on the game server API.
GAME_ERROR_CODES: dict[int, frozenset[str]] = {
    400: frozenset({"BAD_REQUEST"}),
    401: frozenset({"INVALID_API_KEY"}),
    404: frozenset({"SESSION_NOT_FOUND"}),
    409: frozenset({"ALREADY_ENDED"}),
    410: frozenset({"SESSION_ENDED", "SESSION_ENDING"}),
    429: frozenset({"RATE_LIMITED"}),
    500: frozenset({"INTERNAL_ERROR"}),
    503: frozenset({"SERVICE_UNAVAILABLE"}),
}
COMMON_STATUSES = frozenset({400, 401, 429, 500, 503})

# The error statuses each game server endpoint may answer besides the common ones.
GAME_ENDPOINT_STATUSES: dict[str, frozenset[int]] = {
    "verify": COMMON_STATUSES,
    "heartbeat": COMMON_STATUSES | {404, 410},
    "check": COMMON_STATUSES | {404, 410},
    "end": COMMON_STATUSES | {404, 409},
}

# Launcher API error codes by status (the signing failures are all 401).
LAUNCHER_ERROR_CODES: dict[int, frozenset[str]] = {
    400: frozenset({"BAD_REQUEST"}),
    401: frozenset(
        {
            "SIGNATURE_MISSING",
            "UNKNOWN_KEY",
            "INVALID_SIGNATURE",
            "TIMESTAMP_EXPIRED",
            "NONCE_REUSED",
            "INVALID_TOKEN",
        }
    ),
    403: frozenset({"NOT_PC_CAFE"}),
    404: frozenset({"GAME_NOT_FOUND"}),
    410: frozenset({"LAUNCHER_SESSION_ENDED"}),
    429: frozenset({"RATE_LIMITED"}),
    500: frozenset({"INTERNAL_ERROR"}),
    503: frozenset({"SERVICE_UNAVAILABLE"}),
}
LAUNCHER_ENDPOINT_STATUSES: dict[str, frozenset[int]] = {
    "launcher_start": COMMON_STATUSES | {403},
    "launcher_ott": COMMON_STATUSES | {404, 410},
    "launcher_heartbeat": COMMON_STATUSES | {410},
    "launcher_end": COMMON_STATUSES | {410},
}


@dataclass(frozen=True, slots=True)
class Violation:
    """One way an answer differs from the published API."""

    endpoint: str
    status: int
    problem: str
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class Checked:
    """The checked answer: its error code (None on success), data and any violations."""

    status: int
    code: str | None
    data: dict[str, Any] | None
    violations: tuple[Violation, ...]

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.data is not None


class _Problems:
    def __init__(self, endpoint: str, status: int) -> None:
        self.endpoint = endpoint
        self.status = status
        self.request_id: str | None = None
        self.items: list[Violation] = []

    def add(self, problem: str) -> None:
        self.items.append(Violation(self.endpoint, self.status, problem, self.request_id))


def check_response(
    endpoint: str,
    status: int,
    headers: dict[str, str],
    body: Any,
    request: dict[str, Any] | None = None,
) -> Checked:
    """Check one answer of `endpoint` (verify, heartbeat, check, end or a launcher_* call).

    `headers` must have lower-case names. `request` is the JSON body that was sent; it lets the
    checker compare echoed fields such as `game_session_id` and `client_play_duration_sec`.
    """
    problems = _Problems(endpoint, status)
    if not isinstance(body, dict):
        problems.add("body is not a JSON object")
        return Checked(status, None, None, tuple(problems.items))

    _check_request_id(body, headers, problems)
    if status == 200:
        data = _check_success(endpoint, body, request or {}, problems)
        return Checked(status, None, data, tuple(problems.items))

    code = _check_error(endpoint, status, body, headers, problems)
    return Checked(status, code, None, tuple(problems.items))


def _check_request_id(body: dict[str, Any], headers: dict[str, str], problems: _Problems) -> None:
    request_id = body.get("request_id")
    if not isinstance(request_id, str) or not request_id.startswith("req_"):
        problems.add(f"request_id {request_id!r} is not a string starting with 'req_'")
        return
    problems.request_id = request_id
    if headers.get("x-request-id") != request_id:
        problems.add(
            f"X-Request-Id header {headers.get('x-request-id')!r} differs from body "
            f"request_id {request_id!r}"
        )


def _check_success(
    endpoint: str, body: dict[str, Any], request: dict[str, Any], problems: _Problems
) -> dict[str, Any] | None:
    if body.get("success") is not True:
        problems.add("HTTP 200 without success: true")
    data = body.get("data")
    if not isinstance(data, dict):
        problems.add("HTTP 200 without a data object")
        return None

    checker = _DATA_CHECKERS.get(endpoint)
    if checker is None:
        problems.add(f"no rules for endpoint {endpoint!r}")
        return data
    checker(data, request, problems)
    return data


def _check_error(
    endpoint: str,
    status: int,
    body: dict[str, Any],
    headers: dict[str, str],
    problems: _Problems,
) -> str | None:
    if body.get("success") is not False:
        problems.add(f"HTTP {status} without success: false")
    error = body.get("error")
    if not isinstance(error, dict):
        problems.add(f"HTTP {status} without an error object")
        return None

    code = error.get("code")
    message = error.get("message")
    timestamp = error.get("timestamp")
    if not isinstance(message, str) or not message.strip():
        problems.add("error.message is missing or empty")
    if not isinstance(timestamp, str) or not ERROR_TIMESTAMP.fullmatch(timestamp):
        problems.add(f"error.timestamp {timestamp!r} is not UTC ISO 8601 with milliseconds")
    if status == 429 and "retry-after" not in headers:
        problems.add("HTTP 429 without a Retry-After header")

    is_launcher = endpoint.startswith("launcher_")
    statuses = (LAUNCHER_ENDPOINT_STATUSES if is_launcher else GAME_ENDPOINT_STATUSES).get(
        endpoint, COMMON_STATUSES
    )
    codes = (LAUNCHER_ERROR_CODES if is_launcher else GAME_ERROR_CODES).get(status, frozenset())
    if status not in statuses:
        problems.add(f"HTTP {status} is not an answer of {endpoint}")
    if not isinstance(code, str):
        problems.add("error.code is missing")
        return None
    if code not in codes:
        problems.add(f"error code {code} does not belong to HTTP {status}")
    return code


def _require_int(data: dict[str, Any], field: str, problems: _Problems, minimum: int = 0) -> None:
    value = data.get(field)
    if type(value) is not int or value < minimum:
        problems.add(f"data.{field} {value!r} is not an integer >= {minimum}")


def _check_verify(data: dict[str, Any], request: dict[str, Any], problems: _Problems) -> None:
    is_valid = data.get("is_valid")
    if is_valid is True:
        if not GAME_SESSION_ID.fullmatch(str(data.get("game_session_id"))):
            problems.add(f"data.game_session_id {data.get('game_session_id')!r} is not gs_<uuid4>")
        if data.get("is_pc_cafe") is not True:
            problems.add("a valid verify without is_pc_cafe: true")
    elif is_valid is False:
        if data.get("reason") not in VERIFY_REASONS:
            problems.add(f"data.reason {data.get('reason')!r} is not a verify failure reason")
    else:
        problems.add(f"data.is_valid {is_valid!r} is not a boolean")


def _check_heartbeat(data: dict[str, Any], request: dict[str, Any], problems: _Problems) -> None:
    if data.get("result") not in HEARTBEAT_RESULTS:
        problems.add(f"data.result {data.get('result')!r} is not a heartbeat result")
    _require_int(data, "next_heartbeat_in", problems, minimum=1)
    _require_int(data, "play_duration_sec", problems)


def _check_check(data: dict[str, Any], request: dict[str, Any], problems: _Problems) -> None:
    if data.get("is_valid") is not True:
        problems.add("a successful check without is_valid: true")
    if data.get("is_pc_cafe") is not True:
        problems.add("a successful check without is_pc_cafe: true")
    sent = request.get("game_session_id")
    if sent is not None and data.get("game_session_id") != sent:
        problems.add(f"data.game_session_id {data.get('game_session_id')!r} is not {sent!r}")
    _require_int(data, "play_duration_sec", problems)


def _check_end(data: dict[str, Any], request: dict[str, Any], problems: _Problems) -> None:
    if data.get("result") != "SUCCESS":
        problems.add(f"data.result {data.get('result')!r} is not SUCCESS")
    _require_int(data, "play_duration_sec", problems)
    client = data.get("client_play_duration_sec", "missing")
    if client is not None and type(client) is not int:
        problems.add(f"data.client_play_duration_sec {client!r} is not an integer or null")
    if client != request.get("play_duration_sec"):
        problems.add(
            f"data.client_play_duration_sec {client!r} does not echo the sent "
            f"{request.get('play_duration_sec')!r}"
        )


def _check_launcher_start(
    data: dict[str, Any], request: dict[str, Any], problems: _Problems
) -> None:
    if not LAUNCHER_SESSION_ID.fullmatch(str(data.get("launcher_session_id"))):
        problems.add(f"data.launcher_session_id {data.get('launcher_session_id')!r} is not ls_")
    token = data.get("launcher_session_token")
    if not isinstance(token, str) or len(token) < 16:
        problems.add("data.launcher_session_token is missing or shorter than 16 characters")
    cafe = data.get("pc_cafe")
    if not isinstance(cafe, dict) or not cafe.get("id") or not cafe.get("name"):
        problems.add("data.pc_cafe is not an object with id and name")
    games = data.get("games")
    if not isinstance(games, list) or any(
        not isinstance(game, dict) or not game.get("game_id") or "name" not in game
        for game in games
    ):
        problems.add("data.games is not a list of objects with game_id and name")
    _require_int(data, "heartbeat_interval_sec", problems, minimum=1)


def _check_launcher_ott(data: dict[str, Any], request: dict[str, Any], problems: _Problems) -> None:
    ott = data.get("ott")
    if not isinstance(ott, str) or not UUID.fullmatch(ott):
        problems.add(f"data.ott {ott!r} is not a UUID")
    elif data.get("launch_data") != f"playwave_{ott}":
        problems.add(f"data.launch_data {data.get('launch_data')!r} is not playwave_<ott>")
    _require_int(data, "expires_in", problems, minimum=1)


def _check_launcher_heartbeat(
    data: dict[str, Any], request: dict[str, Any], problems: _Problems
) -> None:
    _require_int(data, "next_heartbeat_in", problems, minimum=1)


def _check_nothing(data: dict[str, Any], request: dict[str, Any], problems: _Problems) -> None:
    return None


_DATA_CHECKERS = {
    "verify": _check_verify,
    "heartbeat": _check_heartbeat,
    "check": _check_check,
    "end": _check_end,
    "launcher_start": _check_launcher_start,
    "launcher_ott": _check_launcher_ott,
    "launcher_heartbeat": _check_launcher_heartbeat,
    "launcher_end": _check_nothing,
}
