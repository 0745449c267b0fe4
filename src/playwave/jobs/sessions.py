"""Session upkeep: the expiry sweep, the heartbeat flush and the live store purge."""

from __future__ import annotations

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

    async def sweep_live(self) -> int:
        """End sessions whose live deadline passed (the fast path, from the deadline index)."""
        now = self.sessions.clock.now()
        due = await self.sessions.live.due_sessions(now, self.batch_size, SWEEP_LEASE_MS)
        for game_session_id in due:
            await self.sessions.end_due(game_session_id)
        return len(due)

    async def sweep_records(self) -> int:
        """End sessions whose durable deadline passed, whatever the live store holds.

        This is what finishes every session after a restart or a lost live store: the durable
        records alone are enough.
        """
        sessions = self.sessions
        now = sessions.clock.now() - DURABLE_SWEEP_MARGIN_MS
        overdue = await sessions.records.overdue_sessions(now, sessions.timers, self.batch_size)
        ended = 0
        for record in overdue:
            if await sessions.end_due(record.game_session_id) is not None:
                ended += 1
        return ended

    async def flush_heartbeats(self) -> int:
        """Copy heartbeats from the live store to the records in one batch.

        If the records write fails, the taken heartbeats are not retried, but the live copies
        still hold them, so the sweeps still see the fresher time; only the durable lag grows.
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
