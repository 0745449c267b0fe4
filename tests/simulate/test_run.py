"""A small simulated day against a real `playwave serve` process on loopback."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from playwave.settings import Settings
from playwave.simulate.config import Behaviour, SimulationConfig, scaled_settings
from playwave.simulate.engine import run_simulation
from playwave.simulate.report import write_report
from tests.backends import redis_url

TIME_SCALE = 120.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(params=["embedded", "postgres-redis"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Settings]]:
    """Start the server with timers divided by TIME_SCALE; yield its URL and its settings.

    The embedded variant is one `playwave serve`. The production variant is two API processes
    and a separate `playwave worker` on a fresh PostgreSQL database and a Redis key prefix.
    """
    data_dir = tmp_path / "data"
    env = {name: value for name, value in os.environ.items() if not name.startswith("PLAYWAVE_")}
    env.update(scaled_settings(TIME_SCALE))
    env.update({"PLAYWAVE_DATA_DIR": str(data_dir), "PLAYWAVE_LANG": "en"})
    settings = Settings(data_dir=data_dir, _env_file=None)
    serve_args: list[str] = []
    if request.param == "postgres-redis":
        production = {
            "PLAYWAVE_DATABASE_URL": request.getfixturevalue("postgres_database"),
            "PLAYWAVE_REDIS_URL": redis_url(),
            "PLAYWAVE_REDIS_PREFIX": request.getfixturevalue("redis_namespace"),
            "PLAYWAVE_SECRET_KEY": "simulation-test-secret",
        }
        env.update(production)
        settings = Settings(
            data_dir=data_dir,
            database_url=production["PLAYWAVE_DATABASE_URL"],
            redis_url=production["PLAYWAVE_REDIS_URL"],
            redis_prefix=production["PLAYWAVE_REDIS_PREFIX"],
            secret_key=production["PLAYWAVE_SECRET_KEY"],
            _env_file=None,
        )
        serve_args = ["--workers", "2"]

    port = free_port()
    log_path = tmp_path / "server.log"
    processes = []
    with log_path.open("wb") as log_file:
        processes.append(
            subprocess.Popen(
                [sys.executable, "-m", "playwave", "serve", "--port", str(port), *serve_args],
                env=env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        )
        if serve_args:
            processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "playwave", "worker"],
                    env=env,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                )
            )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert all(process.poll() is None for process in processes), log_path.read_text()
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "server did not become ready"
            time.sleep(0.1)
        yield url, settings
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


async def test_small_day_passes(server: tuple[str, Settings], tmp_path: Path) -> None:
    url, settings = server
    # More crashes and stalls than the defaults, so that half an hour shows server-side ends.
    behaviour = Behaviour(
        stalled_game_server=0.03,
        instance_lifetime_mean=1800,
        instance_crash_share=0.5,
        game_session_mean=8 * 60,
        visit_min=20 * 60,
        visit_max=40 * 60,
    )
    config = SimulationConfig(
        url=url,
        cafes=3,
        seats=4,
        games=2,
        hours=0.5,
        time_scale=TIME_SCALE,
        seed=3,
        out_dir=tmp_path / "report",
        drain_timeout_sec=20,
        behaviour=behaviour,
    )
    result = await run_simulation(config, settings)
    summary = write_report(result, config.out_dir)

    assert summary["contract_violations"] == 0, summary["contract_violation_examples"]
    assert summary["billing_mismatches"] == 0, summary["billing_mismatch_examples"]
    assert summary["sessions_not_ended"] == 0
    assert summary["passed"] is True
    assert "NORMAL" in summary["end_reasons"]
    assert "HEARTBEAT_TIMEOUT" in summary["end_reasons"]
    # Customers arrive at random (exponential gaps), so how many of the 12 seats open a
    # launcher within the half hour depends on timing; most of them must.
    assert summary["launcher_sessions"] >= 8

    written = json.loads((config.out_dir / "report.json").read_text())
    assert written["sessions"] == summary["sessions"]
    assert (config.out_dir / "chart.png").read_bytes().startswith(b"\x89PNG")
    assert (config.out_dir / "timeline.csv").read_text().startswith("simulated_hours,")
    assert "# PlayWave simulation: PASSED" in (config.out_dir / "report.md").read_text()


def test_simulate_rejects_remote_url(tmp_path: Path) -> None:
    env = {name: value for name, value in os.environ.items() if not name.startswith("PLAYWAVE_")}
    env.update({"PLAYWAVE_DATA_DIR": str(tmp_path / "data"), "PLAYWAVE_LANG": "en"})

    result = subprocess.run(
        [sys.executable, "-m", "playwave", "simulate", "--url", "http://10.0.0.5:8000"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 1
    assert "not a loopback address" in result.stderr
