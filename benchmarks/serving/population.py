"""Live sessions, OTTs and the game the load runs against, created fast and in bulk.

Sessions for the heartbeat, end and sweep figures are written straight into both stores: the
records with PostgreSQL COPY, the live copies with the Redis store's own PUT_SESSION script
and key names, pipelined. The result is what `verify` leaves behind, without the partner's
start billing call. Their first usage report is scheduled a day ahead, so the usage report job
leaves them alone. Sessions for the end figure carry a billing id the partner never issued, so
that an end queues its stop billing call in the same transaction as a real one does; the
simulator later rejects that call once, and the queue records the rejection without retrying.
The other sessions carry no billing id, so a sweep that ends them queues no partner call. The
OTT pool for the verify figure goes through the live store's `put_ott`.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import structlog

from playwave import ids
from playwave.domain.lifecycle import SessionState, Timers, deadline
from playwave.runtime import Runtime
from playwave.stores.base import Game, OttGrant
from playwave.stores.redis import scripts
from playwave.stores.redis.live import RedisLiveStore

from ..session_copy import SESSION_COLUMNS, copy_sessions

log = structlog.get_logger("benchmarks.population")

COPY_CHUNK = 50_000
PIPELINE_CHUNK = 5_000
CAFE_BALANCE = 10**12
DAY_MS = 86_400_000

LIVE_COLUMNS = (*SESSION_COLUMNS, "reported_sec", "next_report_at")


@dataclass(frozen=True)
class Tenant:
    """The game, its API key and the partner cafe every benchmark request belongs to."""

    game: Game
    key_id: str
    api_key: str
    cafe_id: str


@dataclass(frozen=True)
class SessionRef:
    game_session_id: str
    provider_user_id: str


async def create_tenant(runtime: Runtime, partner_url: str) -> Tenant:
    """Create the game and API key through the services, and a funded cafe in the simulator."""
    game = Game(
        game_id=ids.new_game_id(),
        name="Benchmark Obby",
        rate_per_hour=600,
        active=True,
        created_at=runtime.clock.now(),
    )
    await runtime.records.create_game(game)
    issued = await runtime.api_keys.issue(game.game_id, "live")

    async with httpx.AsyncClient(base_url=partner_url, timeout=10.0) as client:
        response = await client.post(
            "/admin/cafes", json={"name": "Benchmark PC Cafe", "ip": None, "balance": CAFE_BALANCE}
        )
        response.raise_for_status()
        cafe_id = response.json()["cafe_id"]
    log.info("tenant_created", game_id=game.game_id, key_id=issued.key_id, cafe_id=cafe_id)
    return Tenant(game=game, key_id=issued.key_id, api_key=issued.api_key, cafe_id=cafe_id)


def _session_rows(
    tenant: Tenant,
    count: int,
    pc_prefix: str,
    started_at: int,
    last_heartbeat_at: int,
    with_billing: bool,
) -> Iterator[tuple[object, ...]]:
    for number in range(count):
        billing_id = f"bill_bench_{pc_prefix}_{number}" if with_billing else None
        yield (
            ids.new_game_session_id(),
            str(uuid.uuid4()),
            tenant.game.game_id,
            tenant.key_id,
            "live",
            str(100_000_000 + number),
            tenant.cafe_id,
            f"{pc_prefix}-{number}",
            None,
            tenant.game.rate_per_hour,
            billing_id,
            SessionState.ACTIVE.value,
            started_at,
            last_heartbeat_at,
            0,
            started_at + DAY_MS,
        )


async def add_live_sessions(
    dsn: str,
    store: RedisLiveStore,
    timers: Timers,
    tenant: Tenant,
    count: int,
    *,
    pc_prefix: str,
    last_heartbeat_at: int,
    with_billing: bool = False,
) -> list[SessionRef]:
    """Write `count` ACTIVE sessions into the records and the live store; return their ids.

    Each session's live deadline follows from `last_heartbeat_at` and the session TTL, exactly
    as `LiveSession.from_record` computes it.
    """
    rows = list(
        _session_rows(tenant, count, pc_prefix, last_heartbeat_at, last_heartbeat_at, with_billing)
    )

    chunks = (rows[start : start + COPY_CHUNK] for start in range(0, len(rows), COPY_CHUNK))
    connection = await asyncpg.connect(dsn)
    try:
        await copy_sessions(connection, LIVE_COLUMNS, chunks)
    finally:
        await connection.close()

    due_at = deadline(last_heartbeat_at, None, timers)
    put_session = store.client.register_script(scripts.PUT_SESSION)
    for start in range(0, len(rows), PIPELINE_CHUNK):
        pipeline = store.client.pipeline(transaction=False)
        for row in rows[start : start + PIPELINE_CHUNK]:
            game_session_id, _, game_id, _, _, user, _, pc_id = row[:8]
            key, index, _ = store._session_keys(game_session_id)
            state = SessionState.ACTIVE.value
            await put_session(
                keys=[key, index],
                args=[
                    game_session_id,
                    state,
                    due_at,
                    *("g", game_id, "u", user, "p", pc_id),
                    *("s", last_heartbeat_at, "h", last_heartbeat_at, "t", state, "d", due_at),
                ],
                client=pipeline,
            )
        await pipeline.execute()

    log.info("live_sessions_added", count=count, pc_prefix=pc_prefix, deadline=due_at)
    return [SessionRef(str(row[0]), str(row[5])) for row in rows]


async def add_otts(
    runtime: Runtime, tenant: Tenant, count: int, *, pc_prefix: str
) -> list[OttGrant]:
    """Issue `count` OTTs for the tenant's game, one PC each, through the live store."""
    now = runtime.clock.now()
    grants = [
        OttGrant(
            ott=ids.new_ott(),
            game_id=tenant.game.game_id,
            pc_id=f"{pc_prefix}-{number}",
            cafe_id=tenant.cafe_id,
            launcher_session_id=None,
            issued_at=now,
            expires_at=now + runtime.settings.timers.ott_ttl_ms,
        )
        for number in range(count)
    ]
    for start in range(0, count, 50):
        await asyncio.gather(*(runtime.live.put_ott(grant) for grant in grants[start : start + 50]))
    return grants


def write_lines(path: Path, lines: list[tuple[str, str]]) -> Path:
    """Write one `first second` pair a line, the format the wrk script reads."""
    path.write_text("".join(f"{first} {second}\n" for first, second in lines))
    return path


async def live_session_count(dsn: str, game_session_ids: list[str]) -> int:
    """Return how many of `game_session_ids` are not ENDED in the records."""
    connection = await asyncpg.connect(dsn)
    try:
        return await connection.fetchval(
            "SELECT count(*) FROM game_sessions "
            "WHERE game_session_id = ANY($1::text[]) AND state <> 'ENDED'",
            game_session_ids,
        )
    finally:
        await connection.close()


async def sessions_of_otts(dsn: str, otts: list[str]) -> list[SessionRef]:
    """Return the live sessions that verify created for `otts`."""
    connection = await asyncpg.connect(dsn)
    try:
        rows = await connection.fetch(
            "SELECT game_session_id, provider_user_id FROM game_sessions "
            "WHERE ott = ANY($1::text[]) AND state = 'ACTIVE'",
            otts,
        )
    finally:
        await connection.close()
    return [SessionRef(row["game_session_id"], row["provider_user_id"]) for row in rows]
