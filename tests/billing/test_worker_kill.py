"""A `playwave worker` killed with SIGKILL mid-dispatch loses no partner call and repeats none."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from playwave.api.app import create_app
from playwave.clock import ManualClock, SystemClock
from playwave.domain.billing import charge_for
from playwave.runtime import build_runtime
from playwave.services.billing import Billing
from playwave.services.ledger import build_ledger, check_against_partner, check_ledger
from playwave.settings import Settings
from playwave.stores.base import Game
from tests.billing.conftest import (
    SimulatorAdmin,
    fast_partner,
    gather_bounded,
    mint_cafe_ott,
    process_env,
    stop_process,
)
from tests.helpers import GameServer

GAME_ID = "game_0000000000c1"
PRICE = 1_000
SESSIONS = 150
PLAYED_SEC = 100


async def queue_billing_work(settings: Settings, partner_url: str) -> list[str]:
    """Play SESSIONS sessions for PLAYED_SEC each, leaving their usage reports and stops queued.

    The sessions ran an hour ago on a manual clock, so every queued call is due for the worker.
    """
    clock = ManualClock(SystemClock().now() - 3_600_000)
    runtime = await build_runtime(settings, clock=clock, partner=fast_partner(partner_url))
    try:
        await runtime.records.create_game(
            Game(GAME_ID, "Racing", rate_per_hour=600, active=True, created_at=clock.now())
        )
        issued = await runtime.api_keys.issue(GAME_ID, "live")
        app = create_app(runtime=runtime, run_jobs=False)
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))
        async with httpx.AsyncClient(
            transport=transport, base_url="http://playwave.test"
        ) as client:
            server = GameServer(client, issued.api_key, GAME_ID)
            grants = [
                await mint_cafe_ott(runtime, GAME_ID, f"pc-{number}", "cafe_kill")
                for number in range(SESSIONS)
            ]
            sessions = await gather_bounded(8, [server.start(grant) for grant in grants])

            clock.advance(70)
            billing = Billing(
                runtime.records, runtime.live, runtime.partner, clock, runtime.settings.timers
            )
            assert await billing.queue_usage_reports() == SESSIONS
            clock.advance(PLAYED_SEC - 70)
            for game_session_id in sessions:
                assert (await server.end(game_session_id)).status_code == 200
        assert await runtime.records.count_pending_partner_calls() == 2 * SESSIONS
        return sessions
    finally:
        await runtime.close()


def start_worker(data_dir: Path, partner_url: str, log_path: Path) -> subprocess.Popen[bytes]:
    env = process_env(
        PLAYWAVE_DATA_DIR=str(data_dir),
        PLAYWAVE_PARTNER_URL=partner_url,
        PLAYWAVE_SECRET_KEY="test-secret",
    )
    with log_path.open("ab") as log_file:
        return subprocess.Popen(
            [sys.executable, "-m", "playwave", "worker"],
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )


async def applied_stop_and_usage_keys(admin: SimulatorAdmin) -> int:
    state = await admin.state()
    return sum(1 for key in state["keys"] if not key.startswith("start:"))


@pytest.mark.slow
async def test_worker_killed_mid_run_charges_once(
    tmp_path: Path, partner_process: str, admin: SimulatorAdmin
):
    await admin.add_cafe("cafe_kill", balance=10_000_000)
    await admin.set_prices({GAME_ID: PRICE})
    settings = Settings(data_dir=tmp_path / "data", secret_key="test-secret", _env_file=None)
    sessions = await queue_billing_work(settings, partner_process)
    await admin.set_faults(latency_ms=150, error_rate=0.1, error_after_commit_rate=0.1)
    log_path = tmp_path / "worker.log"

    worker = start_worker(settings.data_dir, partner_process, log_path)
    try:
        deadline = time.monotonic() + 60
        while await applied_stop_and_usage_keys(admin) < SESSIONS // 3:
            assert time.monotonic() < deadline, log_path.read_text()[-3000:]
            assert worker.poll() is None, log_path.read_text()[-3000:]
            await asyncio.sleep(0.05)
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
    finally:
        stop_process(worker)
    applied_at_kill = await applied_stop_and_usage_keys(admin)
    assert applied_at_kill < 2 * SESSIONS

    # The restarted worker takes over the killed one's leased calls once their lease lapses.
    runtime = await build_runtime(settings, partner=fast_partner(partner_process))
    worker = start_worker(settings.data_dir, partner_process, log_path)
    try:
        deadline = time.monotonic() + 120
        while await runtime.records.count_pending_partner_calls() > 0:
            assert time.monotonic() < deadline, log_path.read_text()[-3000:]
            assert worker.poll() is None, log_path.read_text()[-3000:]
            await asyncio.sleep(0.25)
    finally:
        stop_process(worker)

    try:
        state = await admin.state()
        assert state["max_applications_per_key"] == 1
        assert state["keys_applied_more_than_once"] == []
        calls = await runtime.records.partner_calls_of(sessions)
        assert len(calls) == 2 * SESSIONS
        assert all(call.completed_at is not None for call in calls)
        assert all(call.result is not None and "rejected" not in call.result for call in calls)
        applied_keys = {key for key in state["keys"] if not key.startswith("start:")}
        assert applied_keys == {call.idempotency_key for call in calls}

        billings = {billing["game_session_id"]: billing for billing in state["billings"]}
        for game_session_id in sessions:
            assert billings[game_session_id]["stopped"] is True
            assert billings[game_session_id]["charged_seconds"] == PLAYED_SEC
            assert billings[game_session_id]["charged_amount"] == charge_for(PLAYED_SEC, PRICE)

        await admin.set_faults(latency_ms=0, error_rate=0.0, error_after_commit_rate=0.0)
        ledger = await build_ledger(runtime.records)
        assert check_ledger(ledger) == []
        assert await check_against_partner(ledger, runtime.partner) == []
        assert ledger.charged_amount == state["applied_amount"]
    finally:
        await runtime.close()
