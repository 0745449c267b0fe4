"""Wiring: builds the stores, the partner, the services and the jobs from the settings."""

from __future__ import annotations

from dataclasses import dataclass, field

import structlog

from playwave.clock import Clock, SystemClock
from playwave.jobs.billing import billing_jobs
from playwave.jobs.launchers import launcher_jobs
from playwave.jobs.runner import Job, JobRunner
from playwave.jobs.sessions import SessionJobs
from playwave.partner.base import Partner
from playwave.partner.sandbox import SandboxPartner
from playwave.services.keys import ApiKeys
from playwave.services.sessions import GameSessions
from playwave.settings import Settings
from playwave.stores.base import LiveStore, RecordStore
from playwave.stores.sql.engine import create_engine, upgrade_schema_async
from playwave.stores.sql.live import SqlLiveStore
from playwave.stores.sql.records import SqlRecordStore

log = structlog.get_logger("playwave.runtime")


@dataclass
class Runtime:
    """Everything one process needs, built once and closed once."""

    settings: Settings
    clock: Clock
    records: RecordStore
    live: LiveStore
    partner: Partner
    api_keys: ApiKeys
    sessions: GameSessions
    jobs: list[Job] = field(default_factory=list)
    runner: JobRunner | None = None

    @property
    def jobs_by_name(self) -> dict[str, Job]:
        return {job.name: job for job in self.jobs}

    async def start_jobs(self) -> None:
        self.runner = JobRunner(self.jobs)
        self.runner.start()

    async def stop_jobs(self) -> None:
        if self.runner is not None:
            await self.runner.stop(drain=True)
            self.runner = None

    async def close(self) -> None:
        await self.stop_jobs()
        await self.partner.close()
        await self.live.close()
        await self.records.close()


async def build_runtime(
    settings: Settings,
    *,
    clock: Clock | None = None,
    partner: Partner | None = None,
    migrate: bool | None = None,
) -> Runtime:
    """Build the runtime for `settings`; in embedded mode the schema is migrated first."""
    clock = clock or SystemClock()
    if settings.embedded:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    if migrate if migrate is not None else settings.embedded:
        await upgrade_schema_async(settings.sqlalchemy_url)

    engine = create_engine(settings.sqlalchemy_url)
    records = SqlRecordStore(engine)
    live: LiveStore
    if settings.redis_url:
        from playwave.stores.redis.live import RedisLiveStore

        live = await RedisLiveStore.connect(
            settings.redis_url,
            cluster=settings.redis_cluster,
            prefix=settings.redis_prefix,
            clock=clock,
        )
    else:
        live = SqlLiveStore(engine)

    if partner is None:
        if settings.partner_url:
            from playwave.partner.http import HttpPartner

            partner = HttpPartner(settings.partner_url, token=settings.partner_token)
        else:
            partner = SandboxPartner(engine, loopback_cafe=settings.sandbox_loopback_cafe)

    timers = settings.timers
    api_keys = ApiKeys(
        records, clock, settings.resolve_secret_key(), cache_seconds=settings.api_key_cache_sec
    )
    sessions = GameSessions(records, live, partner, clock, timers)
    runtime = Runtime(settings, clock, records, live, partner, api_keys, sessions)
    runtime.jobs = default_jobs(runtime)
    return runtime


def default_jobs(runtime: Runtime) -> list[Job]:
    settings = runtime.settings
    session_jobs = SessionJobs(runtime.sessions)
    return [
        Job("sweep_live", settings.sweep_interval_sec, session_jobs.sweep_live),
        Job("sweep_records", max(settings.sweep_interval_sec, 5.0), session_jobs.sweep_records),
        Job("flush_heartbeats", settings.heartbeat_flush_sec, session_jobs.flush_heartbeats),
        Job("purge_live", 60.0, session_jobs.purge_live),
        Job("count_live", 15.0, session_jobs.count_live),
        *launcher_jobs(runtime),
        *billing_jobs(runtime),
    ]
