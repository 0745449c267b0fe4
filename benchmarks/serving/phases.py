"""The measurements: paired load rounds, fixed-rate latency, store costs and expiry sweeps."""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import structlog

from playwave.runtime import Runtime

from .load import END, HEARTBEAT, VERIFY, Call, LoadResult, LoadSettings, noop_of, run_wrk
from .population import (
    SessionRef,
    Tenant,
    add_live_sessions,
    add_otts,
    live_session_count,
    sessions_of_otts,
    write_lines,
)
from .probes import (
    PostgresCounters,
    postgres_counters,
    record_profile,
    redis_used_memory,
    summarise_profile,
)
from .stack import Stack, cpu_seconds

log = structlog.get_logger("benchmarks.phases")

# PostgreSQL publishes a busy backend's counters about once a second and the heartbeat flush
# runs every 2 s, so counters are read this long after the load stops.
COUNTER_SETTLE_SEC = 6.0
WARMUP_SEC = 5
# Verify and end run slower than heartbeats, so their rounds last longer to count enough.
SLOW_CALL_MIN_SEC = 10
FIXED_RATE_SHARE = 0.5
FIXED_RATE_CONNECTIONS = 32
SWEEP_LEAD_SEC = 20
SWEEP_TIMEOUT_SEC = 300


@dataclass
class Context:
    """The services, runtime, tenant and load settings that every phase uses."""

    stack: Stack
    runtime: Runtime
    tenant: Tenant
    load: LoadSettings
    rounds: int
    workdir: Path
    cpu_log: list[dict[str, object]] = field(default_factory=list)


def _process_cpu(stack: Stack) -> dict[str, float]:
    readings = {"api": sum(cpu_seconds(pid) for pid in stack.api_worker_pids())}
    for name in ("worker", "redis", "partner"):
        readings[name] = cpu_seconds(stack.pid_of(name))
    return readings


async def _timed_load(
    context: Context, call: Call, ids_file: Path, label: str, **options: object
) -> tuple[LoadResult, dict[str, float]]:
    """Run one wrk load off the event loop; return it with the CPU seconds each process used."""
    before = _process_cpu(context.stack)
    result = await asyncio.to_thread(run_wrk, context.load, call, ids_file, label, **options)
    after = _process_cpu(context.stack)
    cpu = {name: round(after[name] - before[name], 3) for name in after}
    context.cpu_log.append({"label": label, "requests": result.requests, "cpu_sec": cpu})
    return result, cpu


def _check_clean(result: LoadResult, *, consumes_ids: bool = False) -> None:
    """Reject a run with failed requests, or one that sent an id twice where ids are used up.

    Heartbeats and no-op requests may repeat ids; a verify or end may not, because its repeat
    gets a cheaper error answer.
    """
    if result.requests == 0:
        raise RuntimeError(
            f"load run {result.label} completed no request in {result.duration_sec} s; "
            "see the server logs in the work directory"
        )
    if result.failed or (consumes_ids and result.wrapped):
        raise RuntimeError(
            f"load run {result.label} is not clean: {result.failed} failed requests, "
            f"{result.wrapped} passes over its ids; the figures would mix in error answers"
        )


async def paired_rounds(
    context: Context, call: Call, ids_files: list[Path], label: str
) -> dict[str, object]:
    """Alternate `call` with its no-op counterpart, `rounds` times, on the same ids.

    The order flips every round, so a drift in the machine's speed during the run weighs on
    both sides alike. The ratio is taken within each round and its median reported.
    """
    noop = noop_of(call)
    duration_sec = context.load.duration_sec
    if call.kind != HEARTBEAT.kind:
        duration_sec = max(duration_sec, SLOW_CALL_MIN_SEC)
    pairs = []
    for number in range(context.rounds):
        ids_file = ids_files[number % len(ids_files)]
        order = [(noop, "noop"), (call, call.kind)]
        if number % 2:
            order.reverse()
        measured: dict[str, LoadResult] = {}
        cpu: dict[str, dict[str, float]] = {}
        for target, name in order:
            result, used = await _timed_load(
                context,
                target,
                ids_file,
                f"{label}-{name}-round{number + 1}",
                duration_sec=duration_sec,
            )
            _check_clean(result, consumes_ids=target is call and call.kind != HEARTBEAT.kind)
            measured[name] = result
            cpu[name] = used
        pairs.append(
            {
                "noop": measured["noop"].as_dict(),
                call.kind: measured[call.kind].as_dict(),
                "ratio": round(measured[call.kind].rate / measured["noop"].rate, 3),
                "api_cpu_ms_per_request": {
                    name: round(1000 * cpu[name]["api"] / measured[name].requests, 4)
                    for name in measured
                },
            }
        )

    ratios = [pair["ratio"] for pair in pairs]
    rates = [pair[call.kind]["rate"] for pair in pairs]
    noop_rates = [pair["noop"]["rate"] for pair in pairs]
    return {
        "rounds": pairs,
        "ratio_median": statistics.median(ratios),
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
        "rate_median": statistics.median(rates),
        "noop_rate_median": statistics.median(noop_rates),
    }


async def fixed_rate(
    context: Context, call: Call, ids_file: Path, rate: float, label: str
) -> dict[str, object]:
    """Send `call` at about `rate` requests/s and report the latency wrk measured."""
    connections = FIXED_RATE_CONNECTIONS
    pause_ms = connections / rate * 1000
    result, _ = await _timed_load(
        context,
        call,
        ids_file,
        label,
        pause_ms=pause_ms,
        connections=connections,
        duration_sec=max(context.load.duration_sec, 10),
    )
    _check_clean(result)
    return {
        "target_rate": round(rate, 1),
        "achieved_rate": result.rate,
        "p50_ms": result.p50_ms,
        "p90_ms": result.p90_ms,
        "p99_ms": result.p99_ms,
        "p999_ms": result.p999_ms,
        "max_ms": result.max_ms,
        "run": result.as_dict(),
    }


async def heartbeat_figures(context: Context, ids_file: Path, label: str) -> dict[str, object]:
    """Heartbeat against no-op, latency at half the heartbeat's max rate, and PostgreSQL writes."""
    await _timed_load(context, HEARTBEAT, ids_file, f"{label}-warmup", duration_sec=WARMUP_SEC)
    await asyncio.sleep(COUNTER_SETTLE_SEC)

    idle_start = await postgres_counters(context.stack.dsn)
    idle_began = time.monotonic()
    await asyncio.sleep(COUNTER_SETTLE_SEC * 2)
    idle = (await postgres_counters(context.stack.dsn)).minus(idle_start)
    idle_commits_per_sec = idle.xact_commit / (time.monotonic() - idle_began)

    counters_before = await postgres_counters(context.stack.dsn)
    window_began = time.monotonic()
    paired = await paired_rounds(context, HEARTBEAT, [ids_file], label)
    target = FIXED_RATE_SHARE * paired["rate_median"]
    paced = await fixed_rate(context, HEARTBEAT, ids_file, target, f"{label}-fixed-rate")
    await asyncio.sleep(COUNTER_SETTLE_SEC)
    written = (await postgres_counters(context.stack.dsn)).minus(counters_before)
    window_sec = time.monotonic() - window_began

    heartbeats = sum(pair["heartbeat"]["requests"] for pair in paired["rounds"])
    heartbeats += paced["run"]["requests"]
    background_commits = idle_commits_per_sec * window_sec
    return {
        "paired": paired,
        "fixed_rate": paced,
        "postgres": _writes_per_heartbeat(written, heartbeats, background_commits),
    }


def _writes_per_heartbeat(
    written: PostgresCounters, heartbeats: int, background_commits: float
) -> dict[str, object]:
    """Turn counter deltas over a load window into writes per heartbeat.

    Commits of the background jobs, measured in an idle window before, are subtracted. The
    no-op rounds in the window write nothing.
    """
    commits = max(0.0, written.xact_commit - background_commits)
    return {
        "heartbeats": heartbeats,
        "xact_commit": written.xact_commit,
        "background_commits_subtracted": round(background_commits, 1),
        "tup_updated": written.tup_updated,
        "game_sessions_updated": written.sessions_updated,
        "game_sessions_hot_updated": written.sessions_hot_updated,
        "commits_per_heartbeat": round(commits / heartbeats, 5),
        "rows_updated_per_heartbeat": round(written.tup_updated / heartbeats, 4),
    }


async def profile_heartbeat(context: Context, ids_file: Path, seconds: int) -> dict[str, object]:
    """Profile one API process with py-spy while wrk sends heartbeats."""
    pid = context.stack.api_worker_pids()[0]
    output = context.workdir / "heartbeat-profile.txt"
    load = asyncio.create_task(
        _timed_load(context, HEARTBEAT, ids_file, "profile-load", duration_sec=seconds + 4)
    )
    await asyncio.sleep(2)
    await asyncio.to_thread(record_profile, pid, seconds, output)
    await load
    summary = summarise_profile(output)
    summary["collapsed_stacks"] = str(output)
    return summary


async def verify_and_end(context: Context, pool_size: int) -> dict[str, object]:
    """Verify against no-op on fresh OTTs, then end live sessions against no-op.

    Verify is much slower than end, so the sessions verify creates are too few to keep end
    busy for its rounds; end runs on bulk-created sessions that carry a billing id instead.
    """
    stack, tenant = context.stack, context.tenant
    verify_files = []
    all_otts: list[str] = []
    for number in range(context.rounds):
        grants = await add_otts(context.runtime, tenant, pool_size, pc_prefix=f"bench-v{number}")
        all_otts += [grant.ott for grant in grants]
        verify_files.append(
            write_lines(
                context.workdir / f"verify-{number}.txt",
                [(grant.ott, str(200_000_000 + index)) for index, grant in enumerate(grants)],
            )
        )
    verify = await paired_rounds(context, VERIFY, verify_files, "verify")

    created = await sessions_of_otts(stack.dsn, all_otts)
    verified = sum(pair["verify"]["requests"] for pair in verify["rounds"])
    # Requests still in flight when wrk stops are not counted but may still create a session,
    # so up to one per connection and round may exist beyond the counted answers.
    in_flight = context.load.connections * context.rounds
    if not verified <= len(created) <= verified + in_flight:
        raise RuntimeError(
            f"{verified} verify requests answered 200 but {len(created)} sessions exist; "
            "some verifies answered is_valid false"
        )

    end_files = []
    for number in range(context.rounds):
        refs = await add_live_sessions(
            stack.dsn,
            context.runtime.live,  # type: ignore[arg-type]
            context.runtime.settings.timers,
            tenant,
            pool_size,
            pc_prefix=f"bench-end{number}",
            last_heartbeat_at=context.runtime.clock.now(),
            with_billing=True,
        )
        end_files.append(
            write_lines(
                context.workdir / f"end-{number}.txt",
                [(ref.game_session_id, ref.provider_user_id) for ref in refs],
            )
        )
    end = await paired_rounds(context, END, end_files, "end")
    return {"verify": verify, "end": end, "sessions_verified": len(created)}


async def expiry_sweep(
    context: Context, count: int, live_sessions: int, label: str
) -> dict[str, object]:
    """Add `count` sessions whose deadlines all pass in one second; time how fast they end.

    The end times come from the worker's `session_ended` log lines, so polling the records adds
    no load while the sweep runs; the records are polled only to know when all have ended.
    """
    stack = context.stack
    timers = context.runtime.settings.timers
    worker_log = stack.config.workdir / "worker.log"
    log_offset = worker_log.stat().st_size

    deadline_ms = context.runtime.clock.now() + SWEEP_LEAD_SEC * 1000
    refs = await add_live_sessions(
        stack.dsn,
        context.runtime.live,  # type: ignore[arg-type]
        timers,
        context.tenant,
        count,
        pc_prefix=f"bench-expiring-{label}",
        last_heartbeat_at=deadline_ms - timers.session_ttl_ms,
    )
    ids = [ref.game_session_id for ref in refs]
    lead_left = deadline_ms / 1000 - time.time()
    if lead_left <= 0:
        raise RuntimeError(f"loading {count} sessions took longer than {SWEEP_LEAD_SEC} s")

    await asyncio.sleep(max(0.0, lead_left - 1))
    worker_cpu_before = cpu_seconds(stack.pid_of("worker"))
    remaining = count
    while remaining and time.time() * 1000 < deadline_ms + SWEEP_TIMEOUT_SEC * 1000:
        await asyncio.sleep(0.5)
        remaining = await live_session_count(stack.dsn, ids)
    worker_cpu = cpu_seconds(stack.pid_of("worker")) - worker_cpu_before

    ended_at = _ended_times(worker_log, log_offset, set(ids))
    delays = sorted((at - deadline_ms) / 1000 for at in ended_at.values())
    return {
        "expiring_sessions": count,
        "other_live_sessions": live_sessions,
        "not_ended": remaining,
        "ended_logged": len(delays),
        "first_end_after_deadline_sec": round(delays[0], 3) if delays else None,
        "median_end_after_deadline_sec": round(statistics.median(delays), 3) if delays else None,
        "last_end_after_deadline_sec": round(delays[-1], 3) if delays else None,
        "ends_per_sec": (
            round(len(delays) / (delays[-1] - delays[0]), 1)
            if len(delays) > 1 and delays[-1] > delays[0]
            else None
        ),
        "worker_cpu_sec": round(worker_cpu, 3),
    }


def _ended_times(worker_log: Path, offset: int, wanted: set[str]) -> dict[str, int]:
    """Return, per session id in `wanted`, when the worker logged its end (epoch ms)."""
    ended: dict[str, int] = {}
    with worker_log.open("rb") as handle:
        handle.seek(offset)
        for raw in handle:
            if not raw.startswith(b"{") or b"session_ended" not in raw:
                continue
            event = json.loads(raw)
            game_session_id = event.get("game_session_id")
            if event.get("event") != "session_ended" or game_session_id not in wanted:
                continue
            moment = datetime.fromisoformat(event["timestamp"])
            ended[game_session_id] = int(moment.timestamp() * 1000)
    return ended


async def add_population(
    context: Context, count: int, pc_prefix: str
) -> tuple[list[SessionRef], dict[str, object]]:
    """Add `count` live sessions and report the Redis memory they take per session."""
    memory_before = await redis_used_memory(context.stack.redis_url)
    began = time.monotonic()
    refs = await add_live_sessions(
        context.stack.dsn,
        context.runtime.live,  # type: ignore[arg-type]
        context.runtime.settings.timers,
        context.tenant,
        count,
        pc_prefix=pc_prefix,
        last_heartbeat_at=context.runtime.clock.now(),
    )
    load_sec = time.monotonic() - began
    memory_after = await redis_used_memory(context.stack.redis_url)
    return refs, {
        "sessions_added": count,
        "load_sec": round(load_sec, 1),
        "redis_used_memory_before": memory_before,
        "redis_used_memory_after": memory_after,
        "redis_bytes_per_session": round((memory_after - memory_before) / count, 1),
    }
