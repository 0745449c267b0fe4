"""Run a simulation: prepare, check the server's timers, play the day, drain and collect."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx
from rich.console import Console
from rich.live import Live
from rich.table import Table

from playwave.domain.lifecycle import GameSession, SessionState
from playwave.runtime import build_runtime
from playwave.settings import Settings
from playwave.simulate.client import (
    HttpEndpoint,
    LauncherApi,
    NotLoopback,
    can_bind,
    loopback_host,
)
from playwave.simulate.clock import SimClock
from playwave.simulate.config import SimulationConfig, game_server_ip, scaled_settings
from playwave.simulate.ledger import BillingMismatch, check_billing
from playwave.simulate.players import Seat, instance_chaos
from playwave.simulate.setup import SetupError, issue_launcher_key, launcher_keys_of, prepare
from playwave.simulate.stats import CallStats, Sample
from playwave.simulate.world import World, log

# How often the progress display and the timeline sample the run, in real seconds.
SAMPLE_INTERVAL_SEC = 1.0
# How many sessions are read from the records at a time after the run.
COLLECT_BATCH = 200


@dataclass
class RunResult:
    """Everything the report needs from one run."""

    config: SimulationConfig
    world: World
    records: dict[str, GameSession | None]
    mismatches: list[BillingMismatch]
    real_seconds: float
    unfinished_tasks: int
    server_settings: dict[str, str]

    @property
    def failed(self) -> bool:
        """Return whether the run found a problem; a run that started no session proves nothing."""
        return (
            bool(self.mismatches) or self.world.stats.violation_count > 0 or not self.world.truths
        )


def check_addresses(config: SimulationConfig) -> None:
    """Refuse a non-loopback server and source addresses this machine cannot use."""
    host = loopback_host(config.url)
    if host.version == 6:
        raise SetupError(
            "simulate binds each cafe to its own 127.x.y.z source address; use an IPv4 "
            "loopback --url such as http://127.0.0.1:8000"
        )
    from playwave.simulate.config import cafe_ip

    for address in (cafe_ip(0), cafe_ip(config.cafes - 1), game_server_ip(config.games - 1)):
        if not can_bind(address):
            raise SetupError(
                f"this machine cannot send from loopback address {address}; simulate needs the "
                "whole 127.0.0.0/8 network on the loopback interface (as Linux has by default)"
            )


async def preflight(config: SimulationConfig, key_id: str, secret: str) -> None:
    """Check that the server is up, shares our data and runs with the scaled timers.

    The check starts and ends one launcher session from 127.0.0.1, which the sandbox partner
    treats as its demo cafe, so it needs none of the run's cafes.
    """
    async with httpx.AsyncClient(base_url=config.url, timeout=10, trust_env=False) as http:
        try:
            ready = await http.get("/readyz")
        except httpx.HTTPError as error:
            raise SetupError(f"the server at {config.url} is not reachable: {error}") from error
    if ready.status_code != 200:
        raise SetupError(
            f"the server at {config.url} is not ready: GET /readyz {ready.status_code}"
        )

    endpoint = HttpEndpoint(config.url, None, CallStats(), asyncio.Semaphore(1))
    launcher = LauncherApi(endpoint, key_id, secret)
    try:
        answer = await launcher.start(f"sim-preflight-{config.seed}", "192.168.0.1")
        if answer.ok:
            await launcher.end()
    finally:
        await endpoint.close()
    if answer.code == "UNKNOWN_KEY":
        raise SetupError(
            "the server does not know the launcher key simulate just created: run simulate with "
            "the server's PLAYWAVE_DATA_DIR (or PLAYWAVE_DATABASE_URL), or pass --data-dir"
        )
    if not answer.ok:
        raise SetupError(f"the preflight launcher start failed: HTTP {answer.status} {answer.code}")

    expected = config.expected_timer("PLAYWAVE_LAUNCHER_HEARTBEAT_SEC")
    advertised = answer.data.get("heartbeat_interval_sec")
    if advertised != expected:
        raise SetupError(
            f"the server advertises a launcher heartbeat of {advertised} s, but time scale "
            f"{config.time_scale:g} needs {expected} s: start the server with the settings "
            "that `playwave simulate --print-settings` prints"
        )


def _progress_table(world: World, real_elapsed: float, calls_per_second: float) -> Table:
    clock = world.clock
    simulated = min(clock.now(), world.config.simulated_seconds)
    hours, rest = divmod(int(simulated), 3600)
    table = Table(title="playwave simulate", show_header=False, box=None)
    table.add_row("simulated clock", f"{hours:02d}:{rest // 60:02d} of {world.config.hours:g} h")
    table.add_row("real time", f"{real_elapsed:.0f} s")
    table.add_row("live sessions", str(world.live_sessions))
    table.add_row("calls per second", f"{calls_per_second:.0f}")
    table.add_row("calls", str(world.stats.total_calls))
    errors = ", ".join(
        f"{code} {count}" for code, count in world.stats.errors_by_code.most_common(6)
    )
    table.add_row("errors by code", errors or "none")
    table.add_row("contract violations", str(world.stats.violation_count))
    return table


async def _sample(world: World, started: float) -> tuple[float, float]:
    real_elapsed = time.monotonic() - started
    rate = world.stats.calls_per_second(real_elapsed)
    world.stats.samples.append(
        Sample(
            simulated_hours=world.clock.now() / 3600,
            real_seconds=real_elapsed,
            live_sessions=world.live_sessions,
            calls=world.stats.total_calls,
            errors=world.stats.total_errors,
            calls_per_second=rate,
        )
    )
    return real_elapsed, rate


async def play_day(world: World, console: Console | None) -> int:
    """Run every seat until the simulated day is over; return the tasks that had to be cut."""
    config = world.config
    seats = [Seat(world, cafe, number) for cafe in world.cafes for number in range(config.seats)]
    seat_tasks = [asyncio.create_task(seat.run()) for seat in seats]
    chaos = [
        asyncio.create_task(instance_chaos(world, game, random.Random(f"{config.seed}:{index}")))
        for index, game in enumerate(world.games)
    ]
    started = time.monotonic()

    live = Live(console=console, refresh_per_second=2, transient=False) if console else None
    if live is not None:
        live.start()
    try:
        while world.clock.now() < config.simulated_seconds:
            await asyncio.sleep(SAMPLE_INTERVAL_SEC)
            real_elapsed, rate = await _sample(world, started)
            if live is not None:
                live.update(_progress_table(world, real_elapsed, rate))

        world.closing.set()
        for seat in seats:
            seat.wake.set()
        log.info("simulation_closing", live_sessions=world.live_sessions)
        pending = await _drain(world, seats, seat_tasks + chaos, started, live)
        for launcher in world.launcher_apps:
            await launcher.stop_heartbeats()
    finally:
        if live is not None:
            live.stop()
    return pending


async def _drain(
    world: World, seats: list[Seat], tasks: list[asyncio.Task], started: float, live: Live | None
) -> int:
    """Let customers leave and game servers finish; cut what is still running after the limit."""
    deadline = time.monotonic() + world.config.drain_timeout_sec
    while time.monotonic() < deadline:
        running = [task for task in tasks if not task.done()]
        running += [task for seat in seats for task in seat.tasks if not task.done()]
        if not running:
            return 0
        await asyncio.sleep(SAMPLE_INTERVAL_SEC)
        real_elapsed, rate = await _sample(world, started)
        if live is not None:
            live.update(_progress_table(world, real_elapsed, rate))

    leftovers = [task for task in tasks if not task.done()]
    leftovers += [task for seat in seats for task in seat.tasks if not task.done()]
    for task in leftovers:
        task.cancel()
    await asyncio.gather(*leftovers, return_exceptions=True)
    return len(leftovers)


async def collect_records(
    settings: Settings, session_ids: list[str], wait_sec: float
) -> dict[str, GameSession | None]:
    """Read every session's record, waiting up to `wait_sec` for the server to end them all."""
    runtime = await build_runtime(settings)
    try:
        deadline = time.monotonic() + wait_sec
        records: dict[str, GameSession | None] = {}
        pending = list(session_ids)
        while True:
            still_live = []
            for start in range(0, len(pending), COLLECT_BATCH):
                batch = pending[start : start + COLLECT_BATCH]
                found = await asyncio.gather(*(runtime.records.get_session(i) for i in batch))
                for game_session_id, record in zip(batch, found, strict=True):
                    records[game_session_id] = record
                    if record is not None and record.state is not SessionState.ENDED:
                        still_live.append(game_session_id)
            if not still_live or time.monotonic() >= deadline:
                return records
            pending = still_live
            await asyncio.sleep(1.0)
    finally:
        await runtime.close()


async def run_simulation(
    config: SimulationConfig,
    settings: Settings,
    console: Console | None = None,
    on_prepared: Callable[[World], None] | None = None,
) -> RunResult:
    """Prepare, play and check one simulated day against the server at `config.url`."""
    check_addresses(config)
    runtime = await build_runtime(settings)
    try:
        key_id, secret = await issue_launcher_key(runtime)
        try:
            await preflight(config, key_id, secret)
        except (SetupError, NotLoopback):
            # A run that cannot start leaves only a revoked launcher key behind.
            await launcher_keys_of(runtime).revoke(key_id)
            raise
        games, cafes = await prepare(runtime, config)
    finally:
        await runtime.close()

    clock = SimClock(config.time_scale)
    world = World(config, clock, games, cafes, key_id, secret)
    world.open_clients([game_server_ip(index) for index in range(config.games)])
    started = time.monotonic()
    try:
        if on_prepared is not None:
            on_prepared(world)
        unfinished = await play_day(world, console)
    finally:
        await world.close_clients()

    server_settings = scaled_settings(config.time_scale)
    # Silent sessions end once the session TTL or the launcher timeout passes, plus a sweep.
    wait_sec = (
        int(server_settings["PLAYWAVE_SESSION_TTL_SEC"])
        + int(server_settings["PLAYWAVE_LAUNCHER_TIMEOUT_SEC"])
        + config.drain_timeout_sec
    )
    records = await collect_records(settings, list(world.truths), wait_sec)
    mismatches = [
        mismatch
        for game_session_id, truth in world.truths.items()
        for mismatch in check_billing(truth, records.get(game_session_id))
    ]
    return RunResult(
        config=config,
        world=world,
        records=records,
        mismatches=mismatches,
        real_seconds=time.monotonic() - started,
        unfinished_tasks=unfinished,
        server_settings=server_settings,
    )
