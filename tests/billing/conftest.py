"""Fixtures for billing: the partner simulator in-process (ASGI) or as its own process."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from playwave.clock import ManualClock
from playwave.partner.http import HttpPartner
from playwave.partner.simulator import (
    PartnerSimulator,
    create_sandbox_tables,
    create_simulator_app,
)
from playwave.runtime import Runtime, build_runtime
from playwave.services.billing import Billing
from playwave.settings import Settings
from playwave.stores.base import OttGrant
from playwave.stores.sql.engine import create_engine

SIM_URL = "http://partner.test"


def fast_partner(base_url: str, **options: Any) -> HttpPartner:
    """Return an HttpPartner with short backoffs, so retries cost milliseconds in tests."""
    options.setdefault("backoff_base", 0.005)
    options.setdefault("backoff_max", 0.02)
    options.setdefault("rng", random.Random(3))
    return HttpPartner(base_url, **options)


@pytest.fixture
async def sim_app(tmp_path: Path) -> AsyncIterator[Starlette]:
    """The simulator app on its own SQLite file, for use through httpx.ASGITransport."""
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'partner-sim.sqlite3'}")
    await create_sandbox_tables(engine)
    app = create_simulator_app(engine=engine, seed=11)
    yield app
    await engine.dispose()


@pytest.fixture
def simulator(sim_app: Starlette) -> PartnerSimulator:
    return sim_app.state.simulator


@pytest.fixture
def partner(sim_app: Starlette) -> HttpPartner:
    return fast_partner(SIM_URL, transport=httpx.ASGITransport(app=sim_app))


@pytest.fixture
async def runtime(
    settings: Settings, clock: ManualClock, partner: HttpPartner
) -> AsyncIterator[Runtime]:
    """The server runtime billing through `partner` (the HTTP client onto the simulator)."""
    runtime = await build_runtime(settings, clock=clock, partner=partner)
    yield runtime
    await runtime.close()


@pytest.fixture
def billing(runtime: Runtime) -> Billing:
    return Billing(
        runtime.records,
        runtime.live,
        runtime.partner,
        runtime.clock,
        runtime.settings.timers,
        rng=random.Random(5),
    )


async def mint_cafe_ott(runtime: Runtime, game_id: str, pc_id: str, cafe_id: str) -> OttGrant:
    """Issue an OTT for `cafe_id`, as the launcher API does for a PC in that cafe."""
    grant = OttGrant.issue(
        game_id=game_id,
        pc_id=pc_id,
        cafe_id=cafe_id,
        launcher_session_id=None,
        now=runtime.clock.now(),
        ttl_ms=runtime.settings.timers.ott_ttl_ms,
    )
    await runtime.live.put_ott(grant)
    return grant


async def drain_queue(
    runtime: Runtime, billing: Billing, clock: ManualClock, *, rounds: int = 60
) -> int:
    """Dispatch partner calls until none is pending, moving the clock past each backoff.

    Returns the rounds it took; fails the test when calls are still pending after `rounds`.
    """
    for round_number in range(1, rounds + 1):
        await billing.dispatch_partner_calls()
        if await runtime.records.count_pending_partner_calls() == 0:
            return round_number
        clock.advance(billing.policy.retry_max_ms / 1000 + 1)
    pending = await runtime.records.count_pending_partner_calls()
    raise AssertionError(f"{pending} partner calls still pending after {rounds} rounds")


# The simulator as its own process.


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def process_env(**extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("PLAYWAVE_")}
    env.update({"PLAYWAVE_LOG_LEVEL": "WARNING", "PLAYWAVE_LANG": "en"})
    env.update(extra)
    return env


def wait_for_http(url: str, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"process for {url} exited with status {process.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer within {timeout} s")


def stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def partner_process(tmp_path: Path) -> Iterator[str]:
    """Run `playwave partner-sim` on a free loopback port; yield its base URL."""
    port = free_port()
    log_path = tmp_path / "partner-sim.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "playwave",
                "partner-sim",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--data-dir",
                str(tmp_path / "partner-sim"),
                "--seed",
                "17",
            ],
            env=process_env(),
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        base_url = f"http://127.0.0.1:{port}"
        try:
            wait_for_http(f"{base_url}/healthz", process)
            yield base_url
        finally:
            stop_process(process)


class SimulatorAdmin:
    """The simulator's admin endpoints over real HTTP."""

    def __init__(self, base_url: str) -> None:
        self.client = httpx.AsyncClient(base_url=base_url, timeout=10)

    async def add_cafe(self, cafe_id: str, balance: int, ip: str | None = None) -> None:
        response = await self.client.post(
            "/admin/cafes", json={"cafe_id": cafe_id, "name": cafe_id, "ip": ip, "balance": balance}
        )
        assert response.status_code == 201, response.text

    async def set_faults(self, **faults: Any) -> dict[str, Any]:
        response = await self.client.patch("/admin/faults", json=faults)
        assert response.status_code == 200, response.text
        return response.json()

    async def set_prices(self, games: dict[str, int]) -> None:
        response = await self.client.put("/admin/prices", json={"games": games})
        assert response.status_code == 200, response.text

    async def state(self) -> dict[str, Any]:
        response = await self.client.get("/admin/state")
        assert response.status_code == 200, response.text
        return response.json()

    async def close(self) -> None:
        await self.client.aclose()


@pytest.fixture
async def admin(partner_process: str) -> AsyncIterator[SimulatorAdmin]:
    admin = SimulatorAdmin(partner_process)
    yield admin
    await admin.close()


@pytest.fixture
def embedded_settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", secret_key="test-secret", _env_file=None)


async def gather_bounded(limit: int, coroutines: list[Any]) -> list[Any]:
    gate = asyncio.Semaphore(limit)

    async def run(coroutine: Any) -> Any:
        async with gate:
            return await coroutine

    return await asyncio.gather(*(run(coroutine) for coroutine in coroutines))
