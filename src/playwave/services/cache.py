"""A per-process cache of an async lookup, for results that may be a few seconds stale."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class LookupCache(Generic[K, V]):
    """Cache of each result of `lookup` for `ttl_seconds`. Concurrent misses share one lookup.

    The shared lookup runs as its own task and each caller awaits it shielded, so a caller that
    is cancelled does not cancel the lookup for the others. Misses are cached too, and the whole
    cache is dropped once it holds `max_entries`, which bounds what unknown keys can fill.
    """

    def __init__(
        self,
        lookup: Callable[[K], Awaitable[V]],
        ttl_seconds: float,
        *,
        max_entries: int = 10_000,
    ) -> None:
        self._lookup = lookup
        self.ttl_seconds = ttl_seconds
        self.max_entries = max_entries
        self._answers: dict[K, tuple[float, V]] = {}
        self._pending: dict[K, asyncio.Future[V]] = {}

    async def get(self, key: K) -> V:
        cached = self._answers.get(key)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]

        pending = self._pending.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self._lookup_and_keep(key))
            self._pending[key] = pending
            pending.add_done_callback(lambda _: self._pending.pop(key, None))
        return await asyncio.shield(pending)

    def clear(self) -> None:
        self._answers.clear()

    async def _lookup_and_keep(self, key: K) -> V:
        answer = await self._lookup(key)
        if len(self._answers) >= self.max_entries:
            self._answers.clear()
        self._answers[key] = (time.monotonic() + self.ttl_seconds, answer)
        return answer
