"""A small periodic job runner for asyncio."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog

from playwave import metrics
from playwave.stores.base import StoreUnavailable

log = structlog.get_logger("playwave.jobs")


@dataclass(frozen=True, slots=True)
class Job:
    name: str
    interval_sec: float
    step: Callable[[], Awaitable[int]]
    """Do one round of work and return how many items it handled."""


class JobRunner:
    """Runs each job's step every `interval_sec` until stopped.

    A step that handled a full batch runs again at once, so a backlog drains at full speed.
    Failures are logged and counted, and the job carries on at its next interval.
    """

    def __init__(self, jobs: list[Job], *, batch_size: int = 500) -> None:
        self.jobs = jobs
        self.batch_size = batch_size
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = asyncio.Event()

    def start(self) -> None:
        self._stopping.clear()
        self._tasks = [asyncio.create_task(self._loop(job), name=job.name) for job in self.jobs]
        log.info("jobs_started", jobs=[job.name for job in self.jobs])

    async def stop(self, *, drain: bool = True) -> None:
        """Stop the loops; with `drain`, run every step once more so queued work is flushed."""
        self._stopping.set()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if drain:
            for job in self.jobs:
                await self._run_step(job)
        log.info("jobs_stopped")

    async def run_all_once(self) -> dict[str, int]:
        return {job.name: await self._run_step(job) for job in self.jobs}

    async def _loop(self, job: Job) -> None:
        while not self._stopping.is_set():
            handled = await self._run_step(job)
            if handled >= self.batch_size:
                await asyncio.sleep(0)
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=job.interval_sec)

    async def _run_step(self, job: Job) -> int:
        try:
            return await job.step()
        except asyncio.CancelledError:
            raise
        except StoreUnavailable as error:
            metrics.JOB_ERRORS.labels(job.name).inc()
            log.warning("job_store_unavailable", job=job.name, error=str(error))
        except Exception:
            metrics.JOB_ERRORS.labels(job.name).inc()
            log.exception("job_failed", job=job.name)
        return 0
