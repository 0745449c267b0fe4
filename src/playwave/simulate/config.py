"""What a simulation run does: its size, its time scale and how its players behave."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

# Server timer defaults in seconds, divided by the time scale for the server under simulation.
# The OTT TTL is not among them: it bounds the launch and the verify round trips, which take as
# long in real seconds under simulation as they do in a cafe, so it keeps its 60 s.
TIMER_DEFAULTS_SEC = {
    "PLAYWAVE_HEARTBEAT_INTERVAL_SEC": 120,
    "PLAYWAVE_SESSION_TTL_SEC": 240,
    "PLAYWAVE_CHARGE_GRACE_SEC": 120,
    "PLAYWAVE_LAUNCHER_HEARTBEAT_SEC": 60,
    "PLAYWAVE_LAUNCHER_TIMEOUT_SEC": 240,
    "PLAYWAVE_USAGE_REPORT_INTERVAL_SEC": 60,
    "PLAYWAVE_REPLACED_ANSWER_SEC": 3600,
}
# Per-minute rate limits, multiplied by the time scale: a minute of simulated traffic arrives
# in 60 / scale real seconds.
RATE_LIMIT_DEFAULTS = {
    "PLAYWAVE_RATE_LIMIT_PER_KEY_PER_MIN": 6000,
    "PLAYWAVE_RATE_LIMIT_PER_IP_PER_MIN": 12000,
}

# Cafe i's launchers connect from CAFE_NETWORK + i, game servers of game g from GAME_NETWORK + g.
# Both avoid 127.0.0.1, which the sandbox partner treats as the demo cafe.
CAFE_NETWORK = ipaddress.IPv4Address("127.10.0.1")
GAME_NETWORK = ipaddress.IPv4Address("127.20.0.1")
MAX_CAFES = 60_000


def cafe_ip(index: int) -> str:
    return str(CAFE_NETWORK + index)


def game_server_ip(index: int) -> str:
    return str(GAME_NETWORK + index)


def scaled_settings(scale: float) -> dict[str, str]:
    """Return the PLAYWAVE_* settings a server needs to run `scale` times faster than real time.

    Timers are whole seconds of at least 1, so a timer that does not divide evenly is rounded
    to the nearest whole second; `timer_rounding` lists those.
    """
    settings = {
        name: str(max(1, round(seconds / scale))) for name, seconds in TIMER_DEFAULTS_SEC.items()
    }
    for name, per_minute in RATE_LIMIT_DEFAULTS.items():
        settings[name] = str(max(per_minute, int(per_minute * scale)))
    settings["PLAYWAVE_LOG_LEVEL"] = "WARNING"
    return settings


def timer_rounding(scale: float) -> list[str]:
    """Return the timers whose scaled value is not exact, as readable notes."""
    notes = []
    for name, seconds in TIMER_DEFAULTS_SEC.items():
        exact = seconds / scale
        used = max(1, round(exact))
        if abs(exact - used) > 1e-9:
            notes.append(f"{name}: {exact:g} s rounded to {used} s")
    return notes


@dataclass(frozen=True)
class Behaviour:
    """How customers, launchers and game servers act; durations in simulated seconds."""

    initial_occupancy: float = 0.7
    # The customers who are there when the run starts arrive over its first half hour, as at a
    # cafe that opens, instead of all in the same minute.
    opening_arrivals: float = 30 * 60
    arrival_gap_mean: float = 25 * 60
    visit_min: float = 60 * 60
    visit_max: float = 240 * 60
    game_session_mean: float = 35 * 60
    game_session_min: float = 3 * 60
    menu_min: float = 20.0
    menu_max: float = 150.0
    roblox_startup_min: float = 3.0
    roblox_startup_max: float = 15.0
    switch_without_end: float = 0.08
    replaced_server_calls_end: float = 0.5
    logout_while_playing: float = 0.05
    power_off: float = 0.05
    launcher_crash_per_visit: float = 0.03
    late_heartbeat: float = 0.05
    late_heartbeat_max: float = 80.0
    lost_heartbeat: float = 0.03
    lost_heartbeat_retry: float = 20.0
    stalled_game_server: float = 0.002
    stall_seconds: float = 420.0
    teleport: float = 0.02
    instance_capacity: int = 40
    instance_lifetime_mean: float = 3 * 3600
    instance_crash_share: float = 0.15
    poor_cafe_share: float = 0.08
    poor_cafe_seat_hours: float = 1.5
    same_game_again: float = 0.6


@dataclass(frozen=True)
class SimulationConfig:
    url: str
    cafes: int
    seats: int
    games: int
    hours: float
    time_scale: float
    seed: int
    out_dir: Path
    max_in_flight: int = 256
    drain_timeout_sec: float = 60.0
    behaviour: Behaviour = field(default_factory=Behaviour)

    @property
    def simulated_seconds(self) -> float:
        return self.hours * 3600

    def expected_timer(self, name: str) -> int:
        return int(scaled_settings(self.time_scale)[name])
