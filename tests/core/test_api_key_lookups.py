"""API key authentication under concurrency: requests that miss the cache share one lookup."""

from __future__ import annotations

import asyncio

import pytest

from playwave.runtime import Runtime
from playwave.services.errors import InvalidApiKey
from playwave.services.keys import ApiKeys
from playwave.stores.base import ApiKey, Game, RecordStore, StoreUnavailable

CONCURRENT_REQUESTS = 20


class GatedRecords:
    """Records that count API key lookups and hold each one until `release` is set."""

    def __init__(self, records: RecordStore, *, failures: int = 0) -> None:
        self.records = records
        self.lookups = 0
        self.failures = failures
        self.release = asyncio.Event()

    async def find_api_key(self, key_hash: str) -> ApiKey | None:
        self.lookups += 1
        await self.release.wait()
        if self.failures:
            self.failures -= 1
            raise StoreUnavailable("records unavailable")
        return await self.records.find_api_key(key_hash)

    async def get_game(self, game_id: str) -> Game | None:
        return await self.records.get_game(game_id)


async def _gated_keys(runtime: Runtime, records: GatedRecords) -> ApiKeys:
    return ApiKeys(
        records,  # type: ignore[arg-type]
        runtime.clock,
        runtime.settings.resolve_secret_key(),
        cache_seconds=2.0,
    )


async def _start_requests(keys: ApiKeys, api_key: str, count: int) -> list[asyncio.Task]:
    tasks = [asyncio.create_task(keys.authenticate(api_key)) for _ in range(count)]
    # Let every request reach the lookup before it is released.
    for _ in range(5):
        await asyncio.sleep(0)
    return tasks


async def test_concurrent_misses_share_lookup(runtime: Runtime, game: Game):
    issued = await runtime.api_keys.issue(game.game_id, "live")
    records = GatedRecords(runtime.records)
    keys = await _gated_keys(runtime, records)

    tasks = await _start_requests(keys, issued.api_key, CONCURRENT_REQUESTS)
    records.release.set()
    answers = await asyncio.gather(*tasks)

    assert records.lookups == 1
    assert {answer.key_id for answer in answers} == {issued.key_id}
    assert {answer.game_id for answer in answers} == {game.game_id}


async def test_cached_answer_needs_no_lookup(runtime: Runtime, game: Game):
    issued = await runtime.api_keys.issue(game.game_id, "live")
    records = GatedRecords(runtime.records)
    records.release.set()
    keys = await _gated_keys(runtime, records)

    first = await keys.authenticate(issued.api_key)
    second = await keys.authenticate(issued.api_key)

    assert records.lookups == 1
    assert first == second


async def test_unknown_key_rejected_for_all(runtime: Runtime, game: Game):
    records = GatedRecords(runtime.records)
    keys = await _gated_keys(runtime, records)

    tasks = await _start_requests(keys, "pw_live_not-a-real-key", CONCURRENT_REQUESTS)
    records.release.set()
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)

    assert records.lookups == 1
    assert all(isinstance(outcome, InvalidApiKey) for outcome in outcomes)


async def test_failed_lookup_reaches_all_then_retries(runtime: Runtime, game: Game):
    issued = await runtime.api_keys.issue(game.game_id, "live")
    records = GatedRecords(runtime.records, failures=1)
    keys = await _gated_keys(runtime, records)

    tasks = await _start_requests(keys, issued.api_key, CONCURRENT_REQUESTS)
    records.release.set()
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)

    assert records.lookups == 1
    assert all(isinstance(outcome, StoreUnavailable) for outcome in outcomes)

    retried = await keys.authenticate(issued.api_key)

    assert records.lookups == 2
    assert retried.key_id == issued.key_id


async def test_cancelled_request_keeps_shared_lookup(runtime: Runtime, game: Game):
    issued = await runtime.api_keys.issue(game.game_id, "live")
    records = GatedRecords(runtime.records)
    keys = await _gated_keys(runtime, records)

    tasks = await _start_requests(keys, issued.api_key, 3)
    tasks[0].cancel()
    await asyncio.sleep(0)
    records.release.set()
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)

    assert isinstance(outcomes[0], asyncio.CancelledError)
    assert outcomes[1].key_id == issued.key_id
    assert outcomes[2].key_id == issued.key_id
    assert records.lookups == 1


async def test_revoked_key_rejected_after_cache(runtime: Runtime, game: Game):
    issued = await runtime.api_keys.issue(game.game_id, "live")
    assert (await runtime.api_keys.authenticate(issued.api_key)).key_id == issued.key_id

    await runtime.api_keys.revoke(issued.key_id)

    with pytest.raises(InvalidApiKey):
        await runtime.api_keys.authenticate(issued.api_key)
