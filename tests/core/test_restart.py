"""Records survive a restart, and deadlines that passed while the server was down are kept."""

from __future__ import annotations

from playwave.clock import ManualClock
from playwave.runtime import build_runtime
from playwave.settings import Settings
from playwave.stores.base import Game
from tests.helpers import mint_ott

START = 1_767_225_600_000


async def test_restart_ends_overdue_sessions(tmp_path):
    settings = Settings(data_dir=tmp_path / "data", secret_key="s", _env_file=None)
    clock = ManualClock(START)
    first = await build_runtime(settings, clock=clock)
    game = Game("game_0000000000aa", "Obby", 600, True, START)
    await first.records.create_game(game)
    issued = await first.api_keys.issue(game.game_id, "live")
    key = await first.api_keys.authenticate(issued.api_key)

    grant = await mint_ott(first, game.game_id, "pc-1")
    outcome = await first.sessions.verify(key, grant.ott, "42")
    clock.advance(100)
    await first.sessions.heartbeat(key, outcome.game_session_id, "42")
    await first.close()  # stopping drains nothing here: no jobs were started

    clock.advance(3600)  # the server is down for an hour
    second = await build_runtime(settings, clock=clock)
    try:
        await second.start_jobs()
        await second.stop_jobs()
        record = await second.records.get_session(outcome.game_session_id)
    finally:
        await second.close()

    assert record.end_reason == "HEARTBEAT_TIMEOUT"
    assert record.ended_at == START + 100_000
    assert record.play_duration_sec == 100


async def test_restart_keeps_live_session(tmp_path):
    settings = Settings(data_dir=tmp_path / "data", secret_key="s", _env_file=None)
    clock = ManualClock(START)
    first = await build_runtime(settings, clock=clock)
    game = Game("game_0000000000aa", "Obby", 600, True, START)
    await first.records.create_game(game)
    issued = await first.api_keys.issue(game.game_id, "live")
    key = await first.api_keys.authenticate(issued.api_key)
    grant = await mint_ott(first, game.game_id, "pc-1")
    outcome = await first.sessions.verify(key, grant.ott, "42")
    await first.close()

    clock.advance(60)
    second = await build_runtime(settings, clock=clock)
    try:
        key = await second.api_keys.authenticate(issued.api_key)
        answer = await second.sessions.heartbeat(key, outcome.game_session_id, "42")
    finally:
        await second.close()

    assert answer.result == "OK"
    assert answer.play_duration_sec == 60
