"""Simulated time: a fixed multiple of real time, starting when the simulation starts.

Two clocks matter. The server measures play time on the wall clock in epoch milliseconds, so the
truth ledger stores wall-clock milliseconds and compares them with the records directly (both
run on this machine). The simulated clock only schedules behaviour: a player who plays for 30
simulated minutes at time scale 60 plays for 30 real seconds.
"""

from __future__ import annotations

import asyncio
import time


def wall_ms() -> int:
    """Return the wall clock in epoch milliseconds, as the server's clock reads it."""
    return time.time_ns() // 1_000_000


class SimClock:
    """Simulated seconds since the start, advancing `scale` simulated seconds per real second."""

    def __init__(self, scale: float) -> None:
        if scale <= 0:
            raise ValueError("time scale must be positive")
        self.scale = scale
        self._start_monotonic = time.monotonic()
        self.start_wall_ms = wall_ms()

    def now(self) -> float:
        """Return the simulated seconds elapsed since the start."""
        return (time.monotonic() - self._start_monotonic) * self.scale

    def real_seconds(self, simulated_seconds: float) -> float:
        return simulated_seconds / self.scale

    def simulated_seconds(self, real_seconds: float) -> float:
        return real_seconds * self.scale

    def sim_at_wall(self, at_ms: int) -> float:
        """Return the simulated time that corresponds to the wall-clock moment `at_ms`."""
        return (at_ms - self.start_wall_ms) / 1000 * self.scale

    async def sleep(self, simulated_seconds: float) -> None:
        if simulated_seconds > 0:
            await asyncio.sleep(simulated_seconds / self.scale)

    async def sleep_until(self, simulated_at: float) -> None:
        await self.sleep(simulated_at - self.now())
