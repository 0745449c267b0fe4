"""`playwave launcher-keys` and `playwave sandbox cafe` on a real data directory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from playwave.cli.main import app
from playwave.services.keys import hash_secret

SECRET = "cli-test-secret"


@pytest.fixture
def invoke(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    for name in ("PLAYWAVE_DATABASE_URL", "PLAYWAVE_REDIS_URL", "PLAYWAVE_PARTNER_URL"):
        monkeypatch.delenv(name, raising=False)
    env = {
        "PLAYWAVE_DATA_DIR": str(tmp_path / "data"),
        "PLAYWAVE_SECRET_KEY": SECRET,
        "PLAYWAVE_LANG": "en",
    }
    runner = CliRunner()

    def run(*args: str, extra_env: dict[str, str] | None = None):
        return runner.invoke(app, list(args), env={**env, **(extra_env or {})})

    return run


def test_launcher_key_create_json(invoke):
    result = invoke("launcher-keys", "create", "--json")

    assert result.exit_code == 0, result.output
    created = json.loads(result.stdout)
    assert created["key_id"].startswith("lk_")
    assert created["secret"] == hash_secret(SECRET.encode(), "launcher-key", created["key_id"])


def test_launcher_key_create_text(invoke):
    result = invoke("launcher-keys", "create")

    assert result.exit_code == 0, result.output
    assert "key_id: lk_" in result.stdout
    assert "secret: " in result.stdout


def test_launcher_keys_list_and_revoke(invoke):
    first = json.loads(invoke("launcher-keys", "create", "--json").stdout)
    second = json.loads(invoke("launcher-keys", "create", "--json").stdout)

    revoked = invoke("launcher-keys", "revoke", first["key_id"])
    again = invoke("launcher-keys", "revoke", first["key_id"])
    listed = json.loads(invoke("launcher-keys", "list", "--json").stdout)["launcher_keys"]

    assert revoked.exit_code == 0
    assert again.exit_code == 1
    assert "not found or is already revoked" in again.output
    states = {row["key_id"]: row["revoked_at"] for row in listed}
    assert states[first["key_id"]] is not None
    assert states[second["key_id"]] is None
    assert "secret" not in json.dumps(listed)


def test_launcher_keys_list_empty(invoke):
    result = invoke("launcher-keys", "list")

    assert result.exit_code == 0
    assert "playwave launcher-keys create" in result.stdout


def test_launcher_key_messages_korean(invoke):
    created = json.loads(invoke("launcher-keys", "create", "--json").stdout)

    result = invoke("launcher-keys", "revoke", created["key_id"], extra_env={"PLAYWAVE_LANG": "ko"})

    assert result.exit_code == 0
    assert "폐기했습니다" in result.stdout


def test_sandbox_cafe_add_and_list(invoke):
    added = invoke(
        "sandbox",
        "cafe",
        "add",
        "--ip",
        "203.0.113.9",
        "--name",
        "Star PC",
        "--balance",
        "5000",
        "--json",
    )
    listed = invoke("sandbox", "cafe", "list", "--json")

    assert added.exit_code == 0, added.output
    cafe = json.loads(added.stdout)
    assert cafe["ip"] == "203.0.113.9"
    assert cafe["balance"] == 5000
    rows = json.loads(listed.stdout)["cafes"]
    assert [row["cafe_id"] for row in rows] == [cafe["cafe_id"]]
    assert rows[0]["name"] == "Star PC"


def test_sandbox_cafe_ipv6_normalised(invoke):
    added = invoke(
        "sandbox",
        "cafe",
        "add",
        "--ip",
        "2001:DB8:0:0::7",
        "--name",
        "V6 PC",
        "--balance",
        "0",
        "--json",
    )

    assert added.exit_code == 0, added.output
    assert json.loads(added.stdout)["ip"] == "2001:db8::7"


@pytest.mark.parametrize("ip", ["203.0.113.300", "cafe.example", ""])
def test_sandbox_cafe_bad_ip(invoke, ip: str):
    result = invoke("sandbox", "cafe", "add", "--ip", ip, "--name", "Bad", "--balance", "1")

    assert result.exit_code == 1
    assert "is not an IPv4 or IPv6 address" in result.output


def test_sandbox_cafe_negative_balance(invoke):
    result = invoke(
        "sandbox", "cafe", "add", "--ip", "203.0.113.9", "--name", "N", "--balance", "-1"
    )

    assert result.exit_code != 0


def test_sandbox_cafe_duplicate_ip(invoke):
    first = invoke("sandbox", "cafe", "add", "--ip", "203.0.113.9", "--name", "A", "--balance", "1")
    second = invoke(
        "sandbox", "cafe", "add", "--ip", "203.0.113.9", "--name", "B", "--balance", "1"
    )

    assert first.exit_code == 0, first.output
    assert second.exit_code == 1
    assert "already registered" in second.output


def test_sandbox_cafe_needs_sandbox_partner(invoke):
    pytest.importorskip("playwave.partner.http")

    result = invoke(
        "sandbox",
        "cafe",
        "list",
        extra_env={"PLAYWAVE_PARTNER_URL": "http://127.0.0.1:9"},
    )

    assert result.exit_code == 1
    assert "PLAYWAVE_PARTNER_URL" in result.output
