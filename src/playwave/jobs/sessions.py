"""Session upkeep: the expiry sweep, the heartbeat flush and the live store purge."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import structlog

from playwave import metrics
from playwave.services.sessions import GameSessions

log = structlog.get_logger("playwave.jobs.sessions")

SWEEP_LEASE_MS = 30_000
# A durable record must be this far past its deadline before the records sweep acts on it, so
# that heartbeats still waiting in the live store for their flush are not mistaken for silence.
DURABLE_SWEEP_MARGIN_MS = 5_000


@dataclass
class SessionJobs:
    sessions: GameSessions
    batch_size: int = 500
    concurrency: int = 16

    async def sweep_live(self) -> int:
        """End sessions whose live deadline passed (the fast path, from the deadline index)."""
        now = self.sessions.clock.now()
        due = await self.sessions.live.due_sessions(now, self.batch_size, SWEEP_LEASE_MS)
        await self._end_due_concurrently(due)
        return len(due)

    async def sweep_records(self) -> int:
        """End sessions whose durable deadline passed, whatever the live store holds.

        This is what finishes every session after a restart or a lost live store: the durable
        records alone are enough.
        """
        sessions = self.sessions
        now = sessions.clock.now() - DURABLE_SWEEP_MARGIN_MS
        overdue = await sessions.records.overdue_sessions(now, sessions.timers, self.batch_size)
        return await self._end_due_concurrently([record.game_session_id for record in overdue])

    async def _end_due_concurrently(self, game_session_ids: list[str]) -> int:
        """End due sessions with up to `concurrency` ends in flight; return how many ended.

        Each end is several sequential store round trips, so one at a time caps a sweep at a few
        dozen ends a second. Ends of different sessions are independent, and the records make
        each end exactly-once, so running them side by side is safe. A failed end is logged and
        left to its lease: the session comes due again and the next sweep retries it.
        """
        limit = asyncio.Semaphore(self.concurrency)

        async def end_one(game_session_id: str) -> bool:
            async with limit:
                try:
                    return await self.sessions.end_due(game_session_id) is not None
                except Exception as error:
                    metrics.JOB_ERRORS.labels("sweep").inc()
                    log.warning(
                        "sweep_end_failed",
                        game_session_id=game_session_id,
                        error=f"{type(error).__name__}: {error}",
                    )
                    return False

        outcomes = await asyncio.gather(*(end_one(session_id) for session_id in game_session_ids))
        return sum(outcomes)

    async def flush_heartbeats(self) -> int:
        """Copy heartbeats from the live store to the records in one batch.

        If the records write fails, the taken heartbeats are not retried. The live copies still
        hold them, so the sweeps still see the fresher time, and only the durable lag grows.
        """
        beats = await self.sessions.live.take_heartbeats(self.batch_size * 4)
        if beats:
            try:
                await self.sessions.records.record_heartbeats(beats)
            except Exception:
                log.warning("heartbeat_flush_failed", count=len(beats))
                raise
        return len(beats)

    async def purge_live(self) -> int:
        return await self.sessions.live.purge(self.sessions.clock.now())

    async def count_live(self) -> int:
        metrics.LIVE_SESSIONS.set(await self.sessions.records.count_live_sessions())
        return 0
