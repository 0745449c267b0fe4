"""Time as the server sees it.

Every timestamp in PlayWave is an integer count of milliseconds since the Unix epoch (UTC).
Integers keep duration arithmetic exact, so "whole seconds, rounded down" is a floor division.
Code that needs the time takes a `Clock`, which lets tests move time by hand.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Protocol

Millis = int


class Clock(Protocol):
    def now(self) -> Millis:
        """Return the current time in epoch milliseconds."""
        ...


class SystemClock:
    """The wall clock of this machine."""

    def now(self) -> Millis:
        return time.time_ns() // 1_000_000


class ManualClock:
    """A clock that moves only when told to; for tests and the simulator."""

    def __init__(self, start: Millis = 1_767_225_600_000) -> None:
        self._now = start

    def now(self) -> Millis:
        return self._now

    def advance(self, seconds: float) -> Millis:
        self._now += round(seconds * 1000)
        return self._now

    def set(self, at: Millis) -> None:
        self._now = at


def whole_seconds(start: Millis, end: Millis) -> int:
    """Return the whole seconds from `start` to `end`, rounded down and never negative."""
    return max(0, end - start) // 1000


def to_iso(at: Millis) -> str:
    """Format epoch milliseconds as an ISO 8601 UTC string with milliseconds."""
    moment = datetime.fromtimestamp(at / 1000, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at % 1000:03d}Z"
