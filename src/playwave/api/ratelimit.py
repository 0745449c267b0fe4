"""Request rate limits per API key and per client IP."""

from __future__ import annotations

import time
from collections import OrderedDict


class FixedWindowLimiter:
    """Counts requests per name in one-minute windows of this process.

    NOTE: counts are per process, so with N API processes a client may reach N times the limit
    in the worst case; the defaults are generous enough that this only matters for abuse.
    """

    def __init__(self, per_minute: int, *, max_names: int = 100_000) -> None:
        self.per_minute = per_minute
        self.max_names = max_names
        self._windows: OrderedDict[str, tuple[int, int]] = OrderedDict()

    def hit(self, name: str) -> int | None:
        """Count one request for `name`; return seconds to wait when over the limit, else None."""
        now = time.monotonic()
        window = int(now // 60)
        current, count = self._windows.get(name, (window, 0))
        if current != window:
            count = 0
        count += 1
        self._windows[name] = (window, count)
        self._windows.move_to_end(name)
        if len(self._windows) > self.max_names:
            self._windows.popitem(last=False)
        if count > self.per_minute:
            return max(1, int(60 - now % 60))
        return None
