"""Benchmark of monthly settlement on PostgreSQL with 1,000,000 ended sessions.

Creates its own database on the server (default postgresql://postgres@127.0.0.1:5432), fills it
with COPY, then times computing, closing, re-reading and exporting one month, and reports the
process's peak resident memory after each step. The database is dropped at the end.

    python benchmarks/settlement.py [--sessions 1000000] [--server postgresql://...]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import random
import resource
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
from session_copy import SESSION_COLUMNS, copy_sessions  # beside this script

from playwave.clock import ManualClock
from playwave.domain.settlement import Month, month_bounds
from playwave.services.settlement import Settlements
from playwave.stores.sql.engine import create_engine, upgrade_schema
from playwave.stores.sql.settlement import SqlSettlementStore

MONTH = Month(2026, 1)
TIMEZONE = "Asia/Seoul"
GAMES = 20
USERS = 200_000
CHUNK = 50_000

ENDED_COLUMNS = (
    *SESSION_COLUMNS,
    "exhausted_at",
    "ended_at",
    "end_reason",
    "play_duration_sec",
    "billable_sec",
    "client_play_duration_sec",
    "reported_sec",
)


class _Discard(io.TextIOBase):
    """A text stream that drops what it is given, so the export is timed without disk writes."""

    def write(self, text: str) -> int:
        return len(text)


def peak_rss_mib() -> float:
    """Return this process's peak resident set size so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def session_rows(count: int, seed: int) -> list[tuple[Any, ...]]:
    """Generate ended sessions starting in the month; about 0.3% cross into the next month."""
    generator = random.Random(seed)
    start, end = month_bounds(MONTH, TIMEZONE)
    rows = []
    for _ in range(count):
        started_at = generator.randrange(start, end - 60_000)
        duration_ms = generator.randrange(30_000, 4 * 3_600_000)
        ended_at = started_at + duration_ms
        play = duration_ms // 1000
        billable = play if generator.random() > 0.05 else generator.randrange(0, play + 1)
        game = generator.randrange(GAMES)
        rows.append(
            (
                f"gs_{uuid.UUID(int=generator.getrandbits(128), version=4)}",
                str(uuid.UUID(int=generator.getrandbits(128), version=4)),
                f"game_{game:012x}",
                "key_bench",
                "live",
                str(1_000_000 + generator.randrange(USERS)),
                "cafe-bench",
                f"pc-{generator.getrandbits(64):016x}",
                None,
                600 + 60 * game,
                None,
                "ENDED",
                started_at,
                ended_at,
                None,
                ended_at,
                "NORMAL",
                play,
                billable,
                None,
                billable,
            )
        )
    return rows


async def fill(dsn: str, sessions: int) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        start, _ = month_bounds(MONTH, TIMEZONE)
        await connection.executemany(
            "INSERT INTO games (game_id, name, rate_per_hour, active, created_at) "
            "VALUES ($1, $2, $3, true, $4)",
            [
                (f"game_{game:012x}", f"Game {game}", 600 + 60 * game, start)
                for game in range(GAMES)
            ],
        )

        # A generator, so the rows are built one chunk at a time just before each copy.
        chunks = (
            session_rows(min(CHUNK, sessions - first), seed=first)
            for first in range(0, sessions, CHUNK)
        )
        await copy_sessions(connection, ENDED_COLUMNS, chunks)
    finally:
        await connection.close()


async def timed(
    label: str, results: list[tuple[str, float, float]], step: Callable[[], Awaitable[Any]]
) -> Any:
    began = time.perf_counter()
    value = await step()
    results.append((label, time.perf_counter() - began, peak_rss_mib()))
    return value


async def main(server: str, sessions: int) -> None:
    name = f"playwave_bench_{os.getpid()}"
    admin = await asyncpg.connect(f"{server}/postgres")
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = f"{server}/{name}".replace("postgresql://", "postgresql+asyncpg://", 1)
    results: list[tuple[str, float, float]] = []
    try:
        await asyncio.to_thread(upgrade_schema, url)
        await timed(
            f"fill {sessions:,} sessions (COPY)",
            results,
            lambda: fill(f"{server}/{name}", sessions),
        )

        engine = create_engine(url)
        clock = ManualClock(month_bounds(MONTH, TIMEZONE)[1] + 86_400_000)
        store = SqlSettlementStore.beside(engine)
        service = Settlements(store, clock, TIMEZONE)
        try:
            computed = await timed(
                f"compute {MONTH} (open)", results, lambda: service.statement(MONTH)
            )
            closed = await timed(f"close {MONTH}", results, lambda: service.close(MONTH))
            await timed(f"re-read closed {MONTH}", results, lambda: service.statement(MONTH))
            sink = _Discard()
            await timed(
                f"detail CSV export {MONTH}",
                results,
                lambda: service.write_detail(MONTH, sink, "csv"),
            )
        finally:
            await store.close()
            await engine.dispose()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()

    totals = closed.statement.totals
    assert computed.statement.totals["total_amount"] == totals["total_amount"]
    print(
        f"sessions settled: {totals['sessions']:,}, unique users: {totals['unique_users']:,}, "
        f"total amount: {totals['total_amount']:,}"
    )
    print()
    print("| step | wall time (s) | peak RSS after step (MiB) |")
    print("|---|---:|---:|")
    for label, seconds, rss in results:
        print(f"| {label} | {seconds:.1f} | {rss:.0f} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=1_000_000)
    parser.add_argument("--server", default="postgresql://postgres@127.0.0.1:5432")
    arguments = parser.parse_args()
    asyncio.run(main(arguments.server, arguments.sessions))
