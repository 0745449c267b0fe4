"""Health, readiness, metrics, the OpenAPI document and what the logs may contain."""

from __future__ import annotations

import logging

from tests.helpers import GameServer


async def test_healthz(client):
    response = await client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readyz(client):
    response = await client.get("/readyz")

    assert response.status_code == 200
    assert response.json()["checks"] == {"records": "ok", "live": "ok"}


async def test_metrics_count_routes_and_ends(game_server: GameServer, ott, runtime):
    session_id = await game_server.start(await ott())
    await game_server.heartbeat(session_id)
    await game_server.end(session_id)
    await runtime.jobs_by_name["count_live"].step()

    text = (await game_server.client.get("/metrics")).text

    assert 'route="/v1/game/session/heartbeat"' in text
    assert "playwave_http_request_seconds_bucket" in text
    assert 'playwave_sessions_ended_total{reason="NORMAL"}' in text
    assert "playwave_live_sessions 0.0" in text


async def test_openapi_lists_game_routes(client):
    document = (await client.get("/openapi.json")).json()

    paths = document["paths"]
    assert "post" in paths["/v1/game/session/verify"]
    assert "patch" in paths["/v1/game/session/heartbeat"]
    assert "delete" in paths["/v1/game/session/end"]
    assert "post" in paths["/v1/game/session/check"]
    assert (await client.get("/docs")).status_code == 200
    assert "422" not in paths["/v1/game/session/verify"]["post"]["responses"]
    assert "400" in paths["/v1/game/session/verify"]["post"]["responses"]


async def test_logs_never_contain_api_key(game_server: GameServer, ott, caplog):
    caplog.set_level(logging.DEBUG)
    grant = await ott()

    session_id = await game_server.start(grant)
    await game_server.heartbeat(session_id)
    await game_server.verify("550e8400-e29b-41d4-a716-446655440000")
    await game_server.end(session_id)

    assert game_server.api_key not in caplog.text
    assert session_id in caplog.text
