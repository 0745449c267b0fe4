"""Run the serving benchmark: `python -m benchmarks.serving [options]` (or `benchmarks/run`)."""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import tempfile
import time
from pathlib import Path

import structlog

from playwave.logs import configure_logging
from playwave.runtime import build_runtime
from playwave.settings import Settings

from . import phases
from .load import LoadSettings, wrk_version
from .population import create_tenant, write_lines
from .probes import machine_description
from .stack import SECRET_KEY, Stack, StackConfig

log = structlog.get_logger("benchmarks.serving")

TARGETS = {
    "heartbeat_to_noop": ">= 0.6",
    "heartbeat_p99_at_half_max_ms": "<= 20",
    "large_to_small_heartbeat_rate": ">= 0.9",
    "redis_bytes_per_live_session": "<= 512",
    "postgres_commits_per_heartbeat": "well under 1",
    "sweep_last_end_after_deadline_sec": "<= 5",
    "sweep_large_to_small_time": "about 1 (cost follows expired sessions, not live ones)",
}


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="benchmarks/run", description="Benchmark the game-server API in production mode."
    )
    parser.add_argument(
        "--live-sessions",
        type=int,
        default=1_000_000,
        help="live sessions in the large phase (default 1,000,000)",
    )
    parser.add_argument(
        "--small-sessions",
        type=int,
        default=10_000,
        help="live sessions in the small phase (default 10,000)",
    )
    parser.add_argument(
        "--expiring",
        type=int,
        default=10_000,
        help="sessions whose deadlines pass together in each sweep test (default 10,000)",
    )
    parser.add_argument("--workers", type=int, default=2, help="API processes (default 2)")
    parser.add_argument(
        "--connections", type=int, default=16, help="wrk connections for max-rate runs"
    )
    parser.add_argument(
        "--duration", type=int, default=8, help="seconds of each max-rate wrk run (default 8)"
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="alternating real/no-op pairs per figure"
    )
    parser.add_argument(
        "--verify-pool", type=int, default=4_000, help="OTTs minted per verify round"
    )
    parser.add_argument("--profile-seconds", type=int, default=10, help="py-spy sampling time")
    parser.add_argument("--skip-profile", action="store_true", help="do not run py-spy")
    parser.add_argument(
        "--postgres",
        default="postgresql://postgres@127.0.0.1:5432",
        help="PostgreSQL server URL without a database; the run creates and drops its own",
    )
    parser.add_argument(
        "--database", default="playwave_bench_serving", help="name of the database to create"
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=Path("benchmarks/results/serving.json"),
        help="where to write the results JSON",
    )
    parser.add_argument(
        "--workdir", type=Path, default=None, help="logs and id files (default: a temp dir)"
    )
    parser.add_argument(
        "--summarise-only",
        action="store_true",
        help="recompute the summary of the results JSON at --output without running anything",
    )
    return parser.parse_args()


def runner_settings(stack: Stack) -> Settings:
    """Settings of the runner's own runtime: the same stores and secret as the servers."""
    environment = stack.environment()
    return Settings(
        _env_file=None,
        data_dir=Path(environment["PLAYWAVE_DATA_DIR"]),
        database_url=stack.dsn,
        redis_url=stack.redis_url,
        redis_cluster="no",
        partner_url=environment["PLAYWAVE_PARTNER_URL"],
        secret_key=SECRET_KEY,
        session_ttl_sec=stack.config.session_ttl_sec,
        ott_ttl_sec=stack.config.ott_ttl_sec,
    )


async def run(options: argparse.Namespace) -> dict[str, object]:
    workdir = options.workdir or Path(tempfile.mkdtemp(prefix="playwave-bench-"))
    stack = Stack(
        StackConfig(
            workdir=workdir,
            postgres_server=options.postgres,
            database=options.database,
            api_workers=options.workers,
            # Long enough that the bulk-loaded population stays live for the whole run; the
            # sweep tests set their own deadlines, so the value does not change what they time.
            session_ttl_sec=3600,
            # OTT pools are minted before the verify rounds start.
            ott_ttl_sec=900,
        )
    )
    results: dict[str, object] = {"started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    began = time.monotonic()
    runtime = None
    try:
        await stack.start()
        results["machine"] = await asyncio.to_thread(
            machine_description, stack.dsn, stack.redis_url, wrk_version()
        )
        runtime = await build_runtime(runner_settings(stack))
        tenant = await create_tenant(runtime, stack.environment()["PLAYWAVE_PARTNER_URL"])
        context = phases.Context(
            stack=stack,
            runtime=runtime,
            tenant=tenant,
            load=LoadSettings(
                base_url=stack.api_url,
                api_key=tenant.api_key,
                connections=options.connections,
                threads=1,
                duration_sec=options.duration,
            ),
            rounds=options.rounds,
            workdir=workdir,
        )
        results["config"] = {
            "api_workers": options.workers,
            "connections": options.connections,
            "wrk_threads": 1,
            "duration_sec": options.duration,
            "rounds": options.rounds,
            "live_sessions_small": options.small_sessions,
            "live_sessions_large": options.live_sessions,
            "expiring_sessions": options.expiring,
            "session_ttl_sec": stack.config.session_ttl_sec,
        }

        small_refs, results["population_small"] = await phases.add_population(
            context, options.small_sessions, "bench-live"
        )
        small_file = write_lines(
            workdir / "live-small.txt",
            [(ref.game_session_id, ref.provider_user_id) for ref in small_refs],
        )
        log.info("phase", name="heartbeat, small population")
        results["heartbeat_small"] = await phases.heartbeat_figures(context, small_file, "small")

        if not options.skip_profile:
            log.info("phase", name="profile")
            results["profile"] = await phases.profile_heartbeat(
                context, small_file, options.profile_seconds
            )

        log.info("phase", name="verify and end")
        results["verify_end"] = await phases.verify_and_end(context, options.verify_pool)

        log.info("phase", name="sweep, small population")
        results["sweep_small"] = await phases.expiry_sweep(
            context, options.expiring, options.small_sessions, "small"
        )

        log.info("phase", name="large population")
        large_refs, results["population_large"] = await phases.add_population(
            context, options.live_sessions - options.small_sessions, "bench-live-large"
        )
        every_ref = small_refs + large_refs
        random.Random(7).shuffle(every_ref)
        large_file = write_lines(
            workdir / "live-large.txt",
            [(ref.game_session_id, ref.provider_user_id) for ref in every_ref],
        )
        del every_ref, large_refs
        log.info("phase", name="heartbeat, large population")
        results["heartbeat_large"] = await phases.heartbeat_figures(context, large_file, "large")

        log.info("phase", name="sweep, large population")
        results["sweep_large"] = await phases.expiry_sweep(
            context, options.expiring, options.live_sessions, "large"
        )
        results["process_cpu"] = context.cpu_log
    finally:
        if runtime is not None:
            await runtime.close()
        await stack.stop()

    results["elapsed_sec"] = round(time.monotonic() - began, 1)
    results["summary"] = summarise(results)
    results["targets"] = TARGETS
    results["workdir"] = str(workdir)
    return results


def cpu_ratio(cpu_log: list[dict[str, object]], prefix: str, kind: str) -> float | None:
    """Return CPU per no-op request divided by CPU per `kind` request, over runs of `prefix`.

    CPU is the user plus system time of the API processes, the worker, Redis and the partner
    simulator; PostgreSQL is left out because its server is shared with other databases. The
    time a process spends waiting for the CPU while other programs run is not counted, so this
    ratio holds on a busy machine where the throughput ratio swings from run to run.
    """
    totals = {"noop": [0.0, 0], kind: [0.0, 0]}
    for entry in cpu_log:
        label = str(entry["label"])
        for name in totals:
            if label.startswith(f"{prefix}-{name}-round"):
                totals[name][0] += sum(entry["cpu_sec"].values())  # type: ignore[union-attr]
                totals[name][1] += int(entry["requests"])  # type: ignore[arg-type]
    if not totals["noop"][1] or not totals[kind][1] or not totals[kind][0]:
        return None
    noop_cpu = totals["noop"][0] / totals["noop"][1]
    call_cpu = totals[kind][0] / totals[kind][1]
    return round(noop_cpu / call_cpu, 3)


def summarise(results: dict[str, object]) -> dict[str, object]:
    """Collect the headline figures, each next to the run it came from."""
    small = results["heartbeat_small"]
    large = results["heartbeat_large"]
    verify_end = results["verify_end"]
    sweep_small = results["sweep_small"]
    sweep_large = results["sweep_large"]
    small_paired, large_paired = small["paired"], large["paired"]

    normalised_small = small_paired["rate_median"] / small_paired["noop_rate_median"]
    normalised_large = large_paired["rate_median"] / large_paired["noop_rate_median"]
    small_sweep_time = sweep_small["last_end_after_deadline_sec"]
    large_sweep_time = sweep_large["last_end_after_deadline_sec"]
    cpu_log = results["process_cpu"]
    return {
        "heartbeat_to_noop": small_paired["ratio_median"],
        "heartbeat_to_noop_by_cpu": cpu_ratio(cpu_log, "small", "heartbeat"),
        "heartbeat_to_noop_by_cpu_large": cpu_ratio(cpu_log, "large", "heartbeat"),
        "verify_to_noop_by_cpu": cpu_ratio(cpu_log, "verify", "verify"),
        "end_to_noop_by_cpu": cpu_ratio(cpu_log, "end", "end"),
        "heartbeat_rate": small_paired["rate_median"],
        "noop_rate": small_paired["noop_rate_median"],
        "heartbeat_p50_at_half_max_ms": small["fixed_rate"]["p50_ms"],
        "heartbeat_p99_at_half_max_ms": small["fixed_rate"]["p99_ms"],
        "heartbeat_rate_at_half_max": small["fixed_rate"]["achieved_rate"],
        "verify_to_noop": verify_end["verify"]["ratio_median"],
        "end_to_noop": verify_end["end"]["ratio_median"],
        "large_to_small_heartbeat_rate": round(
            large_paired["rate_median"] / small_paired["rate_median"], 3
        ),
        "large_to_small_heartbeat_rate_noop_normalised": round(
            normalised_large / normalised_small, 3
        ),
        "heartbeat_to_noop_large": large_paired["ratio_median"],
        "heartbeat_p99_at_half_max_large_ms": large["fixed_rate"]["p99_ms"],
        "redis_bytes_per_live_session": results["population_large"]["redis_bytes_per_session"],
        "postgres_commits_per_heartbeat": small["postgres"]["commits_per_heartbeat"],
        "postgres_rows_updated_per_heartbeat": small["postgres"]["rows_updated_per_heartbeat"],
        "sweep_small_last_end_after_deadline_sec": small_sweep_time,
        "sweep_large_last_end_after_deadline_sec": large_sweep_time,
        "sweep_small_ends_per_sec": sweep_small["ends_per_sec"],
        "sweep_large_ends_per_sec": sweep_large["ends_per_sec"],
        "sweep_large_to_small_time": (
            round(large_sweep_time / small_sweep_time, 3)
            if small_sweep_time and large_sweep_time
            else None
        ),
    }


def main() -> None:
    configure_logging("INFO", json=False)
    options = parse_arguments()
    if options.summarise_only:
        results = json.loads(options.output.read_text())
        results["summary"] = summarise(results)
        results["targets"] = TARGETS
    else:
        results = asyncio.run(run(options))
    options.output.parent.mkdir(parents=True, exist_ok=True)
    options.output.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results["summary"], indent=2))
    print(f"results written to {options.output}")


if __name__ == "__main__":
    main()
