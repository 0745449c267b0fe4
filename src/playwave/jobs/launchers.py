"""Launcher loss: end launcher sessions silent for the launcher timeout, and their games.

Two sweeps find them. The live sweep reads the live store's deadline index (last heartbeat plus
the launcher timeout) and leases what it takes, so several workers share the work. The records
sweep reads the durable last heartbeat, which launcher heartbeats write at least every half
launcher timeout, so launchers are still found after a restart or when the live store lost its
data. `LauncherSessions.end_lost`
re-checks each candidate, and every end in it is a conditional write in the records, so both
sweeps may run in any number of processes at the same time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from playwave.jobs.runner import Job
from playwave.services.launcher import LauncherSessions

if TYPE_CHECKING:
    from playwave.runtime import Runtime

SWEEP_LEASE_MS = 30_000


@dataclass
class LauncherJobs:
    launchers: LauncherSessions
    batch_size: int = 200

    async def sweep_live(self) -> int:
        now = self.launchers.clock.now()
        due = await self.launchers.live.due_launchers(now, self.batch_size, SWEEP_LEASE_MS)
        for launcher_session_id in due:
            await self.launchers.end_lost(launcher_session_id)
        return len(due)

    async def sweep_records(self) -> int:
        launchers = self.launchers
        # A launcher is lost once now >= last heartbeat + timeout; the query's bound is strict.
        seen_before = launchers.clock.now() - launchers.timers.launcher_timeout_ms + 1
        stale = await launchers.records.stale_launcher_sessions(seen_before, self.batch_size)
        ended = 0
        for session in stale:
            if await launchers.end_lost(session.launcher_session_id) is not None:
                ended += 1
        return ended


def launcher_jobs(runtime: Runtime) -> list[Job]:
    """Return the launcher loss jobs of `runtime`, for `playwave.runtime.default_jobs`."""
    jobs = LauncherJobs(LauncherSessions.from_runtime(runtime))
    interval = runtime.settings.sweep_interval_sec
    return [
        Job("launcher_sweep_live", interval, jobs.sweep_live),
        Job("launcher_sweep_records", max(interval, 5.0), jobs.sweep_records),
    ]
