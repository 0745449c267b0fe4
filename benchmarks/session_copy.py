"""Bulk loading of benchmark sessions into PostgreSQL's `game_sessions` table with COPY.

The serving benchmark runs as `python -m benchmarks.serving`, so it imports this module as
`benchmarks.session_copy`. `benchmarks/settlement.py` runs as a script, so this folder is first
on its path and it imports the module as `session_copy`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import asyncpg

# The columns every benchmark session row starts with, in row order. Each benchmark appends the
# columns its sessions' state needs.
SESSION_COLUMNS = (
    "game_session_id",
    "ott",
    "game_id",
    "api_key_id",
    "environment",
    "provider_user_id",
    "cafe_id",
    "pc_id",
    "launcher_session_id",
    "rate_per_hour",
    "billing_id",
    "state",
    "started_at",
    "last_heartbeat_at",
)


async def copy_sessions(
    connection: asyncpg.Connection,
    columns: Sequence[str],
    chunks: Iterable[Sequence[tuple[object, ...]]],
) -> None:
    """Copy each chunk of rows into `game_sessions`, then analyze the table."""
    for rows in chunks:
        await connection.copy_records_to_table("game_sessions", records=rows, columns=columns)

    # Without fresh statistics, the planner would plan the benchmark's queries for the table as
    # it was before the load.
    await connection.execute("ANALYZE game_sessions")
