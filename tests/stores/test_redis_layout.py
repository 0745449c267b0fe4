"""Redis-only properties of the live store: key slots, TTLs, memory, cluster detection."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis
from redis.crc import key_slot

from playwave.clock import ManualClock
from playwave.domain.lifecycle import EndReason, Timers
from playwave.stores.base import OttGrant
from playwave.stores.redis.live import RedisLiveStore, detect_cluster
from tests.backends import RedisProcess, RedisServer
from tests.conftest import START
from tests.stores.test_live_store import GAME_ID, USER, live_session

TIMERS = Timers()


@pytest.fixture
async def private_store(tmp_path: Path, clock: ManualClock) -> AsyncIterator[RedisLiveStore]:
    server = RedisProcess(tmp_path / "redis")
    server.start()
    store = await RedisLiveStore.connect(server.url, "auto", clock=clock)
    yield store
    await store.close()
    server.stop()


async def test_session_keys_share_one_slot(private_store: RedisLiveStore):
    session = live_session()
    await private_store.put_session(session)
    await private_store.touch(session.game_session_id, GAME_ID, USER, START + 1000, TIMERS)

    client: Redis = private_store.client
    keys = [key async for key in client.scan_iter(match="pw:*")]

    assert len(keys) == 3
    assert len({key_slot(key.encode()) for key in keys}) == 1


async def test_expiring_keys_have_ttls(private_store: RedisLiveStore):
    client: Redis = private_store.client
    grant = OttGrant(
        ott=str(uuid.uuid4()),
        game_id=GAME_ID,
        pc_id="pc-1",
        cafe_id="cafe_demo",
        launcher_session_id=None,
        issued_at=START,
        expires_at=START + TIMERS.ott_ttl_ms,
    )
    session = live_session()
    await private_store.put_ott(grant)
    await private_store.remember_nonce("lk_1", "nonce-ttl-0123456789", START + 600_000, START)
    await private_store.put_session(session)
    live_ttl = await client.pttl(private_store.session_key(session.game_session_id))
    await private_store.mark_ended(session.game_session_id, EndReason.NORMAL, START + 600_000)

    ott_ttl = await client.pttl(f"pw:ott:{grant.ott}")
    nonce_ttl = await client.pttl("pw:nonce:lk_1:nonce-ttl-0123456789")
    tombstone_ttl = await client.pttl(private_store.session_key(session.game_session_id))

    assert 0 < ott_ttl <= 60_000
    assert 0 < nonce_ttl <= 600_000
    assert live_ttl == -1
    assert 0 < tombstone_ttl <= 600_000
    assert await private_store.purge(START + 10**9) == 0


async def test_live_session_memory_is_small(private_store: RedisLiveStore):
    client: Redis = private_store.client
    count = 2000
    before = (await client.info("memory"))["used_memory"]

    for index in range(count):
        session = live_session(pc_id=uuid.uuid4().hex + uuid.uuid4().hex)
        await private_store.put_session(session)
        await private_store.touch(
            session.game_session_id, GAME_ID, USER, START + 1000 + index, TIMERS
        )

    while await private_store.take_heartbeats(500):
        pass

    # Between flushes a session also has a heartbeat queue entry; the flush drains it.
    after = (await client.info("memory"))["used_memory"]
    per_session = (after - before) / count
    assert per_session <= 512, f"{per_session:.0f} bytes per live session"


async def test_detect_cluster_standalone(private_store: RedisLiveStore, tmp_path: Path):
    assert private_store.is_cluster is False


async def test_detect_cluster_on_cluster(redis_cluster: RedisServer, cluster_namespace: str):
    assert await detect_cluster(redis_cluster.url) is True
    store = await RedisLiveStore.connect(redis_cluster.url, "auto", prefix=cluster_namespace)
    try:
        assert store.is_cluster is True
        await store.ping()
    finally:
        await store.close()
