"""Shared state of a running simulation: clients, game server instances and the truth ledger."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field

import structlog

from playwave.simulate.client import GameServerApi, HttpEndpoint
from playwave.simulate.clock import SimClock
from playwave.simulate.config import SimulationConfig
from playwave.simulate.contract import Violation
from playwave.simulate.ledger import LauncherTruth, SessionTruth
from playwave.simulate.stats import CallStats

log = structlog.get_logger("playwave.simulate")

# Each game talks to the server through a few small clients rather than one large pool. Eight
# clients of eight connections still let an instance that shuts down send its ends at once.
GAME_CLIENTS = 8
GAME_CLIENT_CONNECTIONS = 8


@dataclass(frozen=True, slots=True)
class SimGame:
    game_id: str
    name: str
    api_key: str
    rate_per_hour: int


@dataclass(frozen=True, slots=True)
class SimCafe:
    index: int
    cafe_id: str
    ip: str
    poor: bool


@dataclass
class GameInstance:
    """One Roblox server of a game; players join it and it may shut down or crash."""

    game: SimGame
    number: int
    api: GameServerApi
    sessions: set = field(default_factory=set)
    alive: bool = True

    @property
    def name(self) -> str:
        return f"{self.game.name}#{self.number}"


async def nap(clock: SimClock, simulated_seconds: float, wake: asyncio.Event) -> bool:
    """Sleep `simulated_seconds`, or less when `wake` is set; return whether it was set."""
    if wake.is_set():
        return True
    if simulated_seconds <= 0:
        return False
    try:
        async with asyncio.timeout(clock.real_seconds(simulated_seconds)):
            await wake.wait()
    except TimeoutError:
        return False
    return True


class World:
    """Everything the seats, sessions and instances share during one run."""

    def __init__(
        self,
        config: SimulationConfig,
        clock: SimClock,
        games: list[SimGame],
        cafes: list[SimCafe],
        launcher_key_id: str,
        launcher_secret: str,
    ) -> None:
        self.config = config
        self.behaviour = config.behaviour
        self.clock = clock
        self.games = games
        self.cafes = cafes
        self.launcher_key_id = launcher_key_id
        self.launcher_secret = launcher_secret
        self.stats = CallStats()
        self.in_flight = asyncio.Semaphore(config.max_in_flight)
        self.closing = asyncio.Event()
        self.truths: dict[str, SessionTruth] = {}
        self.launchers: list[LauncherTruth] = []
        self.launcher_apps: list = []
        self.live_sessions = 0
        self.events: dict[str, int] = {}
        self.cafe_endpoints: dict[int, HttpEndpoint] = {}
        self.game_apis: dict[str, list[GameServerApi]] = {}
        self.instances: dict[str, list[GameInstance]] = {game.game_id: [] for game in games}
        self._instance_numbers: dict[str, int] = {game.game_id: 0 for game in games}
        self.rng = random.Random(config.seed)
        # The game heartbeat interval in simulated seconds, used until the server advises another.
        self.heartbeat_interval = config.expected_timer("PLAYWAVE_HEARTBEAT_INTERVAL_SEC") * (
            config.time_scale
        )

    def count(self, event: str) -> None:
        self.events[event] = self.events.get(event, 0) + 1

    def violation(self, endpoint: str, status: int, problem: str) -> None:
        self.stats.add_violation(Violation(endpoint, status, problem))

    def open_clients(self, game_server_ips: list[str]) -> None:
        """Open one HTTP client per cafe and a few per game, each game's on its own address.

        Pools stay small because httpcore checks every pooled connection on each request: with
        one 64-connection pool per game, a third of the simulation's CPU went to those checks.
        A game's instances share its clients in turn, as Roblox servers each keep their own.
        """
        for cafe in self.cafes:
            self.cafe_endpoints[cafe.index] = HttpEndpoint(
                self.config.url, cafe.ip, self.stats, self.in_flight, max_connections=4
            )
        for game, address in zip(self.games, game_server_ips, strict=True):
            apis = []
            for _ in range(GAME_CLIENTS):
                endpoint = HttpEndpoint(
                    self.config.url,
                    address,
                    self.stats,
                    self.in_flight,
                    max_connections=GAME_CLIENT_CONNECTIONS,
                )
                apis.append(GameServerApi(endpoint, game.api_key))
            self.game_apis[game.game_id] = apis

    async def close_clients(self) -> None:
        for endpoint in self.cafe_endpoints.values():
            await endpoint.close()
        for apis in self.game_apis.values():
            for api in apis:
                await api.endpoint.close()

    def instance_for(self, game: SimGame) -> GameInstance:
        """Return a live instance of `game` with room for one more player, starting one if none."""
        for instance in self.instances[game.game_id]:
            if instance.alive and len(instance.sessions) < self.behaviour.instance_capacity:
                return instance
        return self._start_instance(game)

    def other_instance(self, current: GameInstance) -> GameInstance:
        """Return the instance a teleport from `current` lands on (a fresh one if needed)."""
        candidates = [
            instance
            for instance in self.instances[current.game.game_id]
            if instance is not current
            and instance.alive
            and len(instance.sessions) < self.behaviour.instance_capacity
        ]
        if candidates:
            return self.rng.choice(candidates)
        return self._start_instance(current.game)

    def _start_instance(self, game: SimGame) -> GameInstance:
        self._instance_numbers[game.game_id] += 1
        number = self._instance_numbers[game.game_id]
        apis = self.game_apis[game.game_id]
        instance = GameInstance(game, number, apis[number % len(apis)])
        self.instances[game.game_id].append(instance)
        return instance
