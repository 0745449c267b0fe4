"""The README's flow against a real `playwave serve` process, with the CLI beside it."""

from __future__ import annotations

import subprocess
import sys
import time

import httpx

from tests.processes import playwave_env, run_cli, running_server


def test_embedded_server_flow(tmp_path):
    env = playwave_env(tmp_path / "data")

    with running_server(env) as base_url:
        game = run_cli(env, "games", "create", "--name", "Obby Tower", "--rate-per-hour", "600")
        key = run_cli(env, "keys", "create", "--game", game["game_id"], "--env", "live")
        ott = run_cli(env, "sandbox", "ott", "--game", game["game_id"], "--pc", "pc-1")
        headers = {"X-Api-Key": key["api_key"], "Content-Type": "application/json"}

        with httpx.Client(base_url=base_url, headers=headers, timeout=10) as client:
            verify = client.post(
                "/v1/game/session/verify",
                json={"ott": ott["launch_data"], "provider_user_id": "123"},
            )
            session_id = verify.json()["data"]["game_session_id"]
            heartbeat = client.patch(
                "/v1/game/session/heartbeat",
                json={"game_session_id": session_id, "provider_user_id": "123"},
            )
            end = client.request(
                "DELETE",
                "/v1/game/session/end",
                json={"game_session_id": session_id, "play_duration_sec": 1},
            )
            end_again = client.request(
                "DELETE", "/v1/game/session/end", json={"game_session_id": session_id}
            )
            heartbeat_after = client.patch(
                "/v1/game/session/heartbeat",
                json={"game_session_id": session_id, "provider_user_id": "123"},
            )

    assert verify.json()["data"]["is_valid"] is True
    assert heartbeat.json()["data"]["result"] == "OK"
    assert end.json()["data"]["result"] == "SUCCESS"
    assert end.json()["data"]["client_play_duration_sec"] == 1
    assert end_again.status_code == 409
    assert end_again.json()["error"]["code"] == "ALREADY_ENDED"
    assert heartbeat_after.status_code == 410
    assert heartbeat_after.json()["error"]["code"] == "SESSION_ENDED"


def test_revoked_key_rejected_by_running_server(tmp_path):
    env = playwave_env(tmp_path / "data")

    with running_server(env) as base_url:
        game = run_cli(env, "games", "create", "--name", "Obby")
        key = run_cli(env, "keys", "create", "--game", game["game_id"], "--env", "dev")
        headers = {"X-Api-Key": key["api_key"]}
        body = {"ott": "550e8400-e29b-41d4-a716-446655440000", "provider_user_id": "1"}
        before = httpx.post(f"{base_url}/v1/game/session/verify", json=body, headers=headers)

        revoke = subprocess.run(
            [sys.executable, "-m", "playwave", "keys", "revoke", key["key_id"]],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )

        # The server caches key lookups for at most two seconds.
        deadline = time.monotonic() + 5
        status = None
        while time.monotonic() < deadline:
            status = httpx.post(
                f"{base_url}/v1/game/session/verify", json=body, headers=headers
            ).status_code
            if status == 401:
                break
            time.sleep(0.2)

    assert before.status_code == 200
    assert revoke.returncode == 0
    assert status == 401
