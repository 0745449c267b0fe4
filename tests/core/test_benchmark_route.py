"""The no-op route that benchmarks compare the game session routes against."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest

from playwave.api.app import create_app
from playwave.runtime import Runtime
from playwave.settings import Settings
from playwave.stores.base import Game

NOOP = "/v1/bench/noop"
HEARTBEAT_BODY = {
    "game_session_id": "gs_550e8400-e29b-41d4-a716-446655440000",
    "provider_user_id": "123456789",
}


async def _client(runtime: Runtime, settings: Settings) -> httpx.AsyncClient:
    app = create_app(settings, runtime=runtime, run_jobs=False)
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://playwave.test")


@pytest.fixture
async def bench_client(runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    settings = runtime.settings.model_copy(update={"benchmark_routes": True})
    async with await _client(runtime, settings) as client:
        yield client


@pytest.fixture
async def api_key(runtime: Runtime, game: Game) -> str:
    issued = await runtime.api_keys.issue(game.game_id, "live")
    return issued.api_key


def _headers(api_key: str | None) -> dict[str, str]:
    headers = {"Content-Type": "application/json"}
    if api_key is not None:
        headers["X-Api-Key"] = api_key
    return headers


def test_setting_off_by_default():
    assert Settings(_env_file=None).benchmark_routes is False


async def test_noop_absent_by_default(runtime: Runtime, client: httpx.AsyncClient, api_key: str):
    assert runtime.settings.benchmark_routes is False

    response = await client.patch(
        NOOP, content=json.dumps(HEARTBEAT_BODY), headers=_headers(api_key)
    )

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "NOT_FOUND"


async def test_noop_absent_from_openapi(client: httpx.AsyncClient):
    response = await client.get("/openapi.json")

    assert response.status_code == 200
    assert NOOP not in response.json()["paths"]


@pytest.mark.parametrize("method", ["PATCH", "POST", "DELETE"])
async def test_noop_answers_envelope(bench_client: httpx.AsyncClient, api_key: str, method: str):
    response = await bench_client.request(
        method, NOOP, content=json.dumps(HEARTBEAT_BODY), headers=_headers(api_key)
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["success"] is True
    assert body["request_id"].startswith("req_")
    assert response.headers["x-request-id"] == body["request_id"]
    assert body["data"] == {"result": "OK", "next_heartbeat_in": 120, "play_duration_sec": 0}


async def test_noop_accepts_verify_and_end_bodies(bench_client: httpx.AsyncClient, api_key: str):
    verify_body = {
        "ott": "playwave_550e8400-e29b-41d4-a716-446655440000",
        "provider_user_id": "123456789",
    }
    end_body = {"game_session_id": HEARTBEAT_BODY["game_session_id"], "play_duration_sec": 1795}

    verify = await bench_client.post(
        NOOP, content=json.dumps(verify_body), headers=_headers(api_key)
    )
    end = await bench_client.request(
        "DELETE", NOOP, content=json.dumps(end_body), headers=_headers(api_key)
    )

    assert verify.status_code == 200, verify.text
    assert end.status_code == 200, end.text


async def test_noop_requires_api_key(bench_client: httpx.AsyncClient):
    missing = await bench_client.patch(
        NOOP, content=json.dumps(HEARTBEAT_BODY), headers=_headers(None)
    )
    unknown = await bench_client.patch(
        NOOP, content=json.dumps(HEARTBEAT_BODY), headers=_headers("pw_live_unknown")
    )

    assert missing.status_code == 401
    assert missing.json()["error"]["code"] == "INVALID_API_KEY"
    assert unknown.status_code == 401
    assert unknown.json()["error"]["code"] == "INVALID_API_KEY"


async def test_noop_checks_fields(bench_client: httpx.AsyncClient, api_key: str):
    malformed_id = {**HEARTBEAT_BODY, "game_session_id": "gs_not-a-uuid"}
    wrong_type = {**HEARTBEAT_BODY, "provider_user_id": 123456789}

    bad_id = await bench_client.patch(
        NOOP, content=json.dumps(malformed_id), headers=_headers(api_key)
    )
    bad_type = await bench_client.patch(
        NOOP, content=json.dumps(wrong_type), headers=_headers(api_key)
    )
    not_json = await bench_client.patch(NOOP, content=b"{", headers=_headers(api_key))

    assert bad_id.status_code == 400
    assert "game_session_id" in bad_id.json()["error"]["message"]
    assert bad_type.status_code == 400
    assert "provider_user_id" in bad_type.json()["error"]["message"]
    assert not_json.status_code == 400
    assert not_json.json()["error"]["code"] == "BAD_REQUEST"


async def test_noop_enforces_body_limit(bench_client: httpx.AsyncClient, api_key: str):
    oversized = {**HEARTBEAT_BODY, "padding": "x" * 20_000}

    response = await bench_client.patch(
        NOOP, content=json.dumps(oversized), headers=_headers(api_key)
    )

    assert response.status_code == 400
    assert "larger than the limit" in response.json()["error"]["message"]
