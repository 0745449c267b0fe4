"""`playwave settle` on an embedded data directory, run as an operator would."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from playwave.cli.main import app
from playwave.clock import ManualClock
from playwave.domain.settlement import Month, month_bounds
from playwave.runtime import build_runtime
from playwave.settings import Settings
from playwave.stores.base import Game
from tests.settlement.conftest import end_session, start_session

JAN_START, FEB_START = month_bounds(Month(2026, 1), "Asia/Seoul")
HOUR = 3_600_000
GAME_ID = "game_0000000000c1"


@pytest.fixture
async def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An embedded data directory with two January sessions, one crossing into February."""
    directory = tmp_path / "data"
    settings = Settings(data_dir=directory, secret_key="cli-secret", _env_file=None)
    runtime = await build_runtime(settings, clock=ManualClock(JAN_START))
    try:
        await runtime.records.create_game(Game(GAME_ID, "Tycoon", 600, True, JAN_START))
        first = await start_session(runtime, GAME_ID, JAN_START + HOUR, user="1")
        await end_session(runtime, first, JAN_START + 2 * HOUR)
        second = await start_session(runtime, GAME_ID, FEB_START - HOUR, user="2")
        await end_session(runtime, second, FEB_START + HOUR)
    finally:
        await runtime.close()

    monkeypatch.setenv("PLAYWAVE_DATA_DIR", str(directory))
    monkeypatch.setenv("PLAYWAVE_SECRET_KEY", "cli-secret")
    monkeypatch.setenv("PLAYWAVE_LANG", "en")
    monkeypatch.delenv("PLAYWAVE_DATABASE_URL", raising=False)
    monkeypatch.delenv("PLAYWAVE_REDIS_URL", raising=False)
    return directory


def invoke(*args: str):
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def test_settle_prints_csv_on_stdout(data_dir: Path):
    result = invoke("settle", "--month", "2026-01")

    assert result.exit_code == 0, result.output
    [row] = list(csv.DictReader(io.StringIO(result.stdout)))
    assert row["game_id"] == GAME_ID
    assert (row["sessions"], row["billable_sec"], row["amount"]) == ("2", "7200", "1200")
    assert "is open" in result.stderr


def test_settle_close_twice_gives_same_bytes(data_dir: Path, tmp_path: Path):
    first = tmp_path / "first.json"
    second = tmp_path / "second.json"

    closing = invoke(
        "settle", "--month", "2026-01", "--close", "--format", "json", "--output", str(first)
    )
    rerun = invoke("settle", "--month", "2026-01", "--format", "json", "--output", str(second))

    assert closing.exit_code == 0, closing.output
    assert rerun.exit_code == 0, rerun.output
    assert first.read_bytes() == second.read_bytes()
    assert json.loads(first.read_text())["status"] == "closed"
    assert "is closed" in rerun.stderr


def test_settle_detail_json_lines(data_dir: Path):
    result = invoke("settle", "--month", "2026-02", "--detail", "--format", "json")

    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(row["kind"], row["play_sec"]) for row in rows] == [("play", 3600)]


def test_settle_adjust_records_author(data_dir: Path):
    result = invoke(
        "settle",
        "adjust",
        "--game",
        GAME_ID,
        "--seconds",
        "-60",
        "--reason",
        "duplicate launch",
        "--by",
        "ops-kim",
        "--month",
        "2026-01",
        "--json",
    )

    assert result.exit_code == 0, result.output
    adjustment = json.loads(result.stdout)
    assert adjustment["created_by"] == "ops-kim"
    assert adjustment["reason"] == "duplicate launch"
    assert adjustment["amount"] == -10
    summary = invoke("settle", "--month", "2026-01", "--format", "json")
    assert json.loads(summary.stdout)["totals"]["correction_amount"] == -10


def test_settle_rejects_bad_month(data_dir: Path):
    missing = invoke("settle")
    malformed = invoke("settle", "--month", "2026-13")
    future = invoke("settle", "--month", "2999-01", "--close")

    assert missing.exit_code == 1
    assert "--month is required" in missing.stderr
    assert malformed.exit_code == 1
    assert "out of range" in malformed.stderr
    assert future.exit_code == 1
    assert "not over yet" in future.stderr
