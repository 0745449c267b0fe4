"""Bad input answers the documented error envelope with a clear message, never a 500."""

from __future__ import annotations

import json

import pytest

from tests.helpers import GameServer

SESSION = "gs_550e8400-e29b-41d4-a716-446655440000"
OTT = "550e8400-e29b-41d4-a716-446655440000"

# (method, path, raw body, field named in the message)
BAD_BODIES = [
    ("POST", "verify", {"provider_user_id": "1"}, "ott"),
    ("POST", "verify", {"ott": OTT}, "provider_user_id"),
    ("POST", "verify", {"ott": 12345, "provider_user_id": "1"}, "ott"),
    ("POST", "verify", {"ott": OTT, "provider_user_id": 123456789}, "provider_user_id"),
    ("POST", "verify", {"ott": "not-a-uuid", "provider_user_id": "1"}, "ott"),
    ("POST", "verify", {"ott": f"roblox_{OTT}", "provider_user_id": "1"}, "ott"),
    ("POST", "verify", {"ott": OTT, "provider_user_id": "12ab"}, "provider_user_id"),
    ("POST", "verify", {"ott": OTT, "provider_user_id": ""}, "provider_user_id"),
    ("POST", "verify", {"ott": None, "provider_user_id": "1"}, "ott"),
    ("PATCH", "heartbeat", {"provider_user_id": "1"}, "game_session_id"),
    ("PATCH", "heartbeat", {"game_session_id": SESSION}, "provider_user_id"),
    (
        "PATCH",
        "heartbeat",
        {"game_session_id": "gs_123", "provider_user_id": "1"},
        "game_session_id",
    ),
    ("PATCH", "heartbeat", {"game_session_id": OTT, "provider_user_id": "1"}, "game_session_id"),
    ("PATCH", "heartbeat", {"game_session_id": ["x"], "provider_user_id": "1"}, "game_session_id"),
    ("DELETE", "end", {}, "game_session_id"),
    (
        "DELETE",
        "end",
        {"game_session_id": SESSION, "play_duration_sec": "1795"},
        "play_duration_sec",
    ),
    ("DELETE", "end", {"game_session_id": SESSION, "play_duration_sec": -1}, "play_duration_sec"),
    ("DELETE", "end", {"game_session_id": SESSION, "play_duration_sec": 1.5}, "play_duration_sec"),
    ("DELETE", "end", {"game_session_id": SESSION, "play_duration_sec": True}, "play_duration_sec"),
    ("DELETE", "end", {"game_session_id": f"ls_{OTT}"}, "game_session_id"),
    ("POST", "check", {"game_session_id": SESSION, "provider_user_id": 7}, "provider_user_id"),
]


def assert_bad_request(response, field: str | None = None) -> str:
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["success"] is False
    assert body["error"]["code"] == "BAD_REQUEST"
    assert body["request_id"] == response.headers["x-request-id"]
    message = body["error"]["message"]
    if field is not None:
        assert f"'{field}'" in message
    return message


@pytest.mark.parametrize(("method", "path", "body", "field"), BAD_BODIES)
async def test_invalid_field(game_server: GameServer, method, path, body, field):
    response = await game_server.call(method, path, body)

    assert_bad_request(response, field)


@pytest.mark.parametrize(
    "path_method",
    [("POST", "verify"), ("PATCH", "heartbeat"), ("DELETE", "end"), ("POST", "check")],
)
@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"{not json", "not valid JSON"),
        (b"", "missing"),
        (b"[1, 2]", "JSON object"),
        (b'"text"', "JSON object"),
        (b"null", "JSON object"),
    ],
)
async def test_unparseable_body(game_server: GameServer, path_method, raw, expected):
    method, path = path_method
    response = await game_server.client.request(
        method,
        f"/v1/game/session/{path}",
        content=raw,
        headers={"X-Api-Key": game_server.api_key, "Content-Type": "application/json"},
    )

    assert expected in assert_bad_request(response)


async def test_wrong_content_type(game_server: GameServer):
    response = await game_server.client.post(
        "/v1/game/session/verify",
        content=json.dumps({"ott": OTT, "provider_user_id": "1"}),
        headers={"X-Api-Key": game_server.api_key, "Content-Type": "text/plain"},
    )

    assert "Content-Type" in assert_bad_request(response)


async def test_form_content_type(game_server: GameServer):
    response = await game_server.client.post(
        "/v1/game/session/verify",
        data={"ott": OTT, "provider_user_id": "1"},
        headers={"X-Api-Key": game_server.api_key},
    )

    assert "Content-Type" in assert_bad_request(response)


async def test_oversized_body(game_server: GameServer):
    body = {"ott": OTT, "provider_user_id": "1", "padding": "x" * 20_000}

    response = await game_server.call("POST", "verify", body)

    assert "larger than the limit" in assert_bad_request(response)


async def test_oversized_chunked_body(game_server: GameServer):
    async def chunks():
        for _ in range(40):
            yield b" " * 1024

    response = await game_server.client.post(
        "/v1/game/session/verify",
        content=chunks(),
        headers={"X-Api-Key": game_server.api_key, "Content-Type": "application/json"},
    )

    assert "larger than the limit" in assert_bad_request(response)


async def test_unknown_fields_ignored(game_server: GameServer, ott):
    grant = await ott()

    response = await game_server.call(
        "POST", "verify", {"ott": grant.ott, "provider_user_id": "1", "place_id": 42}
    )

    assert response.json()["data"]["is_valid"] is True


async def test_unknown_route(game_server: GameServer):
    response = await game_server.client.get("/v1/game/session/nope")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "NOT_FOUND"
    assert response.json()["request_id"] == response.headers["x-request-id"]


async def test_wrong_method(game_server: GameServer):
    response = await game_server.client.get("/v1/game/session/verify")

    assert response.status_code == 405
    assert response.json()["error"]["code"] == "METHOD_NOT_ALLOWED"


async def test_incoming_request_id_reused(game_server: GameServer):
    response = await game_server.client.get(
        "/healthz", headers={"X-Request-Id": "trace-0123456789"}
    )

    assert response.headers["x-request-id"] == "trace-0123456789"


async def test_invalid_request_id_replaced(game_server: GameServer):
    response = await game_server.client.get("/healthz", headers={"X-Request-Id": "bad id!"})

    assert response.headers["x-request-id"].startswith("req_")
