"""The per-process lookup cache under API keys and launcher keys."""

from __future__ import annotations

import asyncio

from playwave.services.cache import LookupCache


class CountingLookup:
    def __init__(self) -> None:
        self.calls: list[str] = []
        self.release = asyncio.Event()
        self.release.set()

    async def __call__(self, key: str) -> str | None:
        self.calls.append(key)
        await self.release.wait()
        return None if key.startswith("unknown") else key.upper()


async def test_answer_kept_until_ttl():
    lookup = CountingLookup()
    cache = LookupCache(lookup, ttl_seconds=60)

    first = await cache.get("lk_a")
    second = await cache.get("lk_a")

    assert (first, second) == ("LK_A", "LK_A")
    assert lookup.calls == ["lk_a"]


async def test_zero_ttl_looks_up_every_time():
    lookup = CountingLookup()
    cache = LookupCache(lookup, ttl_seconds=0)

    await cache.get("lk_a")
    await cache.get("lk_a")

    assert lookup.calls == ["lk_a", "lk_a"]


async def test_misses_are_cached_and_clear_forgets_them():
    lookup = CountingLookup()
    cache = LookupCache(lookup, ttl_seconds=60)

    assert await cache.get("unknown-1") is None
    assert await cache.get("unknown-1") is None
    cache.clear()
    assert await cache.get("unknown-1") is None

    assert lookup.calls == ["unknown-1", "unknown-1"]


async def test_concurrent_misses_share_lookup():
    lookup = CountingLookup()
    lookup.release.clear()
    cache = LookupCache(lookup, ttl_seconds=60)

    waiting = [asyncio.create_task(cache.get("lk_a")) for _ in range(10)]
    await asyncio.sleep(0)
    waiting[0].cancel()
    lookup.release.set()
    answers = await asyncio.gather(*waiting[1:])

    assert answers == ["LK_A"] * 9
    assert lookup.calls == ["lk_a"]


async def test_full_cache_starts_over():
    lookup = CountingLookup()
    cache = LookupCache(lookup, ttl_seconds=60, max_entries=3)

    for index in range(4):
        await cache.get(f"unknown-{index}")
    await cache.get("unknown-0")

    assert lookup.calls.count("unknown-0") == 2
